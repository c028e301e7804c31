package api

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		var h Health
		e.must(t, http.StatusOK, "GET", path, "", nil).decode(t, &h)
		if h.Status != "ok" {
			t.Errorf("%s: status %q", path, h.Status)
		}
	}
}

func TestNotReadyAndInternalErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A real failure: the store goes away under the server.
	if err := e.store.Close(); err != nil {
		t.Fatal(err)
	}
	r := e.call(t, "GET", "/readyz", "", nil)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("readyz: status %d, want 503: %s", r.status, r.body)
	}
	if p := r.problem(t); p.Code != steward.CodeUnavailable || p.Detail != "not ready" {
		t.Errorf("readyz problem %+v", p)
	}

	r = e.call(t, "GET", "/api/v1/devices", e.system, nil)
	if r.status != http.StatusInternalServerError {
		t.Fatalf("status %d, want 500: %s", r.status, r.body)
	}
	p := r.problem(t)
	if p.Code != steward.CodeInternal {
		t.Errorf("code %q", p.Code)
	}
	// The cause is logged with the request ID and never sent.
	if strings.Contains(strings.ToLower(string(r.body)), "closed") || strings.Contains(string(r.body), "sql") {
		t.Errorf("internal detail leaked: %s", r.body)
	}
	logs := e.logs.String()
	var line string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "request_id="+p.RequestID) && strings.Contains(l, "level=ERROR") {
			line = l
		}
	}
	if line == "" || !strings.Contains(line, "closed") {
		t.Errorf("no error log line with request ID %s and the cause; log:\n%s", p.RequestID, logs)
	}
}

func TestAuthentication(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	secret, tok, err := CreateToken(context.Background(), e.store, steward.DefaultTenant, "doomed", steward.RoleAdmin, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/tokens/"+tok.ID, e.system, nil)

	ca := readFixture(t, "mfr-ca-1.pem")
	cases := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"basic scheme", "Basic " + e.system},
		{"empty bearer", "Bearer "},
		{"bearer without space", "Bearer"},
		{"unknown token", "Bearer stw_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
		{"token with a character changed", "Bearer " + e.system[:len(e.system)-1] + "x"},
		{"deleted token", "Bearer " + secret},
	}
	routes := []struct{ method, path string }{
		{"GET", "/api/v1/devices"},
		{"GET", "/api/v1/tokens"},
		{"POST", "/api/v1/enrollment-groups"},
		{"POST", "/api/v1/tenants"},
		{"GET", "/api/v1/ca/device"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, rt := range routes {
				body, _ := json.Marshal(EnrollmentGroupRequest{Name: "g", CAPEM: ca})
				req, _ := http.NewRequest(rt.method, e.srv.URL+rt.path, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				if c.header != "" {
					req.Header.Set("Authorization", c.header)
				}
				resp, err := e.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var p Problem
				_ = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || p.Code != steward.CodeUnauthenticated || resp.Header.Get("Content-Type") != ProblemContentType {
					t.Errorf("%s %s: status %d code %q, want 401 unauthenticated problem", rt.method, rt.path, resp.StatusCode, p.Code)
				}
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("%s %s: WWW-Authenticate %q", rt.method, rt.path, resp.Header.Get("WWW-Authenticate"))
				}
			}
		})
	}
	// Nothing was written by the refused requests.
	var groups List[steward.EnrollmentGroup]
	e.must(t, http.StatusOK, "GET", "/api/v1/enrollment-groups", e.system, nil).decode(t, &groups)
	if len(groups.Items) != 0 {
		t.Errorf("refused requests created groups: %+v", groups.Items)
	}
	var tenants List[steward.Tenant]
	e.must(t, http.StatusOK, "GET", "/api/v1/tenants", e.system, nil).decode(t, &tenants)
	if len(tenants.Items) != 1 {
		t.Errorf("refused requests created tenants: %+v", tenants.Items)
	}
	// The scheme is case-insensitive (RFC 9110).
	if r := e.raw(t, "GET", "/api/v1/tokens", "", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("status %d", r.status)
	}
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/tokens", nil)
	req.Header.Set("Authorization", "bearer "+e.system)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("lower-case bearer scheme: status %d", resp.StatusCode)
	}
}

func TestRouterProblems(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cases := []struct {
		name, method, path string
		status             int
		code               steward.Code
		allow              string
	}{
		{"unknown path", "GET", "/api/v1/nothing-here", 404, steward.CodeNotFound, ""},
		{"root", "GET", "/", 404, steward.CodeNotFound, ""},
		{"wrong method", "PUT", "/api/v1/devices", 405, codeMethodNotAllowed, "GET, HEAD"},
		{"wrong method with id", "POST", "/api/v1/devices/" + deviceID("x"), 405, codeMethodNotAllowed, "GET, HEAD, PATCH"},
		{"delete tenants", "DELETE", "/api/v1/tenants", 405, codeMethodNotAllowed, "GET, HEAD, POST"},
		{"unknown device", "GET", "/api/v1/devices/" + deviceID("nope"), 404, steward.CodeNotFound, ""},
		{"unknown group", "GET", "/api/v1/enrollment-groups/eg-0000000000000000", 404, steward.CodeNotFound, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, c.method, c.path, e.system, nil)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			p := r.problem(t)
			if p.Code != c.code || p.Type != "about:blank" || p.Title != http.StatusText(c.status) {
				t.Errorf("problem %+v", p)
			}
			if got := r.header.Get("Allow"); got != c.allow {
				t.Errorf("Allow = %q, want %q", got, c.allow)
			}
		})
	}
}

// TestBadBodiesChangeNothing sends broken bodies to every route that takes
// one and checks the status, the problem, and that nothing was written.
func TestBadBodiesChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dev := e.addDevice(t, steward.DefaultTenant, deviceID("body"), "gw-100", map[string]string{"site": "a"})
	ca := readFixture(t, "mfr-ca-1.pem")
	validGroup := fmt.Sprintf(`{"name":"g","ca_pem":%q}`, ca)
	huge := `{"name":"` + strings.Repeat("x", MaxBodyBytes) + `"}`
	bodies := []struct {
		name, contentType, body string
		status                  int
		code                    steward.Code
	}{
		{"malformed", "application/json", `{"name":`, 400, steward.CodeInvalid},
		{"not json", "application/json", `name=x`, 400, steward.CodeInvalid},
		{"unknown field", "application/json", `{"name":"x","tenant_id":"other","reason":"r","id":"x"}`, 400, steward.CodeInvalid},
		{"two values", "application/json", `{} {}`, 400, steward.CodeInvalid},
		{"trailing garbage", "application/json", `{}x`, 400, steward.CodeInvalid},
		{"array", "application/json", `[1,2]`, 400, steward.CodeInvalid},
		{"wrong type", "application/json", `{"name":5,"reason":5,"labels":"x","owner":5}`, 400, steward.CodeInvalid},
		{"empty", "application/json", ``, 400, steward.CodeInvalid},
		{"oversized", "application/json", huge, 413, steward.CodeTooLarge},
		{"oversized whitespace after a valid value", "application/json", validGroup + strings.Repeat(" ", MaxBodyBytes), 413, steward.CodeTooLarge},
		{"form content type", "application/x-www-form-urlencoded", `name=x`, 415, steward.CodeUnsupported},
		{"no content type", "", `{"name":"x"}`, 415, steward.CodeUnsupported},
	}
	routes := []struct{ method, path string }{
		{"POST", "/api/v1/enrollment-groups"},
		{"PATCH", "/api/v1/devices/" + dev.ID},
		{"POST", "/api/v1/devices/" + dev.ID + "/quarantine"},
		{"POST", "/api/v1/devices/" + dev.ID + "/commands"},
		{"POST", "/api/v1/tokens"},
		{"POST", "/api/v1/tenants"},
	}
	tokensBefore := e.tokenCount(t, e.system)
	for _, b := range bodies {
		for _, rt := range routes {
			if b.name == "oversized whitespace after a valid value" && rt.path != "/api/v1/enrollment-groups" {
				continue
			}
			t.Run(b.name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				r := e.raw(t, rt.method, rt.path, e.system, b.contentType, strings.NewReader(b.body))
				if r.status != b.status {
					t.Fatalf("status %d, want %d: %s", r.status, b.status, r.body)
				}
				if p := r.problem(t); p.Code != b.code {
					t.Errorf("code %q, want %q (%s)", p.Code, b.code, p.Detail)
				}
			})
		}
	}
	// Nothing was written.
	var groups List[steward.EnrollmentGroup]
	e.must(t, 200, "GET", "/api/v1/enrollment-groups", e.system, nil).decode(t, &groups)
	if len(groups.Items) != 0 {
		t.Errorf("groups written: %+v", groups.Items)
	}
	if n := e.tokenCount(t, e.system); n != tokensBefore {
		t.Errorf("tokens: %d, want %d", n, tokensBefore)
	}
	var tenants List[steward.Tenant]
	e.must(t, 200, "GET", "/api/v1/tenants", e.system, nil).decode(t, &tenants)
	if len(tenants.Items) != 1 {
		t.Errorf("tenants written: %+v", tenants.Items)
	}
	got, err := e.store.GetDevice(context.Background(), steward.DefaultTenant, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != dev.Version || got.State != steward.StateActive || got.Owner != "" || got.Labels["site"] != "a" {
		t.Errorf("device changed: %+v", got)
	}
	// The unknown field is named in the detail.
	r := e.raw(t, "POST", "/api/v1/tokens", e.system, "application/json", strings.NewReader(`{"name":"x","rol":"admin"}`))
	if p := r.problem(t); !strings.Contains(p.Detail, `"rol"`) {
		t.Errorf("detail %q does not name the unknown field", p.Detail)
	}
}

func (e *testEnv) tokenCount(t *testing.T, token string) int {
	t.Helper()
	var toks List[steward.APIToken]
	e.must(t, 200, "GET", "/api/v1/tokens", token, nil).decode(t, &toks)
	return len(toks.Items)
}

func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	a := e.system // tenant default
	b := e.newTenant(t, "tenant-b")

	devA := e.addDevice(t, steward.DefaultTenant, deviceID("aaa"), "gw-100", map[string]string{"site": "a"})
	devB := e.addDevice(t, "tenant-b", deviceID("bbb"), "gw-100", nil)
	var groupA steward.EnrollmentGroup
	e.must(t, 201, "POST", "/api/v1/enrollment-groups", a, EnrollmentGroupRequest{Name: "g", CAPEM: readFixture(t, "mfr-ca-1.pem")}).decode(t, &groupA)
	var tokA CreatedToken
	e.must(t, 201, "POST", "/api/v1/tokens", a, TokenRequest{Name: "ops"}).decode(t, &tokA)
	if err := e.store.AddSecurityEvent(ctx, steward.SecurityEvent{TenantID: steward.DefaultTenant, DeviceID: devA.ID, Kind: steward.SecSuspectedClone, Detail: "x", At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.WriteSamples(ctx, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: devA.ID, Metric: "cpu", Value: 0.5, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}

	byID := []struct{ method, path string }{
		{"GET", "/api/v1/devices/" + devA.ID},
		{"PATCH", "/api/v1/devices/" + devA.ID},
		{"POST", "/api/v1/devices/" + devA.ID + "/quarantine"},
		{"POST", "/api/v1/devices/" + devA.ID + "/release"},
		{"POST", "/api/v1/devices/" + devA.ID + "/revoke"},
		{"POST", "/api/v1/devices/" + devA.ID + "/commands"},
		{"GET", "/api/v1/devices/" + devA.ID + "/telemetry/latest"},
		{"GET", "/api/v1/enrollment-groups/" + groupA.ID},
		{"DELETE", "/api/v1/enrollment-groups/" + groupA.ID},
		{"DELETE", "/api/v1/tokens/" + tokA.ID},
	}
	bodies := map[string]any{
		"PATCH /api/v1/devices/" + devA.ID:                map[string]any{"owner": "mallory", "labels": map[string]string{}},
		"POST /api/v1/devices/" + devA.ID + "/quarantine": QuarantineRequest{Reason: "hijack"},
		"POST /api/v1/devices/" + devA.ID + "/commands":   CommandRequest{Name: "reboot", TimeoutSeconds: 1},
	}
	for _, c := range byID {
		t.Run("by id "+c.method+" "+c.path, func(t *testing.T) {
			r := e.call(t, c.method, c.path, b, bodies[c.method+" "+c.path])
			if r.status != http.StatusNotFound {
				t.Fatalf("status %d, want 404: %s", r.status, r.body)
			}
			if p := r.problem(t); p.Code != steward.CodeNotFound {
				t.Errorf("code %q", p.Code)
			}
		})
	}

	byQuery := []string{
		"/api/v1/devices",
		"/api/v1/devices?q=" + url.QueryEscape(`id = "`+devA.ID+`"`),
		"/api/v1/devices?q=" + url.QueryEscape(`labels.site = "a"`),
		"/api/v1/enrollment-groups",
		"/api/v1/security-events",
		"/api/v1/security-events?device=" + devA.ID,
	}
	for _, path := range byQuery {
		t.Run("by query "+path, func(t *testing.T) {
			var l struct{ Items []map[string]any }
			e.must(t, 200, "GET", path, b, nil).decode(t, &l)
			for _, it := range l.Items {
				if it["tenant_id"] != "tenant-b" {
					t.Errorf("tenant B sees %v", it)
				}
			}
			if strings.Contains(path, "devices") && len(l.Items) > 1 {
				t.Errorf("tenant B sees %d devices", len(l.Items))
			}
		})
	}
	var toks List[steward.APIToken]
	e.must(t, 200, "GET", "/api/v1/tokens", b, nil).decode(t, &toks)
	for _, tok := range toks.Items {
		if tok.TenantID != "tenant-b" {
			t.Errorf("tenant B lists token %+v", tok)
		}
	}
	var devs List[steward.Device]
	e.must(t, 200, "GET", "/api/v1/devices", b, nil).decode(t, &devs)
	if len(devs.Items) != 1 || devs.Items[0].ID != devB.ID {
		t.Errorf("tenant B lists %+v, want only its own device", devs.Items)
	}

	// Tenant A's things are untouched.
	got, err := e.store.GetDevice(ctx, steward.DefaultTenant, devA.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != devA.Version || got.State != steward.StateActive || got.Owner != "" || got.Labels["site"] != "a" {
		t.Errorf("tenant A's device changed: %+v", got)
	}
	certs, _ := e.store.ListCertificates(ctx, steward.DefaultTenant, devA.ID)
	for _, c := range certs {
		if c.Revoked() {
			t.Errorf("tenant A's certificate revoked")
		}
	}
	e.must(t, 200, "GET", "/api/v1/enrollment-groups/"+groupA.ID, a, nil)
	if r := e.call(t, "GET", "/api/v1/tokens", tokA.Secret, nil); r.status != 200 {
		t.Errorf("tenant A's token no longer works: %d", r.status)
	}
	e.mu.Lock()
	if len(e.controls) != 0 {
		t.Errorf("device plane told %+v", e.controls)
	}
	e.mu.Unlock()

	// Each tenant has its own device CA.
	caA := e.must(t, 200, "GET", "/api/v1/ca/device", a, nil).body
	caB := e.must(t, 200, "GET", "/api/v1/ca/device", b, nil).body
	if bytes.Equal(caA, caB) {
		t.Error("tenants share a device CA")
	}
}

func TestTenants(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var admin CreatedToken
	e.must(t, 201, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "admin only"}).decode(t, &admin)
	if admin.Role != steward.RoleAdmin {
		t.Fatalf("default role %q", admin.Role)
	}

	t.Run("non-system token is refused", func(t *testing.T) {
		r := e.call(t, "POST", "/api/v1/tenants", admin.Secret, TenantRequest{ID: "sneaky"})
		if r.status != http.StatusForbidden || r.problem(t).Code != steward.CodePermissionDenied {
			t.Fatalf("status %d: %s", r.status, r.body)
		}
		r = e.call(t, "GET", "/api/v1/tenants", admin.Secret, nil)
		if r.status != http.StatusForbidden {
			t.Fatalf("list: status %d", r.status)
		}
		if _, err := e.store.GetTenant(context.Background(), "sneaky"); !steward.IsNotFound(err) {
			t.Fatalf("tenant created anyway: %v", err)
		}
	})

	invalid := []TenantRequest{{ID: ""}, {ID: "UPPER"}, {ID: "-dash"}, {ID: "a_b"}, {ID: strings.Repeat("a", 64)}, {ID: "ok", Name: strings.Repeat("n", 129)}, {ID: "ok2", Name: "tab\there"}}
	for _, req := range invalid {
		t.Run(fmt.Sprintf("invalid %q %q", req.ID, req.Name), func(t *testing.T) {
			r := e.call(t, "POST", "/api/v1/tenants", e.system, req)
			if r.status != 400 || r.problem(t).Code != steward.CodeInvalid {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
		})
	}

	var ct CreatedTenant
	r := e.must(t, 201, "POST", "/api/v1/tenants", e.system, TenantRequest{ID: "acme", Name: "Acme Corp"})
	r.decode(t, &ct)
	if ct.Tenant.ID != "acme" || ct.Tenant.Name != "Acme Corp" || ct.Token.TenantID != "acme" || ct.Token.Role != steward.RoleAdmin || !strings.HasPrefix(ct.Token.Secret, TokenPrefix) {
		t.Fatalf("created %+v", ct)
	}
	// The new admin token works, in the new tenant only.
	var toks List[steward.APIToken]
	e.must(t, 200, "GET", "/api/v1/tokens", ct.Token.Secret, nil).decode(t, &toks)
	if len(toks.Items) != 1 || toks.Items[0].ID != ct.Token.ID || toks.Items[0].TenantID != "acme" {
		t.Fatalf("acme tokens %+v", toks.Items)
	}
	// Its device CA exists and names the tenant.
	block, _ := pem.Decode(e.must(t, 200, "GET", "/api/v1/ca/device", ct.Token.Secret, nil).body)
	if block == nil {
		t.Fatal("no PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA || !slices.Contains(cert.Subject.OrganizationalUnit, "acme") {
		t.Fatalf("device CA %v %v", cert.Subject, err)
	}

	r = e.call(t, "POST", "/api/v1/tenants", e.system, TenantRequest{ID: "acme"})
	if r.status != http.StatusConflict || r.problem(t).Code != steward.CodeConflict {
		t.Fatalf("duplicate: status %d: %s", r.status, r.body)
	}
	var tenants List[steward.Tenant]
	e.must(t, 200, "GET", "/api/v1/tenants", e.system, nil).decode(t, &tenants)
	var ids []string
	for _, tn := range tenants.Items {
		ids = append(ids, tn.ID)
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"acme", "default"}) {
		t.Fatalf("tenants %v", ids)
	}
	// The admin of the new tenant cannot create tenants either.
	if r := e.call(t, "POST", "/api/v1/tenants", ct.Token.Secret, TenantRequest{ID: "x"}); r.status != 403 {
		t.Fatalf("tenant admin: status %d", r.status)
	}
}

func TestTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var created CreatedToken
	r := e.must(t, 201, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "ci"})
	r.decode(t, &created)
	if r.header.Get("Location") != "/api/v1/tokens/"+created.ID || r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("headers %v", r.header)
	}
	if !strings.HasPrefix(created.Secret, TokenPrefix) || len(created.Secret) < 40 || created.TenantID != steward.DefaultTenant || created.Role != steward.RoleAdmin {
		t.Fatalf("created %+v", created)
	}
	// Only the hash is stored.
	stored, err := e.store.TokenByHash(context.Background(), HashToken(created.Secret))
	if err != nil || stored.ID != created.ID {
		t.Fatalf("stored token: %+v %v", stored, err)
	}
	list := e.must(t, 200, "GET", "/api/v1/tokens", created.Secret, nil)
	if bytes.Contains(list.body, []byte(created.Secret)) || bytes.Contains(list.body, []byte(stored.Hash)) {
		t.Fatalf("list shows a secret or hash: %s", list.body)
	}

	refused := []struct {
		name   string
		token  string
		req    TokenRequest
		status int
	}{
		{"admin creates system", created.Secret, TokenRequest{Name: "x", Role: steward.RoleSystem}, 403},
		{"unknown role", e.system, TokenRequest{Name: "x", Role: "root"}, 400},
		{"empty name", e.system, TokenRequest{Name: ""}, 400},
		{"long name", e.system, TokenRequest{Name: strings.Repeat("n", 129)}, 400},
		{"control character", e.system, TokenRequest{Name: "a\x1b[31m"}, 400},
	}
	before := e.tokenCount(t, e.system)
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, "POST", "/api/v1/tokens", c.token, c.req)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			r.problem(t)
		})
	}
	if n := e.tokenCount(t, e.system); n != before {
		t.Fatalf("refused creations wrote tokens: %d, want %d", n, before)
	}

	// An admin cannot delete a system token either.
	sysTok, err := e.store.TokenByHash(context.Background(), HashToken(e.system))
	if err != nil {
		t.Fatal(err)
	}
	if r := e.call(t, "DELETE", "/api/v1/tokens/"+sysTok.ID, created.Secret, nil); r.status != 403 || r.problem(t).Code != steward.CodePermissionDenied {
		t.Fatalf("admin deletes system token: %d %s", r.status, r.body)
	}
	e.must(t, 200, "GET", "/api/v1/tokens", e.system, nil)

	// A system token may create another system token.
	var sys CreatedToken
	e.must(t, 201, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "sys2", Role: steward.RoleSystem}).decode(t, &sys)
	e.must(t, 200, "GET", "/api/v1/tenants", sys.Secret, nil)

	e.must(t, 204, "DELETE", "/api/v1/tokens/"+created.ID, e.system, nil)
	if r := e.call(t, "GET", "/api/v1/tokens", created.Secret, nil); r.status != 401 {
		t.Fatalf("deleted token still works: %d", r.status)
	}
	if r := e.call(t, "DELETE", "/api/v1/tokens/"+created.ID, e.system, nil); r.status != 404 {
		t.Fatalf("second delete: %d", r.status)
	}
}

func TestGenerateToken(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 100 {
		secret, hash, err := GenerateToken()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(secret, TokenPrefix) || len(secret) != len(TokenPrefix)+52 || hash != HashToken(secret) || len(hash) != 64 || seen[secret] {
			t.Fatalf("secret %q hash %q", secret, hash)
		}
		seen[secret] = true
	}
}

func TestEnrollmentGroups(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ca1 := readFixture(t, "mfr-ca-1.pem")
	req := EnrollmentGroupRequest{
		Name: "acme-gw", CAPEM: ca1, Models: []string{"gw-100", "gw-200"},
		Firmware: map[string][]string{"gw-100": {"1.2.0", "1.3.0"}},
		Labels:   map[string]string{"site": "plant-1"}, Serials: []string{"SN1", "SN2"}, Strict: true,
	}
	var g steward.EnrollmentGroup
	r := e.must(t, 201, "POST", "/api/v1/enrollment-groups", e.system, req)
	r.decode(t, &g)
	if r.header.Get("Location") != "/api/v1/enrollment-groups/"+g.ID {
		t.Errorf("Location %q", r.header.Get("Location"))
	}
	if g.ID == "" || g.TenantID != steward.DefaultTenant || g.Name != "acme-gw" || len(g.CAFingerprint) != 64 || !g.Strict ||
		!slices.Equal(g.Models, req.Models) || !slices.Equal(g.Firmware["gw-100"], req.Firmware["gw-100"]) || g.Labels["site"] != "plant-1" {
		t.Fatalf("group %+v", g)
	}
	var got steward.EnrollmentGroup
	e.must(t, 200, "GET", "/api/v1/enrollment-groups/"+g.ID, e.system, nil).decode(t, &got)
	if got.ID != g.ID || got.CAFingerprint != g.CAFingerprint {
		t.Fatalf("get %+v", got)
	}

	refused := []struct {
		name   string
		req    EnrollmentGroupRequest
		status int
	}{
		{"same CA again", EnrollmentGroupRequest{Name: "other", CAPEM: ca1}, 409},
		{"same name", EnrollmentGroupRequest{Name: "acme-gw", CAPEM: readFixture(t, "mfr-ca-2.pem")}, 409},
		{"not a CA", EnrollmentGroupRequest{Name: "leaf", CAPEM: readFixture(t, "not-a-ca.pem")}, 400},
		{"not PEM", EnrollmentGroupRequest{Name: "junk", CAPEM: "hello"}, 400},
		{"no name", EnrollmentGroupRequest{CAPEM: readFixture(t, "mfr-ca-2.pem")}, 400},
		{"strict without serials", EnrollmentGroupRequest{Name: "s", CAPEM: readFixture(t, "mfr-ca-2.pem"), Strict: true}, 400},
		{"firmware for a model not allowed", EnrollmentGroupRequest{Name: "f", CAPEM: readFixture(t, "mfr-ca-2.pem"), Models: []string{"a"}, Firmware: map[string][]string{"b": {"1"}}}, 400},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, "POST", "/api/v1/enrollment-groups", e.system, c.req)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			r.problem(t)
		})
	}
	var l List[steward.EnrollmentGroup]
	e.must(t, 200, "GET", "/api/v1/enrollment-groups", e.system, nil).decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].ID != g.ID {
		t.Fatalf("list %+v", l.Items)
	}
	if r := e.call(t, "GET", "/api/v1/enrollment-groups?name=x", e.system, nil); r.status != 400 {
		t.Errorf("unknown query parameter: %d", r.status)
	}
	e.must(t, 204, "DELETE", "/api/v1/enrollment-groups/"+g.ID, e.system, nil)
	e.must(t, 404, "GET", "/api/v1/enrollment-groups/"+g.ID, e.system, nil)
	e.must(t, 404, "DELETE", "/api/v1/enrollment-groups/"+g.ID, e.system, nil)
}

func TestDevices(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	for i := range 5 {
		model := "gw-100"
		if i%2 == 1 {
			model = "gw-200"
		}
		e.addDevice(t, steward.DefaultTenant, deviceID(fmt.Sprintf("dev%d", i)), model, map[string]string{"n": fmt.Sprint(i)})
	}
	first := deviceID("dev0")

	t.Run("query", func(t *testing.T) {
		var l List[steward.Device]
		e.must(t, 200, "GET", "/api/v1/devices?q="+url.QueryEscape(`model = "gw-200"`), e.system, nil).decode(t, &l)
		if len(l.Items) != 2 || l.NextAfter != "" {
			t.Fatalf("gw-200: %+v next %q", l.Items, l.NextAfter)
		}
	})
	t.Run("pages", func(t *testing.T) {
		var all []string
		after := ""
		for range 10 {
			var l List[steward.Device]
			e.must(t, 200, "GET", "/api/v1/devices?limit=2&after="+after, e.system, nil).decode(t, &l)
			for _, d := range l.Items {
				all = append(all, d.ID)
			}
			if l.NextAfter == "" {
				break
			}
			after = l.NextAfter
		}
		if len(all) != 5 || !slices.IsSorted(all) {
			t.Fatalf("pages gave %v", all)
		}
	})
	badQueries := []string{
		"q=" + url.QueryEscape(`model = `),
		"q=" + url.QueryEscape(`nosuchfield = "x"`),
		"limit=0", "limit=1001", "limit=x",
		"query=" + url.QueryEscape(`model = "x"`),
		"q=a&q=b",
	}
	for _, q := range badQueries {
		t.Run("bad "+q, func(t *testing.T) {
			r := e.call(t, "GET", "/api/v1/devices?"+q, e.system, nil)
			if r.status != 400 || r.problem(t).Code != steward.CodeInvalid {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
		})
	}

	t.Run("patch", func(t *testing.T) {
		lat, lon := 48.85, 2.35
		warranty := time.Date(2030, 1, 31, 0, 0, 0, 0, time.UTC)
		var d steward.Device
		e.must(t, 200, "PATCH", "/api/v1/devices/"+first, e.system, steward.DevicePatch{
			Owner: ptrTo("ops"), Location: &steward.Location{Site: "paris", Latitude: &lat, Longitude: &lon},
			Labels: map[string]string{"env": "prod"}, WarrantyEnd: &warranty,
		}).decode(t, &d)
		if d.Owner != "ops" || d.Location.Site != "paris" || *d.Location.Latitude != lat || d.Labels["env"] != "prod" || len(d.Labels) != 1 || !d.WarrantyEnd.Equal(warranty) || d.Version != 2 {
			t.Fatalf("patched %+v", d)
		}
		// Absent fields stay; merge-patch media type is accepted.
		r := e.raw(t, "PATCH", "/api/v1/devices/"+first, e.system, "application/merge-patch+json", strings.NewReader(`{"owner":"noc"}`))
		r.decode(t, &d)
		if r.status != 200 || d.Owner != "noc" || d.Location.Site != "paris" || d.Labels["env"] != "prod" {
			t.Fatalf("second patch %d %+v", r.status, d)
		}
		r = e.call(t, "PATCH", "/api/v1/devices/"+first, e.system, map[string]any{"location": map[string]any{"latitude": 91, "longitude": 0}})
		if r.status != 400 {
			t.Fatalf("bad latitude: %d", r.status)
		}
		r = e.call(t, "PATCH", "/api/v1/devices/"+first, e.system, map[string]any{"labels": map[string]string{"bad key!": "x"}})
		if r.status != 400 {
			t.Fatalf("bad label: %d", r.status)
		}
		stored, _ := e.store.GetDevice(ctx, steward.DefaultTenant, first)
		if stored.Owner != "noc" || stored.Version != 3 {
			t.Fatalf("refused patches changed the device: %+v", stored)
		}
	})

	t.Run("lifecycle", func(t *testing.T) {
		id := deviceID("dev1")
		r := e.call(t, "POST", "/api/v1/devices/"+id+"/quarantine", e.system, QuarantineRequest{})
		if r.status != 400 {
			t.Fatalf("quarantine without reason: %d", r.status)
		}
		var d steward.Device
		e.must(t, 200, "POST", "/api/v1/devices/"+id+"/quarantine", e.system, QuarantineRequest{Reason: "odd traffic"}).decode(t, &d)
		if d.State != steward.StateQuarantined || d.StateReason != "odd traffic" || !strings.HasPrefix(d.StateActor, "token:t-") {
			t.Fatalf("quarantined %+v", d)
		}
		if r := e.call(t, "POST", "/api/v1/devices/"+id+"/quarantine", e.system, QuarantineRequest{Reason: "again"}); r.status != 409 || r.problem(t).Code != steward.CodeFailedPrecondition {
			t.Fatalf("quarantine twice: %d %s", r.status, r.body)
		}
		e.must(t, 200, "POST", "/api/v1/devices/"+id+"/release", e.system, nil).decode(t, &d)
		if d.State != steward.StateActive {
			t.Fatalf("released %+v", d)
		}
		if r := e.call(t, "POST", "/api/v1/devices/"+id+"/release", e.system, nil); r.status != 409 || r.problem(t).Code != steward.CodeFailedPrecondition {
			t.Fatalf("release of an active device: %d %s", r.status, r.body)
		}
		var detail steward.DeviceDetail
		e.must(t, 200, "GET", "/api/v1/devices/"+id, e.system, nil).decode(t, &detail)
		if len(detail.History) != 2 || detail.History[0].To != steward.StateQuarantined || detail.History[1].To != steward.StateActive {
			t.Fatalf("history %+v", detail.History)
		}
		e.must(t, 200, "POST", "/api/v1/devices/"+id+"/revoke", e.system, nil)
		e.mu.Lock()
		defer e.mu.Unlock()
		if len(e.controls) == 0 {
			t.Fatal("device plane not told of the revocation")
		}
		if last := e.controls[len(e.controls)-1]; last.DeviceID != id || !last.Close {
			t.Fatalf("device plane told %+v", e.controls)
		}
	})

	t.Run("telemetry and security events", func(t *testing.T) {
		id := deviceID("dev2")
		at := time.Now().UTC().Truncate(time.Millisecond)
		if err := e.store.WriteSamples(ctx, []steward.Sample{
			{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.25, At: at},
			{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "temperature", Value: 48.5, At: at},
		}); err != nil {
			t.Fatal(err)
		}
		var samples List[steward.Sample]
		e.must(t, 200, "GET", "/api/v1/devices/"+id+"/telemetry/latest", e.system, nil).decode(t, &samples)
		if len(samples.Items) != 2 {
			t.Fatalf("samples %+v", samples.Items)
		}
		for _, ev := range []steward.SecurityEvent{
			{TenantID: steward.DefaultTenant, DeviceID: id, Kind: steward.SecACLDenied, Detail: "publish dev/x/telemetry", At: at},
			{TenantID: steward.DefaultTenant, DeviceID: first, Kind: steward.SecSuspectedClone, Detail: "second key", At: at},
		} {
			if err := e.store.AddSecurityEvent(ctx, ev); err != nil {
				t.Fatal(err)
			}
		}
		var evs List[steward.SecurityEvent]
		e.must(t, 200, "GET", "/api/v1/security-events?device="+id, e.system, nil).decode(t, &evs)
		if len(evs.Items) != 1 || evs.Items[0].Kind != steward.SecACLDenied {
			t.Fatalf("events %+v", evs.Items)
		}
		e.must(t, 200, "GET", "/api/v1/security-events?kind=suspected_clone&limit=5", e.system, nil).decode(t, &evs)
		if len(evs.Items) != 1 || evs.Items[0].DeviceID != first {
			t.Fatalf("events %+v", evs.Items)
		}
		for _, q := range []string{"device=bad%20id", "limit=0", "kinds=x"} {
			if r := e.call(t, "GET", "/api/v1/security-events?"+q, e.system, nil); r.status != 400 {
				t.Errorf("%s: status %d", q, r.status)
			}
		}
	})
}

func ptrTo[T any](v T) *T { return &v }

func TestCommands(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := deviceID("cmd")
	e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)

	// The device plane: a device that answers ping with pong and rejects
	// anything else, through the real bus.
	e.bus.HandleSend(func(ctx context.Context, m steward.OutboundMessage) error {
		if m.Channel != steward.ChannelCmdReq || m.DeviceID != id {
			return steward.Errorf(steward.CodeUnavailable, "device %s is not connected", m.DeviceID)
		}
		var c steward.Command
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			return err
		}
		res := steward.CommandResult{ID: c.ID, Status: steward.CommandOK, Result: map[string]any{"pong": c.Args["n"]}}
		if c.Name != "ping" {
			res = steward.CommandResult{ID: c.ID, Status: steward.CommandRejected, Error: "unknown command"}
		}
		payload, _ := json.Marshal(res)
		go e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: m.TenantID, DeviceID: m.DeviceID, Channel: steward.ChannelCmdRes, Payload: payload, Received: time.Now()}, func(error) {})
		return nil
	})

	var res steward.CommandResult
	e.must(t, 200, "POST", "/api/v1/devices/"+id+"/commands", e.system, CommandRequest{Name: "ping", Args: map[string]any{"n": 7}, TimeoutSeconds: 5}).decode(t, &res)
	if res.Status != steward.CommandOK || res.ID == "" || res.Result["pong"] != float64(7) {
		t.Fatalf("result %+v", res)
	}
	e.must(t, 200, "POST", "/api/v1/devices/"+id+"/commands", e.system, CommandRequest{Name: "selfdestruct"}).decode(t, &res)
	if res.Status != steward.CommandRejected {
		t.Fatalf("result %+v", res)
	}

	refused := []struct {
		name   string
		req    CommandRequest
		status int
	}{
		{"no name", CommandRequest{}, 400},
		{"bad name", CommandRequest{Name: "Rm -rf"}, 400},
		{"negative timeout", CommandRequest{Name: "ping", TimeoutSeconds: -1}, 400},
		{"timeout too long", CommandRequest{Name: "ping", TimeoutSeconds: 301}, 400},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, "POST", "/api/v1/devices/"+id+"/commands", e.system, c.req)
			if r.status != c.status {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
		})
	}
	other := deviceID("offline")
	e.addDevice(t, steward.DefaultTenant, other, "gw-100", nil)
	r := e.call(t, "POST", "/api/v1/devices/"+other+"/commands", e.system, CommandRequest{Name: "ping", TimeoutSeconds: 1})
	if r.status != http.StatusServiceUnavailable || r.problem(t).Code != steward.CodeUnavailable {
		t.Fatalf("offline device: %d %s", r.status, r.body)
	}
}

func TestServerCA(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.must(t, 200, "GET", "/api/v1/ca/server", e.system, nil)
	if r.header.Get("Content-Type") != PEMContentType {
		t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
	}
	block, rest := pem.Decode(r.body)
	if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		t.Fatalf("not one PEM certificate: %s", r.body)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil || !cert.IsCA {
		t.Fatalf("server CA: %v", err)
	}
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	req, _ := http.NewRequest("GET", e.srv.URL+"/api/v1/devices/"+deviceID("none"), nil)
	req.Header.Set("Authorization", "Bearer "+e.system)
	req.Header.Set("X-Request-ID", "proxy-abc.123")
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Problem
	_ = json.NewDecoder(resp.Body).Decode(&p)
	if resp.Header.Get("X-Request-ID") != "proxy-abc.123" || p.RequestID != "proxy-abc.123" {
		t.Fatalf("request ID %q / %q", resp.Header.Get("X-Request-ID"), p.RequestID)
	}
	// An unsafe one is replaced.
	req.Header.Set("X-Request-ID", "evil id/../x")
	resp2, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if id := resp2.Header.Get("X-Request-ID"); id == "" || strings.Contains(id, "evil") {
		t.Fatalf("request ID %q", id)
	}
}

func TestPanicBecomesProblem(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A server wired without its fleet service: the handler panics on a
	// nil interface, and the caller still gets a problem document.
	broken := New(Config{Store: e.store, Logger: e.api.log})
	req, _ := http.NewRequest("GET", "/api/v1/devices", nil)
	req.Header.Set("Authorization", "Bearer "+e.system)
	rec := httptest.NewRecorder()
	broken.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Type") != ProblemContentType {
		t.Fatalf("status %d %q: %s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	var p Problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Code != steward.CodeInternal || strings.Contains(p.Detail, "nil pointer") {
		t.Fatalf("problem %+v %v", p, err)
	}
	if !strings.Contains(e.logs.String(), "request_id="+p.RequestID) || !strings.Contains(e.logs.String(), "panicked") {
		t.Fatalf("panic not logged with the request ID:\n%s", e.logs.String())
	}
}
