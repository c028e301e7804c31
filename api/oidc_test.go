package api

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/steward-iot/steward"
)

// testIdP is a small OpenID Connect provider on loopback TLS: discovery,
// JWKS, an authorization endpoint that logs in whoever the test says, and
// a token endpoint that checks the client secret and the PKCE verifier
// and signs ID tokens (RS256).
type testIdP struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	signer jose.Signer

	mu       sync.Mutex
	codes    map[string]idpGrant
	claims   map[string]any // of the next login
	badNonce bool           // sign the next token with another nonce
	forgeKey *rsa.PrivateKey
}

type idpGrant struct {
	nonce, challenge string
	claims           map[string]any
}

const (
	idpClient = "steward"
	idpSecret = "client-secret"
)

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	idp := &testIdP{key: key, codes: map[string]idpGrant{}}
	idp.signer = mustSigner(t, key)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		u := idp.srv.URL
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer": u, "authorization_endpoint": u + "/authorize", "token_endpoint": u + "/token", "jwks_uri": u + "/jwks",
			"response_types_supported": []string{"code"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"}, "code_challenge_methods_supported": []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != idpClient || q.Get("response_type") != "code" || q.Get("code_challenge_method") != "S256" ||
			q.Get("code_challenge") == "" || q.Get("nonce") == "" || q.Get("state") == "" || !strings.Contains(q.Get("scope"), "openid") {
			http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		idp.mu.Lock()
		code := randomText()
		idp.codes[code] = idpGrant{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), claims: idp.claims}
		idp.mu.Unlock()
		back, _ := url.Parse(q.Get("redirect_uri"))
		bq := back.Query()
		bq.Set("code", code)
		bq.Set("state", q.Get("state"))
		back.RawQuery = bq.Encode()
		w.Header().Set("Location", back.String())
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("POST /token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, ok := r.BasicAuth()
		if !ok {
			id, secret = r.PostFormValue("client_id"), r.PostFormValue("client_secret")
		}
		idp.mu.Lock()
		g, found := idp.codes[r.PostFormValue("code")]
		delete(idp.codes, r.PostFormValue("code"))
		badNonce, forge := idp.badNonce, idp.forgeKey
		idp.mu.Unlock()
		sum := sha256.Sum256([]byte(r.PostFormValue("code_verifier")))
		switch {
		case id != idpClient || secret != idpSecret:
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":"invalid_client"}`)
			return
		case !found || base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
			return
		}
		now := time.Now()
		claims := map[string]any{"iss": idp.srv.URL, "aud": idpClient, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "nonce": g.nonce}
		if badNonce {
			claims["nonce"] = "another-nonce"
		}
		for k, v := range g.claims {
			claims[k] = v
		}
		payload, _ := json.Marshal(claims)
		signer := idp.signer
		if forge != nil {
			signer = mustSigner(t, forge)
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		raw, _ := jws.CompactSerialize()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at-" + randomText(), "token_type": "Bearer", "expires_in": 300, "id_token": raw})
	})
	idp.srv = httptest.NewTLSServer(mux)
	t.Cleanup(idp.srv.Close)
	return idp
}

func mustSigner(t *testing.T, key *rsa.PrivateKey) jose.Signer {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (idp *testIdP) next(claims map[string]any) {
	idp.mu.Lock()
	idp.claims = claims
	idp.mu.Unlock()
}

// oidcEnv is a test environment whose default tenant logs in through idp.
func oidcEnv(t *testing.T, createUsers bool) (*testEnv, *testIdP) {
	t.Helper()
	e, _ := opsEnv(t)
	idp := newTestIdP(t)
	e.api.op.oidc[steward.DefaultTenant] = &oidcProvider{cfg: OIDCProvider{
		Tenant: steward.DefaultTenant, Issuer: idp.srv.URL, ClientID: idpClient, ClientSecret: idpSecret,
		RedirectURL: e.srv.URL + "/api/v1/oidc/default/callback", Scopes: []string{"email", "profile"}, RoleClaim: "groups",
		Roles:       []OIDCRoleMapping{{Value: "steward-admins", Role: steward.RoleAdmin}, {Value: "plant-ops", Role: steward.RoleOperator}},
		CreateUsers: createUsers, HTTPClient: idp.srv.Client(),
	}}
	return e, idp
}

// noRedirect makes a client answer redirects instead of following them.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// oidcRound runs a login through the provider: Steward's redirect, the
// provider's, then the callback with the login cookie (tamper may change
// the callback URL and cookie first). It returns the callback's answer.
func (e *testEnv) oidcRound(t *testing.T, idp *testIdP, claims map[string]any, tamper func(u *url.URL, cookie *http.Cookie)) response {
	t.Helper()
	steward := &http.Client{Transport: e.http.Transport, CheckRedirect: noRedirect}
	resp, err := steward.Get(e.srv.URL + "/api/v1/oidc/default/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login: status %d", resp.StatusCode)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == oidcCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/api/v1/oidc/default/" {
		t.Fatalf("login cookie %+v", cookie)
	}
	idp.next(claims)
	ic := idp.srv.Client()
	ic.CheckRedirect = noRedirect
	resp, err = ic.Get(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("provider: status %d: %s", resp.StatusCode, b)
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	if tamper != nil {
		tamper(back, cookie)
	}
	req, _ := http.NewRequest("GET", back.String(), nil)
	req.AddCookie(&http.Cookie{Name: cookie.Name, Value: cookie.Value})
	resp, err = steward.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ = io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func sessionCookieOf(r response) string {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == SessionCookie {
			return c.Value
		}
	}
	return ""
}

func TestOIDCLogin(t *testing.T) {
	t.Parallel()
	e, idp := oidcEnv(t, true)
	alice := map[string]any{"sub": "alice", "email": "Alice@example.com", "email_verified": true, "name": "Alice", "groups": []string{"staff", "plant-ops"}}

	r := e.oidcRound(t, idp, alice, nil)
	if r.status != http.StatusOK {
		t.Fatalf("callback: %d %s", r.status, r.body)
	}
	var me Me
	r.decode(t, &me)
	if me.Role != steward.RoleOperator || me.User == nil || me.User.Email != "alice@example.com" || me.User.OIDCSubject != idp.srv.URL+"|alice" || me.CSRFToken == "" {
		t.Fatalf("me %+v user %+v", me, me.User)
	}
	x := session{cookie: sessionCookieOf(r), csrf: me.CSRFToken}
	if x.cookie == "" {
		t.Fatal("no session cookie")
	}
	if r := e.send(t, "GET", "/api/v1/devices", x.headers(false), nil); r.status != http.StatusOK {
		t.Fatalf("session from OIDC: %d", r.status)
	}

	// The provider decides the role at each login; the user stays the same.
	alice["groups"] = []string{"steward-admins", "plant-ops"}
	r = e.oidcRound(t, idp, alice, nil)
	var again Me
	r.decode(t, &again)
	if r.status != http.StatusOK || again.Role != steward.RoleAdmin || again.User.ID != me.User.ID {
		t.Fatalf("second login: %d %+v", r.status, again)
	}
	us, _ := e.store.ListUsers(t.Context(), steward.DefaultTenant)
	if len(us) != 1 || us[0].Role != steward.RoleAdmin {
		t.Fatalf("users %+v", us)
	}

	// Refusals: no session starts, nothing is written.
	cases := []struct {
		name   string
		claims map[string]any
		setup  func()
		tamper func(u *url.URL, c *http.Cookie)
		status int
	}{
		{"no mapped group", map[string]any{"sub": "mallory", "email": "m@example.com", "email_verified": true, "groups": []string{"staff"}}, nil, nil, http.StatusForbidden},
		{"wrong state", alice, nil, func(u *url.URL, _ *http.Cookie) {
			q := u.Query()
			q.Set("state", "forged")
			u.RawQuery = q.Encode()
		}, http.StatusBadRequest},
		{"wrong PKCE verifier", alice, nil, func(_ *url.URL, c *http.Cookie) {
			parts := strings.Split(c.Value, ".")
			c.Value = parts[0] + "." + parts[1] + "." + strings.Repeat("a", 43)
		}, http.StatusUnauthorized},
		{"wrong nonce", alice, func() { idp.mu.Lock(); idp.badNonce = true; idp.mu.Unlock() }, nil, http.StatusUnauthorized},
		{"forged signature", alice, func() {
			k, _ := rsa.GenerateKey(rand.Reader, 2048)
			idp.mu.Lock()
			idp.badNonce, idp.forgeKey = false, k
			idp.mu.Unlock()
		}, nil, http.StatusUnauthorized},
		{"unverified email", map[string]any{"sub": "eve", "email": "eve@example.com", "email_verified": false, "groups": "plant-ops"}, func() {
			idp.mu.Lock()
			idp.forgeKey = nil
			idp.mu.Unlock()
		}, nil, http.StatusUnauthorized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.setup != nil {
				c.setup()
			}
			r := e.oidcRound(t, idp, c.claims, c.tamper)
			if r.status != c.status || sessionCookieOf(r) != "" {
				t.Fatalf("status %d, want %d: %s", r.status, c.status, r.body)
			}
			r.problem(t)
		})
	}
	us, _ = e.store.ListUsers(t.Context(), steward.DefaultTenant)
	if len(us) != 1 {
		t.Fatalf("refused logins created users: %+v", us)
	}
	// Without the login cookie, a callback is refused.
	if r := e.call(t, "GET", "/api/v1/oidc/default/callback?code=x&state=y", "", nil); r.status != http.StatusBadRequest {
		t.Fatalf("callback without cookie: %d", r.status)
	}
	if r := e.call(t, "GET", "/api/v1/oidc/nope/login", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("tenant without OIDC: %d", r.status)
	}
}

func TestOIDCLinksExistingUsersOnly(t *testing.T) {
	t.Parallel()
	e, idp := oidcEnv(t, false)
	bob := e.createUser(t, "bob@example.com", steward.RoleViewer, "")
	r := e.oidcRound(t, idp, map[string]any{"sub": "b-1", "email": "bob@example.com", "email_verified": true, "groups": "plant-ops"}, nil)
	var me Me
	r.decode(t, &me)
	if r.status != http.StatusOK || me.User.ID != bob.ID || me.Role != steward.RoleOperator {
		t.Fatalf("bob: %d %s", r.status, r.body)
	}
	// Another identity with bob's email does not take his account.
	r = e.oidcRound(t, idp, map[string]any{"sub": "b-2", "email": "bob@example.com", "email_verified": true, "groups": "plant-ops"}, nil)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("second identity for bob: %d %s", r.status, r.body)
	}
	// An identity without a user is refused when users are not created.
	r = e.oidcRound(t, idp, map[string]any{"sub": "c-1", "email": "carol@example.com", "email_verified": true, "groups": "plant-ops"}, nil)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("carol: %d %s", r.status, r.body)
	}
	// A disabled user is refused.
	e.must(t, http.StatusOK, "PATCH", "/api/v1/users/"+bob.ID, e.system, UserPatch{Disabled: ptrTo(true)})
	r = e.oidcRound(t, idp, map[string]any{"sub": "b-1", "email": "bob@example.com", "email_verified": true, "groups": "plant-ops"}, nil)
	if r.status != http.StatusUnauthorized {
		t.Fatalf("disabled bob: %d %s", r.status, r.body)
	}
}

func TestLoadOIDCProviders(t *testing.T) {
	t.Parallel()
	ps, err := LoadOIDCProviders("testdata/oidc-providers.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 1 || ps[0].Tenant != "acme" || ps[0].ClientSecret != "s3cret" || len(ps[0].Roles) != 2 || ps[0].Roles[1].Role != steward.RoleOperator || !ps[0].CreateUsers {
		t.Fatalf("providers %+v", ps)
	}
	good := `{"tenant":"a","issuer":"https://idp","client_id":"c","redirect_url":"https://s/api/v1/oidc/a/callback","roles":[{"value":"g","role":"viewer"}]}`
	for name, body := range map[string]string{
		"not json":         `{`,
		"unknown field":    `[{"tenant":"a","colour":"blue"}]`,
		"no issuer":        `[{"tenant":"a","client_id":"c","redirect_url":"https://s/api/v1/oidc/a/callback","roles":[{"value":"g","role":"viewer"}]}]`,
		"http issuer":      strings.Replace("["+good+"]", "https://idp", "http://idp", 1),
		"wrong callback":   strings.Replace("["+good+"]", "/oidc/a/callback", "/oidc/b/callback", 1),
		"no roles":         strings.Replace("["+good+"]", `[{"value":"g","role":"viewer"}]`, `[]`, 1),
		"system role":      strings.Replace("["+good+"]", `"viewer"`, `"system"`, 1),
		"tenant twice":     "[" + good + "," + good + "]",
		"empty role value": strings.Replace("["+good+"]", `"value":"g"`, `"value":""`, 1),
	} {
		path := t.TempDir() + "/p.json"
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOIDCProviders(path); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
