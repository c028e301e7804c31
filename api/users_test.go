package api

import (
	"bytes"
	"context"
	"encoding/json"
	"github.com/steward-iot/steward/internal/testclock"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// fastArgon2 keeps the tests' password hashes cheap; the parameters are
// in each hash, so verification works the same.
var fastArgon2 = Argon2Params{Memory: 256, Time: 1, Threads: 1}

// opsEnv is a test environment with a hand-moved clock, cheap password
// hashes and a lockout after 3 failures (1 minute doubling to 8).
func opsEnv(t *testing.T) (*testEnv, *testclock.Clock) {
	t.Helper()
	e := newEnv(t)
	clk := testclock.New(time.Now().UTC())
	e.api.clock = clk
	e.api.op.cfg.LockoutAfter = 3
	e.api.op.cfg.LockoutBase = time.Minute
	e.api.op.cfg.LockoutMax = 8 * time.Minute
	e.api.op.passwords = newPasswords(fastArgon2)
	return e, clk
}

// send sends a request with extra headers (a cookie, a CSRF token).
func (e *testEnv) send(t *testing.T, method, path string, hdr map[string]string, body any) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// session is a logged-in console.
type session struct {
	cookie string
	csrf   string
	me     Me
}

func (x session) headers(withCSRF bool) map[string]string {
	h := map[string]string{"Cookie": SessionCookie + "=" + x.cookie}
	if withCSRF {
		h[CSRFHeader] = x.csrf
	}
	return h
}

// login logs in and fails the test unless it works.
func (e *testEnv) login(t *testing.T, tenant, email, password string) session {
	t.Helper()
	r := e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Tenant: tenant, Email: email, Password: password})
	if r.status != http.StatusOK {
		t.Fatalf("login %s: status %d: %s", email, r.status, r.body)
	}
	var x session
	r.decode(t, &x.me)
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == SessionCookie {
			x.cookie = c.Value
		}
	}
	x.csrf = x.me.CSRFToken
	if x.cookie == "" || x.csrf == "" {
		t.Fatalf("login gave no cookie or CSRF token: %v %s", r.header, r.body)
	}
	return x
}

// createUser creates a user of the default tenant with the system token.
func (e *testEnv) createUser(t *testing.T, email string, role steward.Role, password string) steward.User {
	t.Helper()
	var u steward.User
	e.must(t, http.StatusCreated, "POST", "/api/v1/users", e.system, UserRequest{Email: email, Role: role, Password: password}).decode(t, &u)
	return u
}

// serviceToken creates a service account of role and a token of it.
func (e *testEnv) serviceToken(t *testing.T, by string, role steward.Role, scopes ...steward.Permission) string {
	t.Helper()
	var a steward.ServiceAccount
	e.must(t, http.StatusCreated, "POST", "/api/v1/service-accounts", by, ServiceAccountRequest{Name: "sa-" + string(role) + "-" + newID(""), Role: role}).decode(t, &a)
	var tok CreatedAccountToken
	e.must(t, http.StatusCreated, "POST", "/api/v1/service-accounts/"+a.ID+"/tokens", by, AccountTokenRequest{Name: "t", Scopes: scopes}).decode(t, &tok)
	return tok.Secret
}

const goodPassword = "correct horse battery staple"

func TestLoginSessionAndCSRF(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	u := e.createUser(t, "Ada@Example.com", steward.RoleOperator, goodPassword)
	if u.Email != "ada@example.com" {
		t.Fatalf("email stored as %q", u.Email)
	}
	// The password hash is never sent.
	r := e.must(t, http.StatusOK, "GET", "/api/v1/users/"+u.ID, e.system, nil)
	if bytes.Contains(r.body, []byte("argon2")) || bytes.Contains(r.body, []byte("password")) {
		t.Fatalf("user answer shows the password hash: %s", r.body)
	}
	stored, err := e.store.GetUser(t.Context(), steward.DefaultTenant, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stored.PasswordHash, "$argon2id$v=19$m=256,t=1,p=1$") {
		t.Fatalf("stored hash %q", stored.PasswordHash)
	}

	// The cookie's attributes.
	r = e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: "ADA@example.com", Password: goodPassword})
	if r.status != http.StatusOK {
		t.Fatalf("login: %d %s", r.status, r.body)
	}
	cookies := (&http.Response{Header: r.header}).Cookies()
	if len(cookies) != 1 || cookies[0].Name != SessionCookie || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" || cookies[0].Secure {
		t.Fatalf("cookie %+v (plain HTTP: not Secure)", cookies)
	}
	if h, err := e.store.SessionByHash(t.Context(), HashToken(cookies[0].Value)); err != nil || h.UserID != u.ID {
		t.Fatalf("session is not stored by the hash of its secret: %+v %v", h, err)
	}

	x := e.login(t, "", "ada@example.com", goodPassword)
	if x.me.Actor != "user:"+u.ID || x.me.Role != steward.RoleOperator || !slices.Contains(x.me.Permissions, steward.PermDevicesQuarantine) {
		t.Fatalf("login answer %+v", x.me)
	}
	var me Me
	e.send(t, "GET", "/api/v1/me", x.headers(false), nil).decode(t, &me)
	if me.CSRFToken != x.csrf || me.User == nil || me.User.ID != u.ID {
		t.Fatalf("me %+v", me)
	}

	// A read needs no CSRF token; a change does, and the wrong one is refused.
	if r := e.send(t, "GET", "/api/v1/devices", x.headers(false), nil); r.status != http.StatusOK {
		t.Fatalf("read with the cookie: %d %s", r.status, r.body)
	}
	d := e.addDevice(t, steward.DefaultTenant, deviceID("csrf"), "gw", nil)
	for name, h := range map[string]map[string]string{
		"none":  x.headers(false),
		"wrong": {"Cookie": SessionCookie + "=" + x.cookie, CSRFHeader: strings.Repeat("0", 64)},
	} {
		r := e.send(t, "POST", "/api/v1/devices/"+d.ID+"/quarantine", h, QuarantineRequest{Reason: "csrf"})
		if r.status != http.StatusForbidden || !strings.Contains(r.problem(t).Detail, CSRFHeader) {
			t.Fatalf("%s CSRF token: %d %s", name, r.status, r.body)
		}
	}
	got, _ := e.store.GetDevice(t.Context(), steward.DefaultTenant, d.ID)
	if got.State != steward.StateActive {
		t.Fatalf("a refused request changed the device: %s", got.State)
	}
	var qd steward.Device
	r = e.send(t, "POST", "/api/v1/devices/"+d.ID+"/quarantine", x.headers(true), QuarantineRequest{Reason: "csrf ok"})
	if r.status != http.StatusOK {
		t.Fatalf("with the CSRF token: %d %s", r.status, r.body)
	}
	r.decode(t, &qd)
	if qd.StateActor != "user:"+u.ID {
		t.Fatalf("actor %q, want user:%s", qd.StateActor, u.ID)
	}
	// A bearer token needs no CSRF token (the existing tests send none).
	e.must(t, http.StatusOK, "POST", "/api/v1/devices/"+d.ID+"/release", e.system, nil)

	// Another session's CSRF token does not fit.
	y := e.login(t, "", "ada@example.com", goodPassword)
	r = e.send(t, "POST", "/api/v1/devices/"+d.ID+"/quarantine", map[string]string{"Cookie": SessionCookie + "=" + x.cookie, CSRFHeader: y.csrf}, QuarantineRequest{Reason: "x"})
	if r.status != http.StatusForbidden {
		t.Fatalf("CSRF token of another session: %d", r.status)
	}

	// Logout needs the CSRF token too, then the session is gone.
	if r := e.send(t, "POST", "/api/v1/logout", x.headers(false), nil); r.status != http.StatusForbidden {
		t.Fatalf("logout without CSRF: %d", r.status)
	}
	r = e.send(t, "POST", "/api/v1/logout", x.headers(true), nil)
	if r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	if c := (&http.Response{Header: r.header}).Cookies(); len(c) != 1 || c[0].MaxAge >= 0 {
		t.Fatalf("logout does not clear the cookie: %+v", c)
	}
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("me after logout: %d", r.status)
	}
	if r := e.send(t, "GET", "/api/v1/me", y.headers(false), nil); r.status != http.StatusOK {
		t.Fatalf("the other session ended too: %d", r.status)
	}
	// Logout with a bearer token is a mistake, not a logout.
	if r := e.call(t, "POST", "/api/v1/logout", e.system, nil); r.status != http.StatusBadRequest {
		t.Fatalf("logout with a token: %d", r.status)
	}
}

func TestSessionCookieSecureOverTLS(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	e.createUser(t, "tls@example.com", steward.RoleViewer, goodPassword)
	req := httptest.NewRequest("POST", "https://steward.test/api/v1/login", strings.NewReader(`{"email":"tls@example.com","password":"`+goodPassword+`"}`))
	req.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	e.api.ServeHTTP(w, req)
	cs := w.Result().Cookies()
	if w.Code != http.StatusOK || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("status %d cookies %+v", w.Code, cs)
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	e, clk := opsEnv(t)
	e.createUser(t, "idle@example.com", steward.RoleViewer, goodPassword)

	// Idle: 30 minutes without a request end the session.
	x := e.login(t, "", "idle@example.com", goodPassword)
	clk.Add(29 * time.Minute)
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusOK {
		t.Fatalf("after 29 idle minutes: %d", r.status)
	}
	clk.Add(31 * time.Minute)
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("after 31 idle minutes: %d", r.status)
	}
	if _, err := e.store.SessionByHash(t.Context(), HashToken(x.cookie)); !steward.IsNotFound(err) {
		t.Fatalf("an ended session stays in the store: %v", err)
	}

	// Absolute: 12 hours end it however active it is.
	x = e.login(t, "", "idle@example.com", goodPassword)
	for range 24 {
		clk.Add(29 * time.Minute)
		if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusOK {
			t.Fatalf("an active session ended early: %d", r.status)
		}
	}
	clk.Add(13 * time.Minute) // 24×29 + 13 = 709 minutes
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusOK {
		t.Fatalf("at 11h49: %d", r.status)
	}
	clk.Add(12 * time.Minute)
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("after 12 hours: %d", r.status)
	}

	// A login sweeps the sessions past their end, presented or not.
	stale := e.login(t, "", "idle@example.com", goodPassword)
	clk.Add(13 * time.Hour)
	e.login(t, "", "idle@example.com", goodPassword)
	if _, err := e.store.SessionByHash(t.Context(), HashToken(stale.cookie)); !steward.IsNotFound(err) {
		t.Fatalf("a session past its end was not swept: %v", err)
	}

	// Disabling the user ends its sessions at once.
	x = e.login(t, "", "idle@example.com", goodPassword)
	var u steward.User
	e.must(t, http.StatusOK, "GET", "/api/v1/users/"+x.me.User.ID, e.system, nil).decode(t, &u)
	disabled := true
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, e.system, UserPatch{Disabled: &disabled})
	if r := e.send(t, "GET", "/api/v1/me", x.headers(false), nil); r.status != http.StatusUnauthorized {
		t.Fatalf("session of a disabled user: %d", r.status)
	}
}

func TestLoginLockoutAndNoEnumeration(t *testing.T) {
	t.Parallel()
	e, clk := opsEnv(t)
	u := e.createUser(t, "lock@example.com", steward.RoleViewer, goodPassword)
	fail := func(email, password string) Problem {
		t.Helper()
		r := e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: email, Password: password})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("login %s: status %d, want 401: %s", email, r.status, r.body)
		}
		if c := (&http.Response{Header: r.header}).Cookies(); len(c) != 0 {
			t.Fatalf("a refused login set a cookie: %+v", c)
		}
		return r.problem(t)
	}
	// An unknown email and a wrong password get the same answer.
	a, b := fail("nobody@example.com", "wrong password!"), fail("lock@example.com", "wrong password!")
	if a.Detail != b.Detail || a.Code != b.Code || a.Title != b.Title || a.Type != b.Type {
		t.Fatalf("unknown user %+v differs from wrong password %+v", a, b)
	}
	fail("lock@example.com", "wrong password!")
	// The third failure locks the account for a minute: even the right
	// password gets the same refusal.
	fail("lock@example.com", "wrong password!")
	stored, _ := e.store.GetUser(t.Context(), steward.DefaultTenant, u.ID)
	if stored.FailedLogins != 3 || !stored.LockedUntil.Equal(clk.Now().Truncate(time.Microsecond).Add(time.Minute)) {
		t.Fatalf("after 3 failures: %d, locked until %v (now %v)", stored.FailedLogins, stored.LockedUntil, clk.Now())
	}
	c := fail("lock@example.com", goodPassword)
	if c.Detail != a.Detail {
		t.Fatalf("a locked account answers differently: %+v", c)
	}
	clk.Add(time.Minute)
	// The next failure doubles the lockout: 2 minutes.
	fail("lock@example.com", "wrong password!")
	clk.Add(time.Minute + 59*time.Second)
	fail("lock@example.com", goodPassword)
	clk.Add(time.Second)
	e.login(t, "", "lock@example.com", goodPassword)
	stored, _ = e.store.GetUser(t.Context(), steward.DefaultTenant, u.ID)
	if stored.FailedLogins != 0 || !stored.LockedUntil.IsZero() {
		t.Fatalf("a login does not clear the failures: %d %v", stored.FailedLogins, stored.LockedUntil)
	}

	// A disabled account is refused the same way, and the failure limit per
	// address applies to logins.
	disabled := true
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, e.system, UserPatch{Disabled: &disabled})
	if p := fail("lock@example.com", goodPassword); p.Detail != a.Detail {
		t.Fatalf("a disabled account answers differently: %+v", p)
	}
	// Another tenant's user does not log in to this one.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusCreated, "POST", "/api/v1/users", other, UserRequest{Email: "o@example.com", Role: steward.RoleViewer, Password: goodPassword})
	fail("o@example.com", goodPassword)
	x := e.login(t, "other", "o@example.com", goodPassword)
	if x.me.TenantID != "other" {
		t.Fatalf("tenant %q", x.me.TenantID)
	}
}

func TestLoginAddressLimit(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	e.api.cfg.Limits.AuthFailures = 2
	e.api.failures = newFailureLimiter(e.api.cfg.Limits)
	for range 2 {
		e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: "x@example.com", Password: "wrong password!"})
	}
	r := e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: "x@example.com", Password: "wrong password!"})
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("status %d, want 429 with Retry-After", r.status)
	}
}

func TestBadUserRequestsChangeNothing(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	for name, req := range map[string]UserRequest{
		"no email":       {Role: steward.RoleViewer},
		"bad email":      {Email: "not-an-email", Role: steward.RoleViewer},
		"no role":        {Email: "a@example.com"},
		"unknown role":   {Email: "a@example.com", Role: "wizard"},
		"system role":    {Email: "a@example.com", Role: steward.RoleSystem},
		"short password": {Email: "a@example.com", Role: steward.RoleViewer, Password: "short"},
	} {
		t.Run(name, func(t *testing.T) {
			r := e.call(t, "POST", "/api/v1/users", e.system, req)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			r.problem(t)
		})
	}
	e.createUser(t, "dup@example.com", steward.RoleViewer, "")
	if r := e.call(t, "POST", "/api/v1/users", e.system, UserRequest{Email: "DUP@example.com", Role: steward.RoleViewer}); r.status != http.StatusConflict {
		t.Fatalf("duplicate email: %d", r.status)
	}
	us, _ := e.store.ListUsers(t.Context(), steward.DefaultTenant)
	if len(us) != 1 {
		t.Fatalf("refused users were stored: %+v", us)
	}
	// A user without a password cannot log in with one.
	r := e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: "dup@example.com", Password: "anything at all"})
	if r.status != http.StatusUnauthorized {
		t.Fatalf("passwordless user: %d", r.status)
	}
}

func TestAccountTokens(t *testing.T) {
	t.Parallel()
	e, clk := opsEnv(t)
	e.addDevice(t, steward.DefaultTenant, deviceID("tok"), "gw", nil)

	// Effective permissions are the role's narrowed to the scopes.
	scoped := e.serviceToken(t, e.system, steward.RoleOperator, steward.PermDevicesRead)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", scoped, nil)
	e.must(t, http.StatusForbidden, "POST", "/api/v1/devices/"+deviceID("tok")+"/quarantine", scoped, QuarantineRequest{Reason: "x"})
	e.must(t, http.StatusForbidden, "GET", "/api/v1/alert-rules", scoped, nil)
	var me Me
	e.must(t, http.StatusOK, "GET", "/api/v1/me", scoped, nil).decode(t, &me)
	if !slices.Equal(me.Permissions, []steward.Permission{steward.PermDevicesRead}) || me.ServiceAccountID == "" || me.TokenID == "" {
		t.Fatalf("me of a scoped token: %+v", me)
	}
	// A scope the role does not hold, or an unknown one, is refused.
	var a steward.ServiceAccount
	e.must(t, http.StatusCreated, "POST", "/api/v1/service-accounts", e.system, ServiceAccountRequest{Name: "viewer", Role: steward.RoleViewer}).decode(t, &a)
	for _, scopes := range [][]steward.Permission{{steward.PermDevicesWrite}, {"devices:fly"}, {steward.PermDevicesRead, steward.PermDevicesRead}} {
		e.must(t, http.StatusBadRequest, "POST", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, AccountTokenRequest{Name: "x", Scopes: scopes})
	}
	past := clk.Now().Add(-time.Minute)
	e.must(t, http.StatusBadRequest, "POST", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, AccountTokenRequest{Name: "x", ExpiresAt: &past})
	var toks List[steward.AccountToken]
	e.must(t, http.StatusOK, "GET", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, nil).decode(t, &toks)
	if len(toks.Items) != 0 {
		t.Fatalf("refused tokens were stored: %+v", toks.Items)
	}

	// The secret is shown once and stored hashed; the token expires.
	soon := clk.Now().Add(time.Hour)
	var ct CreatedAccountToken
	e.must(t, http.StatusCreated, "POST", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, AccountTokenRequest{Name: "ci", ExpiresAt: &soon}).decode(t, &ct)
	stored, err := e.store.AccountTokenByHash(t.Context(), HashToken(ct.Secret))
	if err != nil || stored.ID != ct.ID || stored.Hash == ct.Secret {
		t.Fatalf("stored token %+v %v", stored, err)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, nil).decode(t, &toks)
	if len(toks.Items) != 1 || bytes.Contains(e.call(t, "GET", "/api/v1/service-accounts/"+a.ID+"/tokens", e.system, nil).body, []byte(ct.Secret)) {
		t.Fatalf("token list %+v", toks.Items)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", ct.Secret, nil)
	clk.Add(time.Hour)
	r := e.call(t, "GET", "/api/v1/devices", ct.Secret, nil)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.problem(t).Detail, "expired") {
		t.Fatalf("expired token: %d %s", r.status, r.body)
	}

	// A user's token follows the user: disabled, it stops working.
	u := e.createUser(t, "tok@example.com", steward.RoleViewer, goodPassword)
	var ut CreatedAccountToken
	e.must(t, http.StatusCreated, "POST", "/api/v1/users/"+u.ID+"/tokens", e.system, AccountTokenRequest{Name: "laptop"}).decode(t, &ut)
	if ut.ExpiresAt == nil || ut.ExpiresAt.Sub(clk.Now()) != DefaultTokenLifetime {
		t.Fatalf("default expiry %v", ut.ExpiresAt)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", ut.Secret, nil)
	disabled := true
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, e.system, UserPatch{Disabled: &disabled})
	e.must(t, http.StatusUnauthorized, "GET", "/api/v1/devices", ut.Secret, nil)
	// Deleting the user deletes its tokens.
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/users/"+u.ID, e.system, nil)
	if _, err := e.store.AccountTokenByHash(t.Context(), HashToken(ut.Secret)); !steward.IsNotFound(err) {
		t.Fatalf("token of a deleted user: %v", err)
	}
	// A tenant token may have any built-in role but system.
	var vt CreatedToken
	e.must(t, http.StatusCreated, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "viewer", Role: steward.RoleViewer}).decode(t, &vt)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", vt.Secret, nil)
	e.must(t, http.StatusForbidden, "GET", "/api/v1/users", vt.Secret, nil)
	e.must(t, http.StatusBadRequest, "POST", "/api/v1/tokens", e.system, TokenRequest{Name: "x", Role: "wizard"})
	// The existing token routes see and revoke account tokens too.
	var all List[steward.APIToken]
	e.must(t, http.StatusOK, "GET", "/api/v1/tokens", e.system, nil).decode(t, &all)
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/tokens/"+ct.ID, e.system, nil)
}

// TestNoPrivilegeEscalation: a holder of users:admin and tokens:admin
// still cannot hand out anything it does not hold itself.
func TestNoPrivilegeEscalation(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	e.must(t, http.StatusCreated, "POST", "/api/v1/roles", e.system, RoleRequest{Name: "user-manager",
		Permissions: []steward.Permission{steward.PermUsersRead, steward.PermUsersAdmin, steward.PermTokensAdmin, steward.PermDevicesRead}})
	mgr := e.serviceToken(t, e.system, "user-manager")
	owner := e.createUser(t, "owner@example.com", steward.RoleOwner, goodPassword)

	refused := []struct {
		name, method, path string
		body               any
	}{
		{"user with a stronger role", "POST", "/api/v1/users", UserRequest{Email: "x@example.com", Role: steward.RoleOperator}},
		{"service account with a stronger role", "POST", "/api/v1/service-accounts", ServiceAccountRequest{Name: "x", Role: steward.RoleAdmin}},
		{"role with a permission not held", "POST", "/api/v1/roles", RoleRequest{Name: "x", Permissions: []steward.Permission{steward.PermDevicesWrite}}},
		{"role spanning tenants", "POST", "/api/v1/roles", RoleRequest{Name: "y", Permissions: []steward.Permission{steward.PermTenantsAdmin}}},
		{"token of a stronger user", "POST", "/api/v1/users/" + owner.ID + "/tokens", AccountTokenRequest{Name: "x"}},
		{"admin token", "POST", "/api/v1/tokens", TokenRequest{Name: "x", Role: steward.RoleAdmin}},
		{"demoting the owner", "PATCH", "/api/v1/users/" + owner.ID, UserPatch{Role: ptrTo(steward.RoleViewer)}},
		{"deleting the owner", "DELETE", "/api/v1/users/" + owner.ID, nil},
		{"widening its own role", "PUT", "/api/v1/roles/user-manager", RoleRequest{Permissions: []steward.Permission{steward.PermUsersAdmin, steward.PermDevicesWrite}}},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			r := e.call(t, c.method, c.path, mgr, c.body)
			if r.status != http.StatusForbidden && r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 403: %s", r.status, r.body)
			}
		})
	}
	us, _ := e.store.ListUsers(t.Context(), steward.DefaultTenant)
	as, _ := e.store.ListServiceAccounts(t.Context(), steward.DefaultTenant)
	rs, _ := e.store.ListCustomRoles(t.Context(), steward.DefaultTenant)
	toks, _ := e.store.ListAccountTokens(t.Context(), steward.DefaultTenant)
	if len(us) != 1 || us[0].Role != steward.RoleOwner || len(as) != 1 || len(rs) != 1 || len(rs[0].Permissions) != 4 || len(toks) != 2 {
		t.Fatalf("refused requests wrote: users %+v accounts %+v roles %+v tokens %d", us, as, rs, len(toks))
	}
	// What it holds, it may grant.
	e.must(t, http.StatusCreated, "POST", "/api/v1/users", mgr, UserRequest{Email: "v@example.com", Role: "user-manager"})
	e.must(t, http.StatusCreated, "POST", "/api/v1/roles", mgr, RoleRequest{Name: "reader", Permissions: []steward.Permission{steward.PermDevicesRead}})
	// Without users:admin, no user management at all.
	viewer := e.serviceToken(t, e.system, steward.RoleViewer)
	e.must(t, http.StatusForbidden, "POST", "/api/v1/users", viewer, UserRequest{Email: "w@example.com", Role: steward.RoleViewer})
	e.must(t, http.StatusForbidden, "GET", "/api/v1/users", viewer, nil)
}

func TestCustomRolesAPI(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	var ri RoleInfo
	e.must(t, http.StatusCreated, "POST", "/api/v1/roles", e.system, RoleRequest{Name: "plant7", Description: "plant 7 operators",
		Permissions: []steward.Permission{steward.PermDevicesRead}, Query: `labels.site=plant-7`}).decode(t, &ri)
	if ri.Query != `labels.site = "plant-7"` || ri.Builtin {
		t.Fatalf("role %+v (query in canonical form)", ri)
	}
	var rl List[RoleInfo]
	e.must(t, http.StatusOK, "GET", "/api/v1/roles", e.system, nil).decode(t, &rl)
	var names []steward.Role
	for _, r := range rl.Items {
		names = append(names, r.Name)
	}
	if !slices.Contains(names, steward.RoleAuditor) || !slices.Contains(names, "plant7") || slices.Contains(names, steward.RoleSystem) {
		t.Fatalf("roles %v", names)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/roles/approver", e.system, nil)
	e.must(t, http.StatusOK, "GET", "/api/v1/roles/plant7", e.system, nil)
	e.must(t, http.StatusNotFound, "GET", "/api/v1/roles/nope", e.system, nil)
	for name, req := range map[string]RoleRequest{
		"bad query":       {Name: "q", Permissions: []steward.Permission{steward.PermDevicesRead}, Query: "labels.site = "},
		"built-in name":   {Name: "viewer", Permissions: []steward.Permission{steward.PermDevicesRead}},
		"no permissions":  {Name: "empty"},
		"unknown perm":    {Name: "u", Permissions: []steward.Permission{"devices:fly"}},
		"upper-case name": {Name: "Plant", Permissions: []steward.Permission{steward.PermDevicesRead}},
	} {
		if r := e.call(t, "POST", "/api/v1/roles", e.system, req); r.status != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	e.must(t, http.StatusConflict, "POST", "/api/v1/roles", e.system, RoleRequest{Name: "plant7", Permissions: []steward.Permission{steward.PermDevicesRead}})
	e.must(t, http.StatusOK, "PUT", "/api/v1/roles/plant7", e.system, RoleRequest{Permissions: []steward.Permission{steward.PermDevicesRead, steward.PermAlertsRead}})
	e.must(t, http.StatusBadRequest, "PUT", "/api/v1/roles/plant7", e.system, RoleRequest{Name: "other", Permissions: []steward.Permission{steward.PermDevicesRead}})
	u := e.createUser(t, "p7@example.com", "plant7", goodPassword)
	e.must(t, http.StatusConflict, "DELETE", "/api/v1/roles/plant7", e.system, nil)
	e.must(t, http.StatusBadRequest, "DELETE", "/api/v1/roles/viewer", e.system, nil)
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, e.system, UserPatch{Role: ptrTo(steward.RoleViewer)})
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/roles/plant7", e.system, nil)
	rs, _ := e.store.ListCustomRoles(t.Context(), steward.DefaultTenant)
	if len(rs) != 0 {
		t.Fatalf("roles %+v", rs)
	}
}

// TestFleetQueryScope: a role limited to a fleet query sees and touches
// only the devices the query selects.
func TestFleetQueryScope(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	in := e.addDevice(t, steward.DefaultTenant, deviceID("in7"), "gw", map[string]string{"site": "plant-7"})
	out := e.addDevice(t, steward.DefaultTenant, deviceID("out8"), "gw", map[string]string{"site": "plant-8"})
	e.must(t, http.StatusCreated, "POST", "/api/v1/roles", e.system, RoleRequest{Name: "plant7",
		Permissions: []steward.Permission{steward.PermDevicesRead, steward.PermDevicesQuarantine, steward.PermTelemetryRead, steward.PermUsersAdmin, steward.PermUsersRead, steward.PermTokensAdmin,
			steward.PermAlertsRead, steward.PermAlertsWrite},
		Query: `labels.site = "plant-7"`})
	tok := e.serviceToken(t, e.system, "plant7")

	var l List[steward.Device]
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", tok, nil).decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].ID != in.ID {
		t.Fatalf("listed %v", l.Items)
	}
	// A request query is combined with the role's, never instead of it,
	// whatever its text tries.
	for _, q := range []string{`model = gw`, `labels.site = "plant-8"`, `id = "` + out.ID + `" OR online = false`, `model = "x") OR (model = "gw"`} {
		r := e.call(t, "GET", "/api/v1/devices?q="+urlQuery(q), tok, nil)
		if r.status == http.StatusOK {
			r.decode(t, &l)
			for _, d := range l.Items {
				if d.ID == out.ID {
					t.Fatalf("query %q reached a device outside the role", q)
				}
			}
		} else if r.status != http.StatusBadRequest {
			t.Fatalf("query %q: %d", q, r.status)
		}
	}
	// Single-device routes: outside is 404, as if it did not exist.
	for _, rt := range []struct{ method, path string }{
		{"GET", "/api/v1/devices/" + out.ID},
		{"GET", "/api/v1/devices/" + out.ID + "/telemetry/latest"},
		{"GET", "/api/v1/devices/" + out.ID + "/events"},
		{"POST", "/api/v1/devices/" + out.ID + "/quarantine"},
	} {
		var body any
		if rt.method == "POST" {
			body = QuarantineRequest{Reason: "scope"}
		}
		if r := e.call(t, rt.method, rt.path, tok, body); r.status != http.StatusNotFound {
			t.Fatalf("%s %s: %d %s", rt.method, rt.path, r.status, r.body)
		}
	}
	got, _ := e.store.GetDevice(t.Context(), steward.DefaultTenant, out.ID)
	if got.State != steward.StateActive {
		t.Fatalf("a device outside the role was changed: %s", got.State)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/devices/"+in.ID, tok, nil)
	e.must(t, http.StatusOK, "POST", "/api/v1/devices/"+in.ID+"/quarantine", tok, QuarantineRequest{Reason: "scope"})

	// Lists of per-device records keep only the role's devices; an alert
	// of another device is as invisible as the device.
	ctx := t.Context()
	now := time.Now().UTC()
	for _, d := range []string{in.ID, out.ID} {
		if err := e.store.AddSecurityEvent(ctx, steward.SecurityEvent{TenantID: steward.DefaultTenant, DeviceID: d, Kind: steward.SecAuthFailed, Detail: "x", At: now}); err != nil {
			t.Fatal(err)
		}
	}
	var sev List[steward.SecurityEvent]
	e.must(t, http.StatusOK, "GET", "/api/v1/security-events", tok, nil).decode(t, &sev)
	if len(sev.Items) != 1 || sev.Items[0].DeviceID != in.ID {
		t.Fatalf("security events %+v", sev.Items)
	}
	rule := steward.AlertRule{ID: "r-scope", TenantID: steward.DefaultTenant, Name: "hot", Kind: steward.RuleThreshold, Severity: steward.AlertMajor, Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggAvg, Window: steward.Duration(10 * time.Minute), Operator: ">", Value: 80},
		CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateAlertRule(ctx, rule); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{in.ID, out.ID} {
		if _, err := e.store.PutAlert(ctx, steward.Alert{ID: "a-" + d, TenantID: steward.DefaultTenant, RuleID: rule.ID, DeviceID: d, State: steward.AlertPending,
			Severity: steward.AlertMajor, Summary: "hot", Value: 81, StartedAt: now, LastEvaluatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	var al List[steward.Alert]
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts", tok, nil).decode(t, &al)
	if len(al.Items) != 1 || al.Items[0].DeviceID != in.ID {
		t.Fatalf("alerts %+v", al.Items)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts/a-"+in.ID, tok, nil)
	e.must(t, http.StatusNotFound, "GET", "/api/v1/alerts/a-"+out.ID, tok, nil)
	e.must(t, http.StatusNotFound, "POST", "/api/v1/alerts/a-"+out.ID+"/ack", tok, nil)
	if a, _ := e.store.GetAlert(ctx, steward.DefaultTenant, "a-"+out.ID); a.AcknowledgedBy != "" {
		t.Fatalf("an alert outside the role was acknowledged by %s", a.AcknowledgedBy)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts", e.system, nil).decode(t, &al)
	if len(al.Items) != 2 {
		t.Fatalf("an unlimited caller sees %d alerts", len(al.Items))
	}

	var me Me
	e.must(t, http.StatusOK, "GET", "/api/v1/me", tok, nil).decode(t, &me)
	if me.FleetQuery != `labels.site = "plant-7"` {
		t.Fatalf("me %+v", me)
	}
	// A limited caller grants only roles with the same limit.
	e.must(t, http.StatusForbidden, "POST", "/api/v1/roles", tok, RoleRequest{Name: "wide", Permissions: []steward.Permission{steward.PermDevicesRead}})
	e.must(t, http.StatusCreated, "POST", "/api/v1/roles", tok, RoleRequest{Name: "narrow", Permissions: []steward.Permission{steward.PermDevicesRead}, Query: `labels.site=plant-7`})
	e.must(t, http.StatusForbidden, "POST", "/api/v1/users", tok, UserRequest{Email: "v@example.com", Role: steward.RoleViewer})
	e.must(t, http.StatusCreated, "POST", "/api/v1/users", tok, UserRequest{Email: "n@example.com", Role: "narrow"})
}

// urlQuery escapes a query parameter value.
func urlQuery(s string) string {
	r := strings.NewReplacer("%", "%25", " ", "%20", "\"", "%22", "=", "%3D", "(", "%28", ")", "%29", "&", "%26", "+", "%2B", "#", "%23")
	return r.Replace(s)
}

// TestEveryRouteDeclaresItsPermission walks every route the router serves
// (s.routes, so that routes added later are covered without listing them)
// and proves that each non-public route declares a valid permission, that
// a caller of each built-in role lacking it gets 403, and that one holding
// it does not.
func TestEveryRouteDeclaresItsPermission(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	tokens := map[steward.Role]string{steward.RoleSystem: e.system}
	for _, role := range steward.BuiltinRoles() {
		if role != steward.RoleSystem {
			tokens[role] = e.serviceToken(t, e.system, role)
		}
	}
	if len(e.api.routes) < 50 {
		t.Fatalf("only %d routes", len(e.api.routes))
	}
	checked := 0
	for _, rt := range e.api.routes {
		if rt.perm == public {
			continue
		}
		if !rt.perm.Valid() {
			t.Errorf("%s %s declares unknown permission %q", rt.method, rt.path, rt.perm)
			continue
		}
		path := fillPath(rt.path)
		for role, tok := range tokens {
			req := httptest.NewRequest(rt.method, path, nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			w := httptest.NewRecorder()
			e.api.ServeHTTP(w, req.WithContext(ctx))
			cancel()
			holds := steward.RoleHas(role, rt.perm)
			switch {
			case !holds && w.Code != http.StatusForbidden:
				t.Errorf("%s %s (%s): role %s lacks it but got %d", rt.method, rt.path, rt.perm, role, w.Code)
			case holds && w.Code == http.StatusForbidden:
				t.Errorf("%s %s (%s): role %s holds it but got 403: %s", rt.method, rt.path, rt.perm, role, w.Body)
			case w.Code == http.StatusUnauthorized || w.Code == http.StatusTooManyRequests:
				t.Errorf("%s %s: role %s got %d", rt.method, rt.path, role, w.Code)
			}
			checked++
		}
	}
	t.Logf("%d routes × roles checked", checked)
}

// fillPath puts a value in each wildcard of a route pattern.
func fillPath(pattern string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			b.WriteString(pattern)
			return b.String()
		}
		j := strings.IndexByte(pattern[i:], '}')
		b.WriteString(pattern[:i])
		b.WriteString("walk-x")
		pattern = pattern[i+j+1:]
	}
}

// TestOperatorAudit: logins (success and denial), lockouts, role grants
// and token creation reach the audit log with their meaning.
func TestOperatorAudit(t *testing.T) {
	t.Parallel()
	e, _ := opsEnv(t)
	var mu sync.Mutex
	var recs []steward.AuditRecord
	e.api.cfg.Auditor = steward.AuditorFunc(func(_ context.Context, r steward.AuditRecord) error {
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
		return nil
	})
	u := e.createUser(t, "audit@example.com", steward.RoleViewer, goodPassword)
	e.login(t, "", "audit@example.com", goodPassword)
	for range 3 {
		e.send(t, "POST", "/api/v1/login", nil, LoginRequest{Email: "audit@example.com", Password: "wrong password!"})
	}
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+u.ID, e.system, UserPatch{Role: ptrTo(steward.RoleOperator)})
	var tok CreatedAccountToken
	e.must(t, http.StatusCreated, "POST", "/api/v1/users/"+u.ID+"/tokens", e.system, AccountTokenRequest{Name: "t"}).decode(t, &tok)

	mu.Lock()
	defer mu.Unlock()
	count := map[string]int{}
	for _, r := range recs {
		if r.TenantID != steward.DefaultTenant || r.At.IsZero() || r.RequestID == "" {
			continue
		}
		count[r.Action+" "+r.Outcome+" "+r.Target]++
	}
	for key, n := range map[string]int{
		"user.create success user:" + u.ID:     1,
		"auth.login success user:" + u.ID:      1,
		"auth.login denied user:" + u.ID:       3,
		"user.lockout success user:" + u.ID:    1,
		"user.grant success user:" + u.ID:      1,
		"token.create success token:" + tok.ID: 1,
	} {
		if count[key] != n {
			t.Errorf("%q recorded %d times, want %d (all: %v)", key, count[key], n, count)
		}
	}
}
