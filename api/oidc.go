package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/steward-iot/steward"
)

// OIDCProvider configures the OpenID Connect login of one tenant: the
// authorization code flow with PKCE, state and nonce, against the
// organisation's identity provider.
type OIDCProvider struct {
	// Tenant is the tenant whose users log in through this provider.
	Tenant string `json:"tenant"`
	// Issuer is the provider's issuer URL; its discovery document is at
	// Issuer + "/.well-known/openid-configuration".
	Issuer       string `json:"issuer"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// RedirectURL is Steward's callback as registered at the provider:
	// https://HOST/api/v1/oidc/TENANT/callback.
	RedirectURL string `json:"redirect_url"`
	// Scopes asked for besides "openid"; default "email", "profile".
	Scopes []string `json:"scopes,omitempty"`
	// RoleClaim is the ID token claim that decides the user's role, a
	// string or a list of strings; default "groups".
	RoleClaim string `json:"role_claim,omitempty"`
	// Roles maps claim values to roles: the first mapping whose value the
	// claim holds gives the role. A user whose claim matches none is
	// refused.
	Roles []OIDCRoleMapping `json:"roles"`
	// CreateUsers creates a user at the first login of an identity the
	// tenant does not know yet; otherwise only existing users (matched by
	// a verified email the first time) may log in.
	CreateUsers bool `json:"create_users,omitempty"`
	// HTTPClient talks to the provider; nil means http.DefaultClient.
	HTTPClient *http.Client `json:"-"`
}

// OIDCRoleMapping gives Role to users whose role claim holds Value.
type OIDCRoleMapping struct {
	Value string       `json:"value"`
	Role  steward.Role `json:"role"`
}

// LoadOIDCProviders reads the OpenID Connect providers of a node from a
// JSON file: an array of objects with tenant, issuer, client_id,
// client_secret, redirect_url, roles ([{"value": …, "role": …}]) and
// optionally scopes, role_claim and create_users. The file holds client
// secrets: keep it readable by the node only.
func LoadOIDCProviders(path string) ([]OIDCProvider, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read oidc providers: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var ps []OIDCProvider
	if err := dec.Decode(&ps); err != nil {
		return nil, fmt.Errorf("oidc providers %s: %w", path, err)
	}
	seen := map[string]bool{}
	for i, p := range ps {
		u, err := url.Parse(p.RedirectURL)
		switch {
		case p.Tenant == "" || p.Issuer == "" || p.ClientID == "" || p.RedirectURL == "":
			return nil, fmt.Errorf("oidc provider %d: tenant, issuer, client_id and redirect_url are required", i)
		case seen[p.Tenant]:
			return nil, fmt.Errorf("oidc provider %d: tenant %s has two providers", i, p.Tenant)
		case !strings.HasPrefix(p.Issuer, "https://"):
			return nil, fmt.Errorf("oidc provider %d: the issuer must be an https URL", i)
		case err != nil || u.Path != "/api/v1/oidc/"+p.Tenant+"/callback":
			return nil, fmt.Errorf("oidc provider %d: redirect_url must end in /api/v1/oidc/%s/callback", i, p.Tenant)
		case len(p.Roles) == 0:
			return nil, fmt.Errorf("oidc provider %d: roles maps no claim value to a role, so nobody could log in", i)
		}
		for _, m := range p.Roles {
			if m.Value == "" || m.Role == "" || m.Role == steward.RoleSystem {
				return nil, fmt.Errorf("oidc provider %d: each role mapping needs a value and a role other than system", i)
			}
		}
		seen[p.Tenant] = true
	}
	return ps, nil
}

// oidcProvider is a configured provider with its discovery, done on first
// use (the provider may be down when Steward starts).
type oidcProvider struct {
	cfg      OIDCProvider
	mu       sync.Mutex
	provider *oidc.Provider
}

// oidcCookie holds the state, nonce and PKCE verifier of a login in
// progress, on the path of the callback only. SameSite=Lax: the callback is
// a top-level navigation from the provider's site, which a Strict cookie
// would not follow.
const oidcCookie = "steward_oidc"

// oidcLoginTTL bounds the time from the redirect to the callback.
const oidcLoginTTL = 10 * time.Minute

func (s *Server) registerOIDC() {
	s.op.oidc = map[string]*oidcProvider{}
	for _, p := range s.op.cfg.OIDC {
		if p.RoleClaim == "" {
			p.RoleClaim = "groups"
		}
		if len(p.Scopes) == 0 {
			p.Scopes = []string{"email", "profile"}
		}
		s.op.oidc[p.Tenant] = &oidcProvider{cfg: p}
	}
	s.handle("GET", "/api/v1/oidc/{tenant}/login", public, s.oidcLogin)
	s.handle("GET", "/api/v1/oidc/{tenant}/callback", public, s.oidcCallback)
}

// ctx carries the provider's HTTP client to go-oidc and oauth2.
func (p *oidcProvider) ctx(ctx context.Context) context.Context {
	if p.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, p.cfg.HTTPClient)
	}
	return ctx
}

// discover returns the provider, fetching its discovery document the
// first time (and again after a failure).
func (p *oidcProvider) discover(ctx context.Context) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, nil
	}
	dctx, cancel := context.WithTimeout(p.ctx(ctx), 10*time.Second)
	defer cancel()
	// The provider keeps the client for its key set, not the deadline.
	prov, err := oidc.NewProvider(p.ctx(context.WithoutCancel(dctx)), p.cfg.Issuer)
	if err != nil {
		return nil, steward.WrapError(steward.CodeUnavailable, err, "the identity provider is not reachable")
	}
	p.provider = prov
	return prov, nil
}

func (p *oidcProvider) oauth(prov *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: prov.Endpoint(),
		RedirectURL: p.cfg.RedirectURL, Scopes: append([]string{oidc.ScopeOpenID}, p.cfg.Scopes...)}
}

func (s *Server) oidcProviderOf(r *http.Request) (*oidcProvider, error) {
	p, ok := s.op.oidc[r.PathValue("tenant")]
	if !ok {
		return nil, steward.Errorf(steward.CodeNotFound, "tenant %q has no OpenID Connect login", r.PathValue("tenant"))
	}
	return p, nil
}

// randomText is 256 random bits, URL-safe.
func randomText() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return lowerBase32.EncodeToString(b)
}

// oidcLogin starts a login: it remembers a new state, nonce and PKCE
// verifier in a cookie and redirects to the provider.
func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request, _ principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	p, err := s.oidcProviderOf(r)
	if err != nil {
		return err
	}
	prov, err := p.discover(r.Context())
	if err != nil {
		return err
	}
	state, nonce, verifier := randomText(), randomText(), oauth2.GenerateVerifier()
	http.SetCookie(w, &http.Cookie{
		Name: oidcCookie, Value: state + "." + nonce + "." + verifier,
		Path: "/api/v1/oidc/" + p.cfg.Tenant + "/", MaxAge: int(oidcLoginTTL / time.Second),
		Secure: s.secureCookie(r), HttpOnly: true, SameSite: http.SameSiteLaxMode,
	})
	u := p.oauth(prov).AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))
	// No body: a browser follows the Location, a program reads it.
	w.Header().Set("Location", u)
	w.WriteHeader(http.StatusFound)
	return nil
}

// oidcClaims are the ID token claims Steward reads; the role claim is
// read separately, by its configured name.
type oidcClaims struct {
	Email         string `json:"email"`
	EmailVerified bool   `json:"email_verified"`
	Name          string `json:"name"`
}

// oidcCallback finishes a login: the state must be the cookie's, the code
// is exchanged with the PKCE verifier, the ID token must verify (issuer,
// audience, signature, expiry) and carry the cookie's nonce; the role
// claim then decides the user's role, and a console session starts.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request, _ principal) error {
	q, err := queryParams(r, "code", "state", "error", "error_description", "iss", "session_state", "scope")
	if err != nil {
		return err
	}
	p, err := s.oidcProviderOf(r)
	if err != nil {
		return err
	}
	// The cookie has done its work whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/api/v1/oidc/" + p.cfg.Tenant + "/", MaxAge: -1,
		Secure: s.secureCookie(r), HttpOnly: true, SameSite: http.SameSiteLaxMode})
	if e := q.Get("error"); e != "" {
		return steward.Errorf(steward.CodeUnauthenticated, "the identity provider refused the login: %s", clipText(e+" "+q.Get("error_description"), 200))
	}
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		return invalidf("no login in progress: start at /api/v1/oidc/%s/login", p.cfg.Tenant)
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 || q.Get("code") == "" || subtle.ConstantTimeCompare([]byte(parts[0]), []byte(q.Get("state"))) != 1 {
		return invalidf("the login's state does not match; start again at /api/v1/oidc/%s/login", p.cfg.Tenant)
	}
	nonce, verifier := parts[1], parts[2]
	ctx := r.Context()
	prov, err := p.discover(ctx)
	if err != nil {
		return err
	}
	xctx, cancel := context.WithTimeout(p.ctx(ctx), 15*time.Second)
	defer cancel()
	tok, err := p.oauth(prov).Exchange(xctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		s.log.Warn("oidc code exchange failed", "request_id", requestIDFrom(ctx), "tenant", p.cfg.Tenant, "err", err)
		return steward.Errorf(steward.CodeUnauthenticated, "the identity provider did not accept the login code")
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return steward.Errorf(steward.CodeUnauthenticated, "the identity provider sent no ID token")
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: s.clock.Now}).Verify(xctx, raw)
	if err != nil {
		s.log.Warn("oidc id token refused", "request_id", requestIDFrom(ctx), "tenant", p.cfg.Tenant, "err", err)
		return steward.Errorf(steward.CodeUnauthenticated, "the ID token does not verify")
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return steward.Errorf(steward.CodeUnauthenticated, "the ID token's nonce does not match the login")
	}
	var claims oidcClaims
	var all map[string]any
	if err := idt.Claims(&claims); err != nil {
		return steward.WrapError(steward.CodeUnauthenticated, err, "the ID token's claims do not decode")
	}
	if err := idt.Claims(&all); err != nil {
		return steward.WrapError(steward.CodeUnauthenticated, err, "the ID token's claims do not decode")
	}
	subject := idt.Issuer + "|" + idt.Subject
	role, ok := p.mapRole(all[p.cfg.RoleClaim])
	if !ok {
		s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.cfg.Tenant, Actor: "oidc:" + subject, Action: "auth.login",
			Outcome: steward.AuditDenied, Detail: "no role for the " + p.cfg.RoleClaim + " claim"})
		return steward.Errorf(steward.CodePermissionDenied, "your identity provider grants you no role in Steward (claim %q)", p.cfg.RoleClaim)
	}
	u, err := s.oidcUser(ctx, r, p, subject, claims, role)
	if err != nil {
		return err
	}
	if u.Disabled {
		s.recordOperator(ctx, r, steward.AuditRecord{TenantID: u.TenantID, Actor: "user:" + u.ID, Action: "auth.login",
			Target: "user:" + u.ID, Outcome: steward.AuditDenied, Detail: "account disabled"})
		return steward.Errorf(steward.CodeUnauthenticated, "the account is disabled")
	}
	return s.startSession(w, r, u, "oidc")
}

// mapRole picks the role of a claim value (a string or a list of them):
// the first mapping whose value the claim holds.
func (p *oidcProvider) mapRole(claim any) (steward.Role, bool) {
	var vals []string
	switch v := claim.(type) {
	case string:
		vals = []string{v}
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				vals = append(vals, s)
			}
		}
	}
	for _, m := range p.cfg.Roles {
		if slices.Contains(vals, m.Value) {
			return m.Role, true
		}
	}
	return "", false
}

// oidcUser finds or creates the user of an identity and gives it the role
// the provider's claim maps to: the provider is where the organisation
// decides who may do what, so its answer replaces the stored role at each
// login. The first login links the identity to the user of the same
// verified email.
func (s *Server) oidcUser(ctx context.Context, r *http.Request, p *oidcProvider, subject string, claims oidcClaims, role steward.Role) (steward.User, error) {
	tenant := p.cfg.Tenant
	now := s.clock.Now().UTC()
	u, err := s.cfg.Store.UserByOIDCSubject(ctx, tenant, subject)
	if steward.IsNotFound(err) && claims.Email != "" && claims.EmailVerified {
		u, err = s.cfg.Store.UserByEmail(ctx, tenant, claims.Email)
		if err == nil && u.OIDCSubject != "" {
			// The email's user is linked to another identity already.
			return steward.User{}, steward.Errorf(steward.CodeUnauthenticated, "this account is linked to another identity")
		}
	}
	switch {
	case steward.IsNotFound(err):
		if !p.cfg.CreateUsers {
			return steward.User{}, steward.Errorf(steward.CodeUnauthenticated, "no Steward user for this identity; ask an administrator to create one")
		}
		email := steward.NormalizeEmail(claims.Email)
		if email == "" || !claims.EmailVerified {
			return steward.User{}, steward.Errorf(steward.CodeUnauthenticated, "the identity provider sent no verified email")
		}
		u = steward.User{ID: newID("u-"), TenantID: tenant, Email: email, Name: clipText(claims.Name, 128), Role: role,
			OIDCSubject: subject, CreatedAt: now, UpdatedAt: now}
		if err := s.cfg.Store.CreateUser(ctx, u); err != nil {
			return steward.User{}, fmt.Errorf("create user: %w", err)
		}
		after, _ := json.Marshal(u)
		s.recordOperator(ctx, r, steward.AuditRecord{TenantID: tenant, Actor: "system:oidc", Action: "user.create",
			Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Detail: "role " + string(role) + " from the identity provider", After: after})
		return u, nil
	case err != nil:
		return steward.User{}, fmt.Errorf("look up user: %w", err)
	}
	if u.OIDCSubject == subject && u.Role == role {
		return u, nil
	}
	before, _ := json.Marshal(u)
	granted := u.Role != role
	u.OIDCSubject, u.Role, u.UpdatedAt = subject, role, now
	if err := s.cfg.Store.UpdateUser(ctx, u); err != nil {
		return steward.User{}, fmt.Errorf("update user: %w", err)
	}
	if granted {
		after, _ := json.Marshal(u)
		s.recordOperator(ctx, r, steward.AuditRecord{TenantID: tenant, Actor: "system:oidc", Action: "user.grant",
			Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Detail: "role " + string(role) + " from the identity provider", Before: before, After: after})
	}
	return u, nil
}

// clipText shortens text from outside to at most n runes.
func clipText(s string, n int) string {
	r := []rune(s)
	if len(r) > n {
		return string(r[:n])
	}
	return s
}
