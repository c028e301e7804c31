package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// SessionCookie is the name of the console's session cookie.
const SessionCookie = "steward_session"

// CSRFHeader carries the CSRF token of a console session on every request
// that changes something.
const CSRFHeader = "X-CSRF-Token"

// sessionPrefix starts every session secret.
const sessionPrefix = "sts_"

// OperatorConfig configures operator logins. Zero fields take the defaults.
type OperatorConfig struct {
	// SessionIdle ends a console session that sent no request for this
	// long (default 30 minutes); SessionMax ends every session this long
	// after login, however active (default 12 hours).
	SessionIdle time.Duration
	SessionMax  time.Duration
	// LockoutAfter password failures in a row lock an account for
	// LockoutBase, doubled at each further failure up to LockoutMax.
	// Defaults: 5 failures; 1 minute doubling up to 1 hour.
	LockoutAfter int
	LockoutBase  time.Duration
	LockoutMax   time.Duration
	// Argon2 are the parameters of new password hashes (DefaultArgon2
	// when zero).
	Argon2 Argon2Params
	// SecureCookies marks the session cookie Secure on every answer, not
	// only on those the node itself served over TLS: set it behind a
	// TLS-terminating proxy (the node trusts no forwarding header to
	// tell).
	SecureCookies bool
	// OIDC lists the OpenID Connect providers of tenants that log in
	// through their identity provider.
	OIDC []OIDCProvider
}

func (c *OperatorConfig) defaults() {
	if c.SessionIdle <= 0 {
		c.SessionIdle = 30 * time.Minute
	}
	if c.SessionMax <= 0 {
		c.SessionMax = 12 * time.Hour
	}
	if c.LockoutAfter <= 0 {
		c.LockoutAfter = 5
	}
	if c.LockoutBase <= 0 {
		c.LockoutBase = time.Minute
	}
	if c.LockoutMax < c.LockoutBase {
		c.LockoutMax = max(time.Hour, c.LockoutBase)
	}
	if c.Argon2 == (Argon2Params{}) {
		c.Argon2 = DefaultArgon2
	}
}

// passwords hashes and checks passwords with a bounded number at once:
// each argon2id hash holds its memory parameter (64 MiB by default), so a
// burst of logins must queue rather than exhaust the node's memory.
type passwords struct {
	params Argon2Params
	slots  chan struct{}
	once   sync.Once
	dummy  string
}

func newPasswords(p Argon2Params) *passwords {
	return &passwords{params: p, slots: make(chan struct{}, max(runtime.GOMAXPROCS(0), 2))}
}

func (pw *passwords) acquire(ctx context.Context) error {
	select {
	case pw.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return steward.WrapError(steward.CodeUnavailable, ctx.Err(), "the server is busy; try again")
	}
}

func (pw *passwords) release() { <-pw.slots }

// hash hashes a new password.
func (pw *passwords) hash(ctx context.Context, password string) (string, error) {
	if err := pw.acquire(ctx); err != nil {
		return "", err
	}
	defer pw.release()
	return hashPassword(password, pw.params)
}

// verify checks password against encoded. An empty encoded (an unknown
// user, a user without a password) is checked against a dummy hash of the
// same parameters, so that the answer takes as long either way and does
// not tell who has an account.
func (pw *passwords) verify(ctx context.Context, password, encoded string) (bool, error) {
	if err := pw.acquire(ctx); err != nil {
		return false, err
	}
	defer pw.release()
	if encoded == "" {
		pw.once.Do(func() {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			pw.dummy, _ = hashPassword(hex.EncodeToString(b), pw.params)
		})
		_ = verifyPassword(password, pw.dummy)
		return false, nil
	}
	return verifyPassword(password, encoded), nil
}

// LoginRequest is the body of POST /api/v1/login.
type LoginRequest struct {
	// Tenant defaults to the default tenant.
	Tenant   string `json:"tenant,omitempty"`
	Email    string `json:"email"`
	Password string `json:"password"`
}

// Me describes the caller: GET /api/v1/me, and the answer to a login.
type Me struct {
	TenantID         string               `json:"tenant_id"`
	Actor            string               `json:"actor"`
	User             *steward.User        `json:"user,omitempty"`
	ServiceAccountID string               `json:"service_account_id,omitempty"`
	TokenID          string               `json:"token_id,omitempty"`
	Role             steward.Role         `json:"role"`
	Permissions      []steward.Permission `json:"permissions"`
	// FleetQuery limits the devices the caller sees, when set.
	FleetQuery string `json:"fleet_query,omitempty"`
	// CSRFToken is the X-CSRF-Token value of a console session.
	CSRFToken string `json:"csrf_token,omitempty"`
	// SessionExpiresAt is when a console session ends at the latest.
	SessionExpiresAt *time.Time `json:"session_expires_at,omitempty"`
}

func (s *Server) registerSessions() {
	s.handle("POST", "/api/v1/login", public, s.login)
	// Logout and me need a caller, but no permission: every caller may end
	// its own session and ask who it is.
	s.handle("POST", "/api/v1/logout", public, s.logout)
	s.handle("GET", "/api/v1/me", public, s.me)
}

// errBadLogin is the one answer to every refused login: an unknown email,
// a wrong password, a disabled or locked account all look the same.
func errBadLogin() error {
	return steward.Errorf(steward.CodeUnauthenticated, "invalid email or password")
}

func (s *Server) login(w http.ResponseWriter, r *http.Request, _ principal) error {
	var req LoginRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Tenant == "" {
		req.Tenant = steward.DefaultTenant
	}
	if req.Email == "" || req.Password == "" {
		return invalidf("email and password are required")
	}
	if len(req.Password) > MaxPasswordLen || len(req.Email) > 320 || !tenantIDPattern.MatchString(req.Tenant) {
		return errBadLogin()
	}
	ctx := r.Context()
	now := s.clock.Now()
	client := clientKey(r)
	// The per-address limit of the bearer tokens applies to logins too.
	if d := s.failures.blocked(client, now); d > 0 {
		return tooMany(d, "too many failed authentication attempts from this address")
	}
	u, err := s.cfg.Store.UserByEmail(ctx, req.Tenant, req.Email)
	if err != nil && !steward.IsNotFound(err) {
		return fmt.Errorf("look up user: %w", err)
	}
	known := err == nil
	ok, err := s.op.passwords.verify(ctx, req.Password, u.PasswordHash)
	if err != nil {
		return err
	}
	locked := known && now.Before(u.LockedUntil)
	if !known || !ok || locked || u.Disabled {
		s.failures.fail(client, now)
		if known {
			s.loginFailed(ctx, r, u, ok, locked, now)
		}
		return errBadLogin()
	}
	if u.FailedLogins != 0 || !u.LockedUntil.IsZero() {
		if err := s.cfg.Store.SetLoginFailures(ctx, u.TenantID, u.ID, 0, time.Time{}); err != nil {
			return fmt.Errorf("reset login failures: %w", err)
		}
	}
	return s.startSession(w, r, u, "password")
}

// loginFailed counts a password failure of a known user and starts or
// extends its lockout. A correct password given while locked does not
// count (it is the owner waiting out the lockout); a wrong one does.
func (s *Server) loginFailed(ctx context.Context, r *http.Request, u steward.User, passwordOK, locked bool, now time.Time) {
	reason := "wrong password"
	switch {
	case u.Disabled:
		reason = "account disabled"
	case locked && passwordOK:
		reason = "account locked"
	}
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: u.TenantID, Actor: "user:" + u.ID, Action: "auth.login",
		Target: "user:" + u.ID, Outcome: steward.AuditDenied, Detail: reason})
	if passwordOK || u.Disabled {
		return
	}
	failures := u.FailedLogins + 1
	var until time.Time
	if n := failures - s.op.cfg.LockoutAfter; n >= 0 {
		d := s.op.cfg.LockoutBase
		for range min(n, 30) {
			if d >= s.op.cfg.LockoutMax {
				break
			}
			d *= 2
		}
		until = now.Add(min(d, s.op.cfg.LockoutMax))
	} else {
		until = u.LockedUntil
	}
	if err := s.cfg.Store.SetLoginFailures(ctx, u.TenantID, u.ID, failures, until); err != nil {
		s.log.Error("record login failure", "request_id", requestIDFrom(ctx), "user", u.ID, "err", err)
		return
	}
	if failures >= s.op.cfg.LockoutAfter {
		s.log.Warn("operator account locked", "request_id", requestIDFrom(ctx), "tenant", u.TenantID, "user", u.ID,
			"failures", failures, "until", until)
		s.recordOperator(ctx, r, steward.AuditRecord{TenantID: u.TenantID, Actor: "system:api", Action: "user.lockout",
			Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Detail: fmt.Sprintf("%d failures; locked until %s", failures, until.UTC().Format(time.RFC3339))})
	}
}

// startSession creates a session of u, sets its cookie and answers with
// the caller's description, CSRF token included.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u steward.User, method string) error {
	ctx := r.Context()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("session secret: %w", err)
	}
	secret := sessionPrefix + lowerBase32.EncodeToString(b)
	now := s.clock.Now().UTC()
	sess := steward.Session{Hash: HashToken(secret), TenantID: u.TenantID, UserID: u.ID, CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(s.op.cfg.SessionMax)}
	if err := s.cfg.Store.CreateSession(ctx, sess); err != nil {
		return fmt.Errorf("create session: %w", err)
	}
	// Sessions past their absolute end are swept at each login (an idle
	// one goes when it is next presented, or once past its end): logins
	// are rare enough, and the delete is one indexed statement.
	if _, err := s.cfg.Store.DeleteExpiredSessions(ctx, now); err != nil {
		s.log.Warn("delete expired sessions", "request_id", requestIDFrom(ctx), "err", err)
	}
	http.SetCookie(w, &http.Cookie{
		Name: SessionCookie, Value: secret, Path: "/",
		Secure: s.secureCookie(r), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Expires: sess.ExpiresAt, MaxAge: int(s.op.cfg.SessionMax / time.Second),
	})
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: u.TenantID, Actor: "user:" + u.ID, Action: "auth.login",
		Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Detail: method})
	s.log.Info("operator logged in", "request_id", requestIDFrom(ctx), "tenant", u.TenantID, "user", u.ID, "method", method)
	p, err := s.sessionPrincipalOf(ctx, sess, u)
	if err != nil {
		return err
	}
	me := s.describe(p, &u)
	me.CSRFToken = csrfToken(secret)
	me.SessionExpiresAt = &sess.ExpiresAt
	return writeJSON(w, http.StatusOK, me)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, _ principal) error {
	p, err := s.authenticateLimited(r)
	if err != nil {
		return err
	}
	if p.session == "" {
		return invalidf("logout ends a console session; revoke a token with DELETE /api/v1/tokens/{id}")
	}
	if err := s.cfg.Store.DeleteSession(r.Context(), p.session); err != nil {
		return fmt.Errorf("delete session: %w", err)
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", Secure: s.secureCookie(r), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	s.recordOperator(r.Context(), r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "auth.logout",
		Target: "user:" + p.userID, Outcome: steward.AuditSuccess})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, _ principal) error {
	p, err := s.authenticateLimited(r)
	if err != nil {
		return err
	}
	var u *steward.User
	if p.userID != "" {
		got, err := s.cfg.Store.GetUser(r.Context(), p.tenantID, p.userID)
		if err != nil {
			return fmt.Errorf("get user: %w", err)
		}
		u = &got
	}
	me := s.describe(p, u)
	if p.session != "" {
		c, _ := r.Cookie(SessionCookie)
		me.CSRFToken = csrfToken(c.Value)
		if sess, err := s.cfg.Store.SessionByHash(r.Context(), p.session); err == nil {
			me.SessionExpiresAt = &sess.ExpiresAt
		}
	}
	return writeJSON(w, http.StatusOK, me)
}

// describe tells a caller who it is.
func (s *Server) describe(p principal, u *steward.User) Me {
	perms := p.permissions()
	if perms == nil {
		perms = []steward.Permission{}
	}
	me := Me{TenantID: p.tenantID, Actor: p.actor(), User: u, ServiceAccountID: p.serviceAccountID, Role: p.role,
		Permissions: perms, FleetQuery: p.fleetQuery}
	if p.session == "" {
		me.TokenID = p.tokenID
	}
	return me
}

// secureCookie reports whether cookies set in answer to r are Secure.
func (s *Server) secureCookie(r *http.Request) bool { return r.TLS != nil || s.op.cfg.SecureCookies }

// csrfToken derives a session's CSRF token from its secret: the browser's
// script gets it from the login answer or /me (the cookie itself is
// HttpOnly), another site's page can get neither, and the store, which
// keeps only the secret's hash, cannot produce it.
func csrfToken(secret string) string {
	sum := sha256.Sum256([]byte("steward-csrf\x00" + secret))
	return hex.EncodeToString(sum[:])
}

// hasSessionCookie reports whether r carries a session cookie.
func hasSessionCookie(r *http.Request) bool {
	_, err := r.Cookie(SessionCookie)
	return err == nil
}

// authenticateSession authenticates a console request by its session
// cookie: the session must exist and be neither idle too long nor past its
// end, its user must be enabled, and a request that may change something
// must carry the session's CSRF token.
func (s *Server) authenticateSession(r *http.Request) (principal, error) {
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "missing session cookie")
	}
	ctx := r.Context()
	hash := HashToken(c.Value)
	sess, err := s.cfg.Store.SessionByHash(ctx, hash)
	if steward.IsNotFound(err) {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the session has ended; log in again")
	}
	if err != nil {
		return principal{}, fmt.Errorf("look up session: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(sess.Hash), []byte(hash)) != 1 {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the session has ended; log in again")
	}
	now := s.clock.Now()
	if !now.Before(sess.ExpiresAt) || now.Sub(sess.LastSeen) > s.op.cfg.SessionIdle {
		if err := s.cfg.Store.DeleteSession(ctx, hash); err != nil {
			s.log.Warn("delete ended session", "request_id", requestIDFrom(ctx), "err", err)
		}
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the session has ended; log in again")
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		want := csrfToken(c.Value)
		if got := r.Header.Get(CSRFHeader); subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			return principal{}, steward.Errorf(steward.CodePermissionDenied, "a console request that changes something needs the session's %s header", CSRFHeader)
		}
	}
	u, err := s.cfg.Store.GetUser(ctx, sess.TenantID, sess.UserID)
	if steward.IsNotFound(err) {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the session has ended; log in again")
	}
	if err != nil {
		return principal{}, fmt.Errorf("get user: %w", err)
	}
	if u.Disabled {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the account is disabled")
	}
	// Last seen moves at most once a minute: the idle timeout needs no
	// finer grain, and a busy console should not write on every request.
	if now.Sub(sess.LastSeen) > time.Minute {
		if err := s.cfg.Store.TouchSession(ctx, hash, now); err != nil {
			s.log.Warn("touch session", "request_id", requestIDFrom(ctx), "err", err)
		}
	}
	return s.sessionPrincipalOf(ctx, sess, u)
}

// sessionPrincipalOf is the principal of a session of u.
func (s *Server) sessionPrincipalOf(ctx context.Context, sess steward.Session, u steward.User) (principal, error) {
	perms, q, err := s.rolePermissions(ctx, u.TenantID, u.Role)
	if err != nil {
		return principal{}, err
	}
	// The rate limiter counts requests per session.
	return principal{tokenID: "session-" + sess.Hash[:16], tenantID: u.TenantID, role: u.Role, userID: u.ID,
		session: sess.Hash, perms: perms, fleetQuery: q}, nil
}
