package client_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func fixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func devID(n int) string { return fmt.Sprintf("d-%020d", n) }

func TestHealthAndOpenAPI(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, "", nil)
	ctx := context.Background()
	if err := c.Health(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	doc, err := c.OpenAPI(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var d struct{ OpenAPI string }
	if err := json.Unmarshal(doc, &d); err != nil || !strings.HasPrefix(d.OpenAPI, "3.1.") {
		t.Fatalf("openapi %q %v", d.OpenAPI, err)
	}
}

func TestEnrollmentGroups(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL+"/", env.SystemToken, nil) // a trailing slash is fine
	ctx := context.Background()
	in := steward.EnrollmentGroup{
		ID: "ignored", TenantID: "ignored-too",
		Name: "acme", CAPEM: fixture(t, "mfr-ca-1.pem"), Models: []string{"gw-100"},
		Firmware: map[string][]string{"gw-100": {"1.2.0"}}, Labels: map[string]string{"site": "a"},
		Serials: []string{"SN1"}, Strict: true,
	}
	g, err := c.CreateEnrollmentGroup(ctx, in)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID == "" || g.ID == "ignored" || g.TenantID != steward.DefaultTenant || g.Name != "acme" || !g.Strict || g.Firmware["gw-100"][0] != "1.2.0" || g.Labels["site"] != "a" {
		t.Fatalf("group %+v", g)
	}
	got, err := c.GetEnrollmentGroup(ctx, g.ID)
	if err != nil || got.CAFingerprint != g.CAFingerprint {
		t.Fatalf("get %+v %v", got, err)
	}
	list, err := c.ListEnrollmentGroups(ctx)
	if err != nil || len(list) != 1 {
		t.Fatalf("list %+v %v", list, err)
	}
	_, err = c.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{Name: "again", CAPEM: in.CAPEM})
	if !steward.IsConflict(err) || !client.IsStatus(err, http.StatusConflict) {
		t.Fatalf("duplicate CA: %v", err)
	}
	if err := c.DeleteEnrollmentGroup(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetEnrollmentGroup(ctx, g.ID); !steward.IsNotFound(err) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestDevices(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	for i := range 7 {
		model := "gw-100"
		if i >= 5 {
			model = "gw-200"
		}
		env.AddDevice(t, steward.DefaultTenant, devID(i), model, nil)
	}

	page, next, err := c.ListDevices(ctx, steward.DeviceQuery{Limit: 3})
	if err != nil || len(page) != 3 || next != devID(2) {
		t.Fatalf("page %d next %q %v", len(page), next, err)
	}
	page, next, err = c.ListDevices(ctx, steward.DeviceQuery{Query: `model = "gw-200"`})
	if err != nil || len(page) != 2 || next != "" {
		t.Fatalf("query: %d %q %v", len(page), next, err)
	}
	all, err := c.AllDevices(ctx, `model = "gw-100"`)
	if err != nil || len(all) != 5 {
		t.Fatalf("all: %d %v", len(all), err)
	}
	_, _, err = c.ListDevices(ctx, steward.DeviceQuery{Query: `model ==`})
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 400 || ce.Code != steward.CodeInvalid || !strings.Contains(ce.Detail, "column") || ce.RequestID == "" {
		t.Fatalf("bad query: %#v", err)
	}

	id := devID(0)
	owner := "ops"
	d, err := c.UpdateDevice(ctx, id, steward.DevicePatch{Owner: &owner, Labels: map[string]string{"env": "prod"}})
	if err != nil || d.Owner != "ops" || d.Labels["env"] != "prod" {
		t.Fatalf("update %+v %v", d, err)
	}
	if d, err = c.Quarantine(ctx, id, "suspicious"); err != nil || d.State != steward.StateQuarantined {
		t.Fatalf("quarantine %+v %v", d, err)
	}
	if d, err = c.Release(ctx, id); err != nil || d.State != steward.StateActive {
		t.Fatalf("release %+v %v", d, err)
	}
	if _, err = c.Release(ctx, id); steward.ErrorCode(err) != steward.CodeFailedPrecondition || !client.IsStatus(err, 409) {
		t.Fatalf("second release: %v", err)
	}
	if _, err = c.Revoke(ctx, id); err != nil {
		t.Fatal(err)
	}
	detail, err := c.GetDevice(ctx, id)
	if err != nil || len(detail.History) != 2 || detail.Owner != "ops" {
		t.Fatalf("detail %+v %v", detail, err)
	}
	if _, err := c.GetDevice(ctx, "d-nothing"); !steward.IsNotFound(err) {
		t.Fatalf("unknown device: %v", err)
	}
	// IDs are escaped as path segments.
	if _, err := c.GetDevice(ctx, "../tokens"); !steward.IsNotFound(err) {
		t.Fatalf("escaped ID: %v", err)
	}

	at := time.Now().UTC().Truncate(time.Millisecond)
	if err := env.Store.WriteSamples(ctx, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.5, At: at}}); err != nil {
		t.Fatal(err)
	}
	samples, err := c.LatestTelemetry(ctx, id)
	if err != nil || len(samples) != 1 || samples[0].Value != 0.5 || !samples[0].At.Equal(at) {
		t.Fatalf("samples %+v %v", samples, err)
	}
	if err := env.Store.AddSecurityEvent(ctx, steward.SecurityEvent{TenantID: steward.DefaultTenant, DeviceID: id, Kind: steward.SecACLDenied, Detail: "x", At: at}); err != nil {
		t.Fatal(err)
	}
	evs, err := c.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id, Kind: steward.SecACLDenied, Limit: 10})
	if err != nil || len(evs) != 1 {
		t.Fatalf("events %+v %v", evs, err)
	}
	evs, err = c.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: devID(1)})
	if err != nil || len(evs) != 0 {
		t.Fatalf("events of another device %+v %v", evs, err)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	env.AddDevice(t, steward.DefaultTenant, devID(1), "gw-100", nil)
	env.AddDevice(t, steward.DefaultTenant, devID(2), "gw-100", nil)
	env.ConnectDevices(devID(1))

	res, err := c.SendCommand(ctx, devID(1), "ping", map[string]any{"n": 3}, 5*time.Second)
	if err != nil || res.Status != steward.CommandOK || res.Result["pong"] != float64(3) || res.ID == "" {
		t.Fatalf("ping %+v %v", res, err)
	}
	res, err = c.SendCommand(ctx, devID(1), "reboot", nil, 0)
	if err != nil || res.Status != steward.CommandRejected {
		t.Fatalf("reboot %+v %v", res, err)
	}
	_, err = c.SendCommand(ctx, devID(2), "ping", nil, time.Second)
	if steward.ErrorCode(err) != steward.CodeUnavailable || !client.IsStatus(err, 503) {
		t.Fatalf("offline device: %v", err)
	}
	_, err = c.SendCommand(ctx, devID(1), "ping", nil, 10*time.Minute)
	if steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("long timeout: %v", err)
	}
}

func TestCAs(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	for name, get := range map[string]func(context.Context) ([]byte, error){"device": c.DeviceCA, "server": c.ServerCA} {
		p, err := get(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := pem.Decode(p)
		cert, err := x509.ParseCertificate(b.Bytes)
		if err != nil || !cert.IsCA {
			t.Fatalf("%s CA: %v", name, err)
		}
	}
}

func TestTokensAndTenants(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	sys := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()

	tok, err := sys.CreateToken(ctx, "ci", "")
	if err != nil || tok.Role != steward.RoleAdmin || tok.Secret == "" {
		t.Fatalf("token %+v %v", tok, err)
	}
	admin := client.New(env.URL, tok.Secret, nil)
	toks, err := admin.ListTokens(ctx)
	if err != nil || len(toks) != 2 {
		t.Fatalf("tokens %+v %v", toks, err)
	}
	if _, err := admin.CreateToken(ctx, "escalate", steward.RoleSystem); !client.IsStatus(err, 403) || steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Fatalf("admin creates system token: %v", err)
	}
	if _, err := admin.CreateTenant(ctx, "nope", ""); !client.IsStatus(err, 403) {
		t.Fatalf("admin creates tenant: %v", err)
	}
	if _, err := admin.ListTenants(ctx); !client.IsStatus(err, 403) {
		t.Fatalf("admin lists tenants: %v", err)
	}

	ct, err := sys.CreateTenant(ctx, "acme", "Acme Corp")
	if err != nil || ct.Tenant.ID != "acme" || ct.Tenant.Name != "Acme Corp" || ct.Token.TenantID != "acme" || ct.Token.Secret == "" {
		t.Fatalf("tenant %+v %v", ct, err)
	}
	ts, err := sys.ListTenants(ctx)
	if err != nil || len(ts) != 2 {
		t.Fatalf("tenants %+v %v", ts, err)
	}
	acme := client.New(env.URL, ct.Token.Secret, nil)
	acmeToks, err := acme.ListTokens(ctx)
	if err != nil || len(acmeToks) != 1 || acmeToks[0].TenantID != "acme" {
		t.Fatalf("acme tokens %+v %v", acmeToks, err)
	}
	// Another tenant's token ID is not found.
	if err := acme.DeleteToken(ctx, tok.ID); !steward.IsNotFound(err) {
		t.Fatalf("cross-tenant delete: %v", err)
	}

	if err := sys.DeleteToken(ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	_, err = admin.ListTokens(ctx)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 401 || ce.Code != steward.CodeUnauthenticated || ce.Detail == "" {
		t.Fatalf("deleted token: %#v", err)
	}
	if !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), ce.Detail) {
		t.Errorf("message %q", err.Error())
	}
}

// TestProxyError checks an answer that is not a problem document, from a
// real reverse proxy whose upstream is down.
func TestProxyError(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead, _ := url.Parse("http://" + ln.Addr().String())
	ln.Close() // nothing listens there any more
	proxy := httputil.NewSingleHostReverseProxy(dead)
	proxy.ErrorLog = nil
	proxy.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) {
		http.Error(w, "upstream unavailable", http.StatusBadGateway)
	}
	srv := httptest.NewServer(proxy)
	defer srv.Close()
	c := client.New(srv.URL, "stw_x", nil)
	_, err = c.ListTokens(context.Background())
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 502 || ce.Code != steward.CodeUnavailable || ce.Detail != "upstream unavailable" {
		t.Fatalf("proxy error: %#v", err)
	}
}

func TestPagesFollowed(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	var want []string
	for i := range 23 {
		env.AddDevice(t, steward.DefaultTenant, devID(i), "gw-100", nil)
		want = append(want, devID(i))
	}
	var got []string
	q := steward.DeviceQuery{Limit: 5}
	for {
		page, next, err := c.ListDevices(context.Background(), q)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			got = append(got, d.ID)
		}
		if next == "" {
			break
		}
		q.After = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
}
