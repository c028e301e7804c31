package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/analytics"
	"github.com/steward-iot/steward/health"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/syncbuf"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/sqlite"
)

// testEnv is a real API server over the real SQLite store, PKI, bus and
// services, as `steward serve` wires them, with a system token of the
// default tenant.
type testEnv struct {
	api    *Server
	srv    *httptest.Server
	store  steward.Store
	bus    *inproc.Bus
	logs   *syncbuf.Buffer
	http   *http.Client
	system string // secret of a system token of the default tenant

	mu       sync.Mutex
	controls []steward.SessionControl // what the device plane was told
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	ctx := context.Background()
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := steward.SystemClock{}
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), log)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(key)
	auth, err := pki.New(ctx, pki.Config{Store: store, MasterKey: key, Clock: clock, Logger: log})
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	bus := inproc.New(log)
	fleet := lifecycle.New(store, bus, clock, log)
	prov := provisioning.New(provisioning.Config{Store: store, Authority: auth, Bus: bus, Lifecycle: fleet, ParseCSR: pki.ParseCSR, Clock: clock, Logger: log})

	e := &testEnv{store: store, bus: bus, logs: logs}
	bus.HandleControl(func(_ context.Context, c steward.SessionControl) {
		e.mu.Lock()
		e.controls = append(e.controls, c)
		e.mu.Unlock()
	})
	if err := store.CreateTenant(ctx, steward.Tenant{ID: steward.DefaultTenant, Name: "Default", CreatedAt: clock.Now()}); err != nil {
		t.Fatalf("create default tenant: %v", err)
	}
	if _, err := auth.DeviceCA(ctx, steward.DefaultTenant); err != nil {
		t.Fatalf("device CA: %v", err)
	}
	if e.system, _, err = CreateToken(ctx, store, steward.DefaultTenant, "first admin", steward.RoleSystem, clock); err != nil {
		t.Fatalf("create token: %v", err)
	}
	e.api = New(Config{Fleet: fleet, Groups: prov, Authority: auth, Store: store, Analytics: analytics.New(store, log), Health: health.New(store, clock, health.DefaultRules()),
		Ready: func(ctx context.Context) error { _, err := store.GetTenant(ctx, steward.DefaultTenant); return err },
		Clock: clock, Logger: log,
		// The tests send many bad tokens from one address and many requests
		// with one token; the limits have their own tests (limits_test.go).
		Limits: Limits{TokenRate: -1, AuthFailures: -1}})
	e.srv = httptest.NewServer(e.api)
	t.Cleanup(e.srv.Close)
	e.http = &http.Client{Transport: &checkingTransport{t: t, doc: loadDoc(t), api: e.api, next: http.DefaultTransport}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return e
}

// response is what a test request got back.
type response struct {
	status int
	header http.Header
	body   []byte
}

// problem decodes a problem document, failing the test when it is not one.
func (r response) problem(t *testing.T) Problem {
	t.Helper()
	if ct := r.header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("Content-Type = %q, want %q (body %s)", ct, ProblemContentType, r.body)
	}
	var p Problem
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("decode problem %s: %v", r.body, err)
	}
	if p.Status != r.status || p.Type == "" || p.Title == "" || p.Detail == "" || p.Code == "" || p.RequestID != r.header.Get("X-Request-ID") {
		t.Fatalf("incomplete problem %+v for status %d (request ID header %q)", p, r.status, r.header.Get("X-Request-ID"))
	}
	return p
}

// decode decodes a JSON answer into v.
func (r response) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// raw sends a request with a raw body and content type.
func (e *testEnv) raw(t *testing.T, method, path, token, contentType string, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// call sends a request with body (nil for none) encoded as JSON.
func (e *testEnv) call(t *testing.T, method, path, token string, body any) response {
	t.Helper()
	if body == nil {
		return e.raw(t, method, path, token, "", nil)
	}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	return e.raw(t, method, path, token, "application/json", bytes.NewReader(b))
}

// must sends a request and fails the test unless the status is want.
func (e *testEnv) must(t *testing.T, want int, method, path, token string, body any) response {
	t.Helper()
	r := e.call(t, method, path, token, body)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// newTenant creates a tenant through the API and returns its admin token.
func (e *testEnv) newTenant(t *testing.T, id string) string {
	t.Helper()
	var ct CreatedTenant
	e.must(t, http.StatusCreated, "POST", "/api/v1/tenants", e.system, TenantRequest{ID: id}).decode(t, &ct)
	return ct.Token.Secret
}

// addDevice stores a device of a tenant, as enrollment would.
func (e *testEnv) addDevice(t testing.TB, tenantID, id, model string, labels map[string]string) steward.Device {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := steward.Device{
		ID: id, TenantID: tenantID, Model: model, Serial: "SN-" + id, Firmware: "1.2.0",
		Labels: labels, Attributes: map[string]any{"model": model},
		State: steward.StateActive, StateChangedAt: now, StateActor: "system",
		CreatedAt: now, UpdatedAt: now, Version: 1,
	}
	if err := e.store.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("create device: %v", err)
	}
	return d
}

// readFixture reads a file of testdata/.
func readFixture(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// deviceID makes a device ID of the server's shape from a short name.
func deviceID(name string) string {
	id := "d-" + name + strings.Repeat("0", 20)
	return id[:22]
}
