package twin

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/postgres"
	"github.com/steward-iot/steward/sqlite"
)

const tenant = "t1"

// clock is a steward.Clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// env is a Service over a real SQLite store and the in-process bus, with
// what it sends to devices and records in the audit log kept.
type env struct {
	svc   *Service
	store steward.Store
	bus   *inproc.Bus
	clock *clock

	mu     sync.Mutex
	sent   []steward.OutboundMessage
	audits []steward.AuditRecord
	drifts []steward.DriftChange
}

func newEnv(t testing.TB) *env {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return newEnvOn(t, st)
}

// forEachStore runs fn on SQLite and, when STEWARD_TEST_POSTGRES is set,
// on PostgreSQL in a schema of its own.
func forEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		fn(t, newEnv(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		base, ok := pgtest.URL()
		if !ok {
			t.Skip(pgtest.Env + " is not set: PostgreSQL not tested")
		}
		_, u := pgtest.Schema(t, base, "twin_")
		st, err := postgres.Open(context.Background(), u, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		fn(t, newEnvOn(t, st))
	})
}

// newEnvOn is an env over st.
func newEnvOn(t testing.TB, st steward.Store) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{store: st, bus: inproc.New(slog.New(slog.DiscardHandler)), clock: &clock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}}
	must(t, st.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "T1", CreatedAt: e.clock.Now()}))
	must(t, st.CreateTenant(ctx, steward.Tenant{ID: "t2", Name: "T2", CreatedAt: e.clock.Now()}))
	e.bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.sent = append(e.sent, m)
		return nil
	})
	e.svc = New(Config{Store: st, Bus: e.bus, Clock: e.clock, Grace: 10 * time.Minute,
		Auditor: steward.AuditorFunc(func(_ context.Context, r steward.AuditRecord) error {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.audits = append(e.audits, r)
			return nil
		}),
		OnDrift: func(ctx context.Context, ch []steward.DriftChange) {
			e.mu.Lock()
			e.drifts = append(e.drifts, ch...)
			e.mu.Unlock()
			Signals(st, slog.New(slog.DiscardHandler))(ctx, ch)
		},
	})
	return e
}

// device adds a device of model, owner and site.
func (e *env) device(t testing.TB, id, model, owner, site string) {
	t.Helper()
	now := e.clock.Now()
	must(t, e.store.CreateDevice(context.Background(), steward.Device{ID: id, TenantID: tenant, Model: model, Owner: owner,
		Location: steward.Location{Site: site}, State: steward.StateActive, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}))
}

// template creates a template with one version of doc (and schema).
func (e *env) template(t testing.TB, name string, layer steward.ConfigLayer, selector, doc, schema string) (steward.ConfigTemplate, steward.ConfigVersion) {
	t.Helper()
	ctx := context.Background()
	tm, err := e.svc.CreateTemplate(ctx, steward.ConfigTemplate{TenantID: tenant, Name: name, Layer: layer, Selector: selector}, "token:op")
	must(t, err)
	v := steward.ConfigVersion{TenantID: tenant, TemplateID: tm.ID, Document: json.RawMessage(doc), Message: "first"}
	if schema != "" {
		v.Schema = json.RawMessage(schema)
	}
	v, err = e.svc.CreateVersion(ctx, v, "token:op")
	must(t, err)
	return tm, v
}

// report publishes a device's report and returns its acknowledgement.
func (e *env) report(t testing.TB, device, payload string) error {
	t.Helper()
	acked := make(chan error, 1)
	e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: tenant, DeviceID: device, Channel: steward.ChannelTwinReported,
		Payload: []byte(payload), QoS: 1, Received: e.clock.Now()}, func(err error) { acked <- err })
	select {
	case err := <-acked:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("report never acknowledged")
		return nil
	}
}

func (e *env) twin(t testing.TB, device string) steward.Twin {
	t.Helper()
	tw, err := e.store.GetTwin(context.Background(), tenant, device)
	must(t, err)
	return tw
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantCode(t testing.TB, err error, code steward.Code, contains ...string) {
	t.Helper()
	if steward.ErrorCode(err) != code {
		t.Fatalf("got %v (%s), want %s", err, steward.ErrorCode(err), code)
	}
	for _, s := range contains {
		if !strings.Contains(steward.ErrorMessage(err), s) {
			t.Fatalf("error %q does not say %q", steward.ErrorMessage(err), s)
		}
	}
}

func wantDoc(t testing.TB, what string, got json.RawMessage, want string) {
	t.Helper()
	if !steward.JSONEqual(got, json.RawMessage(want)) {
		t.Fatalf("%s = %s, want %s", what, got, want)
	}
}

func schemaError(err error) *SchemaError {
	var se *SchemaError
	if errors.As(err, &se) {
		return se
	}
	return nil
}
