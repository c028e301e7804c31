package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/query"
)

// operatorState is the API's state for operator logins.
type operatorState struct {
	cfg       OperatorConfig
	passwords *passwords
	oidc      map[string]*oidcProvider // by tenant
}

// registerOperators sets up operator logins and registers the routes of
// users, service accounts, roles, account tokens, sessions and OIDC.
func (s *Server) registerOperators() {
	s.op.cfg = s.cfg.Operators
	s.op.cfg.defaults()
	s.op.passwords = newPasswords(s.op.cfg.Argon2)
	s.registerUsers()
	s.registerSessions()
	s.registerOIDC()
}

func (s *Server) registerUsers() {
	s.handle("GET", "/api/v1/users", steward.PermUsersRead, s.listUsers)
	s.handle("POST", "/api/v1/users", steward.PermUsersAdmin, s.createUser)
	s.handle("GET", "/api/v1/users/{id}", steward.PermUsersRead, s.getUser)
	s.handle("PATCH", "/api/v1/users/{id}", steward.PermUsersAdmin, s.patchUser)
	s.handle("DELETE", "/api/v1/users/{id}", steward.PermUsersAdmin, s.deleteUser)
	s.handle("GET", "/api/v1/users/{id}/tokens", steward.PermTokensAdmin, s.listUserTokens)
	s.handle("POST", "/api/v1/users/{id}/tokens", steward.PermTokensAdmin, s.createUserToken)

	s.handle("GET", "/api/v1/service-accounts", steward.PermUsersRead, s.listServiceAccounts)
	s.handle("POST", "/api/v1/service-accounts", steward.PermUsersAdmin, s.createServiceAccount)
	s.handle("GET", "/api/v1/service-accounts/{id}", steward.PermUsersRead, s.getServiceAccount)
	s.handle("DELETE", "/api/v1/service-accounts/{id}", steward.PermUsersAdmin, s.deleteServiceAccount)
	s.handle("GET", "/api/v1/service-accounts/{id}/tokens", steward.PermTokensAdmin, s.listServiceAccountTokens)
	s.handle("POST", "/api/v1/service-accounts/{id}/tokens", steward.PermTokensAdmin, s.createServiceAccountToken)

	s.handle("GET", "/api/v1/roles", steward.PermUsersRead, s.listRoles)
	s.handle("POST", "/api/v1/roles", steward.PermUsersAdmin, s.createRole)
	s.handle("GET", "/api/v1/roles/{name}", steward.PermUsersRead, s.getRole)
	s.handle("PUT", "/api/v1/roles/{name}", steward.PermUsersAdmin, s.putRole)
	s.handle("DELETE", "/api/v1/roles/{name}", steward.PermUsersAdmin, s.deleteRole)
}

// --- permissions of callers

// rolePermissions resolves a role of a tenant to its permissions and fleet
// query (canonical form): a built-in role's own, a custom role's from the
// store. An unknown role (a custom role deleted under its holder) grants
// nothing. The system role is for the server's own tokens, never for an
// operator, so it grants nothing here either.
func (s *Server) rolePermissions(ctx context.Context, tenantID string, role steward.Role) ([]steward.Permission, string, error) {
	if role == steward.RoleSystem {
		return []steward.Permission{}, "", nil
	}
	if perms, ok := steward.RolePermissions(role); ok {
		return perms, "", nil
	}
	cr, err := s.cfg.Store.GetCustomRole(ctx, tenantID, role)
	if steward.IsNotFound(err) {
		return []steward.Permission{}, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("get role %s: %w", role, err)
	}
	q, err := canonicalQuery(cr.Query)
	if err != nil {
		// A stored query that no longer parses limits to nothing rather
		// than to everything.
		s.log.Error("role has an invalid fleet query; it grants nothing", "tenant", tenantID, "role", role, "err", err)
		return []steward.Permission{}, "", nil
	}
	return slices.Clone(cr.Permissions), q, nil
}

// canonicalQuery parses a fleet query and returns its canonical form (""
// for a blank one).
func canonicalQuery(q string) (string, error) {
	e, err := query.Parse(q)
	if err != nil || e == nil {
		return "", err
	}
	return e.String(), nil
}

// tokenPrincipal is the principal of a token: an owned token takes its
// owner's current role (so that disabling the owner or changing its role
// applies at once) narrowed to the token's scopes; an unowned token (the
// tenant's admin and system tokens) its own role. Expired tokens and
// tokens of disabled owners are refused.
func (s *Server) tokenPrincipal(ctx context.Context, tok steward.AccountToken) (principal, error) {
	if tok.Expired(s.clock.Now()) {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the token has expired")
	}
	p := principal{tokenID: tok.ID, tenantID: tok.TenantID, role: tok.Role, userID: tok.UserID, serviceAccountID: tok.ServiceAccountID}
	switch {
	case tok.UserID != "":
		u, err := s.cfg.Store.GetUser(ctx, tok.TenantID, tok.UserID)
		if err != nil {
			return principal{}, fmt.Errorf("get token owner: %w", err)
		}
		if u.Disabled {
			return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the token's owner is disabled")
		}
		p.role = u.Role
	case tok.ServiceAccountID != "":
		a, err := s.cfg.Store.GetServiceAccount(ctx, tok.TenantID, tok.ServiceAccountID)
		if err != nil {
			return principal{}, fmt.Errorf("get token owner: %w", err)
		}
		if a.Disabled {
			return principal{}, steward.Errorf(steward.CodeUnauthenticated, "the token's owner is disabled")
		}
		p.role = a.Role
	}
	if tok.UserID == "" && tok.ServiceAccountID == "" {
		if len(tok.Scopes) == 0 {
			return p, nil // the built-in role's own permissions
		}
		p.perms, _ = steward.RolePermissions(p.role)
	} else {
		var err error
		if p.perms, p.fleetQuery, err = s.rolePermissions(ctx, tok.TenantID, p.role); err != nil {
			return principal{}, err
		}
	}
	if len(tok.Scopes) > 0 {
		p.perms = slices.DeleteFunc(p.perms, func(x steward.Permission) bool { return !slices.Contains(tok.Scopes, x) })
	}
	return p, nil
}

// permissions returns the caller's effective permissions.
func (p principal) permissions() []steward.Permission {
	if p.perms != nil {
		return p.perms
	}
	perms, _ := steward.RolePermissions(p.role)
	return perms
}

// mayGrant refuses (403) to let the caller hand out a permission it does
// not hold, or a reach wider than its own: a caller limited to a fleet
// query grants only what is limited to the same query.
func (p principal) mayGrant(perms []steward.Permission, fleetQuery string) error {
	for _, x := range perms {
		if !p.can(x) {
			return steward.Errorf(steward.CodePermissionDenied, "you cannot grant %s: you do not hold it", x)
		}
	}
	if p.fleetQuery != "" && fleetQuery != p.fleetQuery {
		return steward.Errorf(steward.CodePermissionDenied, "your role is limited to the fleet query %q; you can grant only roles limited to the same query", p.fleetQuery)
	}
	return nil
}

// deviceQuery combines the caller's fleet query with the request's: the
// request's is parsed and put in canonical form first, so that no text of
// it can close the caller's parentheses.
func (p principal) deviceQuery(q string) (string, error) {
	if p.fleetQuery == "" {
		return q, nil
	}
	e, err := query.Parse(q)
	if err != nil {
		return "", err
	}
	if e == nil {
		return p.fleetQuery, nil
	}
	return "(" + p.fleetQuery + ") AND (" + e.String() + ")", nil
}

// under reports whether a route pattern is base or below it.
func under(path, base string) bool { return path == base || strings.HasPrefix(path, base+"/") }

// checkDeviceScope makes a device outside the caller's fleet query
// invisible: every route under /api/v1/devices/{id} answers 404 for it, as
// for a device that does not exist, and so does every route under
// /api/v1/alerts/{id} for an alert of such a device (or of no device: a
// site's). Routes added later under those paths are covered without doing
// anything.
func (s *Server) checkDeviceScope(r *http.Request, path string, p principal) error {
	if p.fleetQuery == "" {
		return nil
	}
	id := r.PathValue("id")
	switch {
	case under(path, "/api/v1/devices/{id}"):
		ok, err := s.deviceVisible(r.Context(), p, id)
		if err != nil {
			return err
		}
		if !ok {
			return steward.Errorf(steward.CodeNotFound, "device %s not found", id)
		}
	case under(path, "/api/v1/alerts/{id}"):
		a, err := s.cfg.Store.GetAlert(r.Context(), p.tenantID, id)
		if err != nil {
			return err
		}
		ok, err := s.deviceVisible(r.Context(), p, a.DeviceID)
		if err != nil {
			return err
		}
		if !ok {
			return steward.Errorf(steward.CodeNotFound, "alert %s not found", id)
		}
	default:
		return s.checkRecordScope(r, path, p) // scope.go
	}
	return nil
}

// deviceVisible reports whether the caller's fleet query reaches device id.
func (s *Server) deviceVisible(ctx context.Context, p principal, id string) (bool, error) {
	if p.fleetQuery == "" {
		return true, nil
	}
	seen, err := s.visibleDevices(ctx, p, []string{id})
	return seen[id], err
}

// visibleDevices returns which of ids the caller's fleet query reaches, in
// one query per 50 IDs (the query language has a length limit).
func (s *Server) visibleDevices(ctx context.Context, p principal, ids []string) (map[string]bool, error) {
	seen := map[string]bool{}
	var valid []string
	for _, id := range ids {
		if steward.ValidDeviceID(id) && !slices.Contains(valid, id) {
			valid = append(valid, id)
		}
	}
	if s.cfg.Fleet == nil && len(valid) > 0 {
		return nil, steward.Errorf(steward.CodeUnavailable, "the device registry is not available")
	}
	for chunk := range slices.Chunk(valid, 50) {
		terms := make([]string, len(chunk))
		for i, id := range chunk {
			terms[i] = `id = "` + id + `"` // a valid device ID needs no escaping
		}
		ds, err := s.cfg.Fleet.ListDevices(ctx, p.tenantID, steward.DeviceQuery{
			Query: "(" + p.fleetQuery + ") AND (" + strings.Join(terms, " OR ") + ")", Limit: len(chunk)})
		if err != nil {
			return nil, fmt.Errorf("check device scope: %w", err)
		}
		for _, d := range ds {
			seen[d.ID] = true
		}
	}
	return seen, nil
}

// inScope keeps the items of a list whose device the caller's fleet query
// reaches (items of no device, such as a site's alerts, only for callers
// without one). A filtered page may hold fewer items than its limit.
func inScope[T any](s *Server, ctx context.Context, p principal, items []T, device func(T) string) ([]T, error) {
	if p.fleetQuery == "" {
		return items, nil
	}
	ids := make([]string, len(items))
	for i, it := range items {
		ids[i] = device(it)
	}
	seen, err := s.visibleDevices(ctx, p, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(items, func(it T) bool { return !seen[device(it)] }), nil
}

// recordOperator records an operator action (a login, a lockout, a role
// grant, a token) in the audit log, with its meaning spelled out, beside
// the per-request record every state-changing route gets; it is logged
// too, so that it is seen on a node without an audit log.
func (s *Server) recordOperator(ctx context.Context, r *http.Request, rec steward.AuditRecord) {
	rec.Remote = r.RemoteAddr
	rec.RequestID = requestIDFrom(ctx)
	rec.At = s.clock.Now().UTC()
	s.log.Info("operator audit", "tenant", rec.TenantID, "actor", rec.Actor, "action", rec.Action, "target", rec.Target,
		"outcome", rec.Outcome, "detail", rec.Detail, "remote", rec.Remote, "request_id", rec.RequestID)
	if s.cfg.Auditor == nil {
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.cfg.Auditor.Record(actx, rec); err != nil {
		s.log.Error("AUDIT RECORD LOST: the action happened but is not in the audit log", "request_id", rec.RequestID,
			"tenant", rec.TenantID, "actor", rec.Actor, "action", rec.Action, "target", rec.Target, "err", err)
	}
}

// --- users

// UserRequest is the body of POST /api/v1/users.
type UserRequest struct {
	Email string       `json:"email"`
	Name  string       `json:"name,omitempty"`
	Role  steward.Role `json:"role"`
	// Password may be left out for a user who logs in only through the
	// tenant's OpenID Connect provider.
	Password string `json:"password,omitempty"`
	Disabled bool   `json:"disabled,omitempty"`
}

// UserPatch is the body of PATCH /api/v1/users/{id}; absent fields stay.
type UserPatch struct {
	Name     *string       `json:"name,omitempty"`
	Role     *steward.Role `json:"role,omitempty"`
	Password *string       `json:"password,omitempty"`
	Disabled *bool         `json:"disabled,omitempty"`
}

// checkEmail checks a login email: an address with an '@', 3 to 320
// printable characters.
func checkEmail(email string) error {
	if len(email) < 3 || len(email) > 320 || !strings.Contains(email, "@") || strings.ContainsAny(email, " \t\r\n") {
		return invalidf("email must be an address like ada@example.com, at most 320 characters")
	}
	return checkName("email", email)
}

// grantableRole checks that role exists in the caller's tenant and that
// the caller may grant it; it returns the role's permissions.
func (s *Server) grantableRole(ctx context.Context, p principal, role steward.Role) error {
	if role == "" {
		return invalidf("a role is required")
	}
	if role == steward.RoleSystem {
		return invalidf("the system role is for the server's own tokens, not for operators")
	}
	if _, builtin := steward.RolePermissions(role); !builtin {
		if _, err := s.cfg.Store.GetCustomRole(ctx, p.tenantID, role); steward.IsNotFound(err) {
			return invalidf("unknown role %q", role)
		} else if err != nil {
			return fmt.Errorf("get role: %w", err)
		}
	}
	perms, q, err := s.rolePermissions(ctx, p.tenantID, role)
	if err != nil {
		return err
	}
	return p.mayGrant(perms, q)
}

// mayManage refuses to let the caller change or remove an account more
// powerful than itself.
func (s *Server) mayManage(ctx context.Context, p principal, role steward.Role) error {
	perms, q, err := s.rolePermissions(ctx, p.tenantID, role)
	if err != nil {
		return err
	}
	if err := p.mayGrant(perms, q); err != nil {
		return steward.Errorf(steward.CodePermissionDenied, "this account holds permissions you do not (%s), so you cannot change it", err.(*steward.Error).Message)
	}
	return nil
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	us, err := s.cfg.Store.ListUsers(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	return writeJSON(w, http.StatusOK, list(us))
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, p principal) error {
	u, err := s.cfg.Store.GetUser(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, u)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var req UserRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	req.Email = steward.NormalizeEmail(req.Email)
	if err := checkEmail(req.Email); err != nil {
		return err
	}
	if req.Name != "" {
		if err := checkName("name", req.Name); err != nil {
			return err
		}
	}
	if req.Password != "" {
		if err := checkPassword(req.Password); err != nil {
			return err
		}
	}
	ctx := r.Context()
	if err := s.grantableRole(ctx, p, req.Role); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	u := steward.User{ID: newID("u-"), TenantID: p.tenantID, Email: req.Email, Name: req.Name, Role: req.Role,
		Disabled: req.Disabled, CreatedAt: now, UpdatedAt: now}
	if req.Password != "" {
		var err error
		if u.PasswordHash, err = s.op.passwords.hash(ctx, req.Password); err != nil {
			return err
		}
	}
	if err := s.cfg.Store.CreateUser(ctx, u); err != nil {
		return err
	}
	after, _ := json.Marshal(u)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "user.create",
		Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Detail: "role " + string(u.Role), After: after})
	w.Header().Set("Location", "/api/v1/users/"+url.PathEscape(u.ID))
	return writeJSON(w, http.StatusCreated, u)
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request, p principal) error {
	var patch UserPatch
	if err := decodeJSON(w, r, &patch); err != nil {
		return err
	}
	if patch.Name != nil && *patch.Name != "" {
		if err := checkName("name", *patch.Name); err != nil {
			return err
		}
	}
	if patch.Password != nil {
		if err := checkPassword(*patch.Password); err != nil {
			return err
		}
	}
	ctx := r.Context()
	u, err := s.cfg.Store.GetUser(ctx, p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.mayManage(ctx, p, u.Role); err != nil {
		return err
	}
	if patch.Role != nil {
		if err := s.grantableRole(ctx, p, *patch.Role); err != nil {
			return err
		}
	}
	before, _ := json.Marshal(u)
	if patch.Name != nil {
		u.Name = *patch.Name
	}
	if patch.Role != nil {
		u.Role = *patch.Role
	}
	if patch.Disabled != nil {
		u.Disabled = *patch.Disabled
	}
	if patch.Password != nil {
		if u.PasswordHash, err = s.op.passwords.hash(ctx, *patch.Password); err != nil {
			return err
		}
	}
	u.UpdatedAt = s.clock.Now().UTC()
	if err := s.cfg.Store.UpdateUser(ctx, u); err != nil {
		return err
	}
	// A new password, role or a disabled account ends the user's console
	// sessions: whoever held one logs in again under the new terms.
	if patch.Password != nil || patch.Role != nil || u.Disabled {
		if err := s.cfg.Store.DeleteUserSessions(ctx, u.TenantID, u.ID); err != nil {
			return fmt.Errorf("end sessions: %w", err)
		}
	}
	// A password set by an administrator also lifts a lockout.
	if patch.Password != nil && (u.FailedLogins != 0 || !u.LockedUntil.IsZero()) {
		if err := s.cfg.Store.SetLoginFailures(ctx, u.TenantID, u.ID, 0, time.Time{}); err != nil {
			return fmt.Errorf("reset login failures: %w", err)
		}
		u.FailedLogins, u.LockedUntil = 0, time.Time{}
	}
	after, _ := json.Marshal(u)
	action := "user.update"
	if patch.Role != nil {
		action = "user.grant"
	}
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: action,
		Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Before: before, After: after})
	return writeJSON(w, http.StatusOK, u)
}

func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request, p principal) error {
	ctx := r.Context()
	u, err := s.cfg.Store.GetUser(ctx, p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.mayManage(ctx, p, u.Role); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteUser(ctx, p.tenantID, u.ID); err != nil {
		return err
	}
	before, _ := json.Marshal(u)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "user.delete",
		Target: "user:" + u.ID, Outcome: steward.AuditSuccess, Before: before})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- service accounts

// ServiceAccountRequest is the body of POST /api/v1/service-accounts.
type ServiceAccountRequest struct {
	Name string       `json:"name"`
	Role steward.Role `json:"role"`
}

func (s *Server) listServiceAccounts(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	as, err := s.cfg.Store.ListServiceAccounts(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("list service accounts: %w", err)
	}
	return writeJSON(w, http.StatusOK, list(as))
}

func (s *Server) getServiceAccount(w http.ResponseWriter, r *http.Request, p principal) error {
	a, err := s.cfg.Store.GetServiceAccount(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}

func (s *Server) createServiceAccount(w http.ResponseWriter, r *http.Request, p principal) error {
	var req ServiceAccountRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("service account name", req.Name); err != nil {
		return err
	}
	ctx := r.Context()
	if err := s.grantableRole(ctx, p, req.Role); err != nil {
		return err
	}
	a := steward.ServiceAccount{ID: newID("sa-"), TenantID: p.tenantID, Name: req.Name, Role: req.Role, CreatedAt: s.clock.Now().UTC()}
	if err := s.cfg.Store.CreateServiceAccount(ctx, a); err != nil {
		return err
	}
	after, _ := json.Marshal(a)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "service_account.create",
		Target: "service_account:" + a.ID, Outcome: steward.AuditSuccess, Detail: "role " + string(a.Role), After: after})
	w.Header().Set("Location", "/api/v1/service-accounts/"+url.PathEscape(a.ID))
	return writeJSON(w, http.StatusCreated, a)
}

func (s *Server) deleteServiceAccount(w http.ResponseWriter, r *http.Request, p principal) error {
	ctx := r.Context()
	a, err := s.cfg.Store.GetServiceAccount(ctx, p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if err := s.mayManage(ctx, p, a.Role); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteServiceAccount(ctx, p.tenantID, a.ID); err != nil {
		return err
	}
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "service_account.delete",
		Target: "service_account:" + a.ID, Outcome: steward.AuditSuccess})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- account tokens

// AccountTokenRequest is the body of POST /api/v1/users/{id}/tokens and
// POST /api/v1/service-accounts/{id}/tokens.
type AccountTokenRequest struct {
	Name string `json:"name"`
	// Scopes narrow the token to these of its owner's permissions; empty
	// means all of them.
	Scopes []steward.Permission `json:"scopes,omitempty"`
	// ExpiresAt defaults to DefaultTokenLifetime from now and may be at
	// most MaxTokenLifetime away.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// CreatedAccountToken is a new account token with its secret, shown once.
type CreatedAccountToken struct {
	steward.AccountToken
	Secret string `json:"secret"`
}

// Account token lifetimes.
const (
	DefaultTokenLifetime = 90 * 24 * time.Hour
	MaxTokenLifetime     = 366 * 24 * time.Hour
)

func (s *Server) createUserToken(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.createAccountToken(w, r, p, "user")
}

func (s *Server) createServiceAccountToken(w http.ResponseWriter, r *http.Request, p principal) error {
	return s.createAccountToken(w, r, p, "service_account")
}

// createAccountToken creates a token of a user or service account. Its
// permissions (the owner's role narrowed to the scopes) must all be the
// caller's, so that no one mints a token stronger than themselves.
func (s *Server) createAccountToken(w http.ResponseWriter, r *http.Request, p principal, kind string) error {
	var req AccountTokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("token name", req.Name); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	exp := now.Add(DefaultTokenLifetime)
	if req.ExpiresAt != nil {
		exp = req.ExpiresAt.UTC()
		if !exp.After(now) || exp.Sub(now) > MaxTokenLifetime {
			return invalidf("expires_at must be in the future and at most %d days away", int(MaxTokenLifetime/(24*time.Hour)))
		}
	}
	ctx := r.Context()
	id := r.PathValue("id")
	tok := steward.AccountToken{APIToken: steward.APIToken{ID: newID("t-"), TenantID: p.tenantID, Name: req.Name, CreatedAt: now}, ExpiresAt: &exp}
	if kind == "user" {
		u, err := s.cfg.Store.GetUser(ctx, p.tenantID, id)
		if err != nil {
			return err
		}
		tok.UserID, tok.Role = u.ID, u.Role
	} else {
		a, err := s.cfg.Store.GetServiceAccount(ctx, p.tenantID, id)
		if err != nil {
			return err
		}
		tok.ServiceAccountID, tok.Role = a.ID, a.Role
	}
	perms, q, err := s.rolePermissions(ctx, p.tenantID, tok.Role)
	if err != nil {
		return err
	}
	for i, sc := range req.Scopes {
		switch {
		case !sc.Valid():
			return invalidf("unknown permission %q in scopes", sc)
		case !slices.Contains(perms, sc):
			return invalidf("scope %s is not a permission of the owner's role %s", sc, tok.Role)
		case slices.Contains(req.Scopes[:i], sc):
			return invalidf("scope %s is listed twice", sc)
		}
	}
	tok.Scopes = req.Scopes
	if len(req.Scopes) > 0 {
		perms = req.Scopes
	}
	if err := p.mayGrant(perms, q); err != nil {
		return err
	}
	secret, hash, err := GenerateToken()
	if err != nil {
		return err
	}
	tok.Hash = hash
	if err := s.cfg.Store.CreateAccountToken(ctx, tok); err != nil {
		return err
	}
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "token.create",
		Target: "token:" + tok.ID, Outcome: steward.AuditSuccess,
		Detail: fmt.Sprintf("%s %s, scopes %v, expires %s", kind, id, tok.Scopes, exp.Format(time.RFC3339))})
	w.Header().Set("Location", "/api/v1/tokens/"+url.PathEscape(tok.ID))
	return writeJSON(w, http.StatusCreated, CreatedAccountToken{AccountToken: tok, Secret: secret})
}

func (s *Server) listUserTokens(w http.ResponseWriter, r *http.Request, p principal) error {
	ctx := r.Context()
	if _, err := s.cfg.Store.GetUser(ctx, p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	return s.listOwnedTokens(w, r, p, func(t steward.AccountToken) bool { return t.UserID == r.PathValue("id") })
}

func (s *Server) listServiceAccountTokens(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := s.cfg.Store.GetServiceAccount(r.Context(), p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	return s.listOwnedTokens(w, r, p, func(t steward.AccountToken) bool { return t.ServiceAccountID == r.PathValue("id") })
}

func (s *Server) listOwnedTokens(w http.ResponseWriter, r *http.Request, p principal, mine func(steward.AccountToken) bool) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	toks, err := s.cfg.Store.ListAccountTokens(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	return writeJSON(w, http.StatusOK, list(slices.DeleteFunc(toks, func(t steward.AccountToken) bool { return !mine(t) })))
}

// --- roles

// RoleInfo is a role as GET /api/v1/roles shows it, built-in or custom.
type RoleInfo struct {
	Name        steward.Role         `json:"name"`
	Builtin     bool                 `json:"builtin"`
	Description string               `json:"description,omitempty"`
	Permissions []steward.Permission `json:"permissions"`
	Query       string               `json:"query,omitempty"`
	CreatedAt   *time.Time           `json:"created_at,omitempty"`
	UpdatedAt   *time.Time           `json:"updated_at,omitempty"`
}

// RoleRequest is the body of POST /api/v1/roles and PUT
// /api/v1/roles/{name} (whose name comes from the path).
type RoleRequest struct {
	Name        steward.Role         `json:"name,omitempty"`
	Description string               `json:"description,omitempty"`
	Permissions []steward.Permission `json:"permissions"`
	Query       string               `json:"query,omitempty"`
}

func customRoleInfo(cr steward.CustomRole) RoleInfo {
	c, u := cr.CreatedAt, cr.UpdatedAt
	return RoleInfo{Name: cr.Name, Description: cr.Description, Permissions: cr.Permissions, Query: cr.Query, CreatedAt: &c, UpdatedAt: &u}
}

func (s *Server) listRoles(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	var out []RoleInfo
	for _, role := range steward.BuiltinRoles() {
		if role == steward.RoleSystem {
			continue
		}
		perms, _ := steward.RolePermissions(role)
		out = append(out, RoleInfo{Name: role, Builtin: true, Permissions: perms})
	}
	crs, err := s.cfg.Store.ListCustomRoles(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("list roles: %w", err)
	}
	for _, cr := range crs {
		out = append(out, customRoleInfo(cr))
	}
	return writeJSON(w, http.StatusOK, list(out))
}

func (s *Server) getRole(w http.ResponseWriter, r *http.Request, p principal) error {
	name := steward.Role(r.PathValue("name"))
	if perms, ok := steward.RolePermissions(name); ok && name != steward.RoleSystem {
		return writeJSON(w, http.StatusOK, RoleInfo{Name: name, Builtin: true, Permissions: perms})
	}
	cr, err := s.cfg.Store.GetCustomRole(r.Context(), p.tenantID, name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, customRoleInfo(cr))
}

// checkRole validates a role request into a custom role the caller may
// define: valid, a fleet query that parses (kept in canonical form), and
// only permissions and reach the caller holds.
func (s *Server) checkRole(p principal, req RoleRequest) (steward.CustomRole, error) {
	q, err := canonicalQuery(req.Query)
	if err != nil {
		return steward.CustomRole{}, err
	}
	if req.Description != "" {
		if err := checkName("description", req.Description); err != nil {
			return steward.CustomRole{}, err
		}
	}
	cr := steward.CustomRole{TenantID: p.tenantID, Name: req.Name, Description: req.Description, Permissions: req.Permissions, Query: q}
	if err := cr.Validate(); err != nil {
		return steward.CustomRole{}, err
	}
	if err := p.mayGrant(cr.Permissions, q); err != nil {
		return steward.CustomRole{}, err
	}
	return cr, nil
}

func (s *Server) createRole(w http.ResponseWriter, r *http.Request, p principal) error {
	var req RoleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	cr, err := s.checkRole(p, req)
	if err != nil {
		return err
	}
	cr.CreatedAt = s.clock.Now().UTC()
	cr.UpdatedAt = cr.CreatedAt
	ctx := r.Context()
	if err := s.cfg.Store.CreateCustomRole(ctx, cr); err != nil {
		return err
	}
	after, _ := json.Marshal(cr)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "role.create",
		Target: "role:" + string(cr.Name), Outcome: steward.AuditSuccess, After: after})
	w.Header().Set("Location", "/api/v1/roles/"+url.PathEscape(string(cr.Name)))
	return writeJSON(w, http.StatusCreated, customRoleInfo(cr))
}

func (s *Server) putRole(w http.ResponseWriter, r *http.Request, p principal) error {
	var req RoleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	name := steward.Role(r.PathValue("name"))
	if req.Name != "" && req.Name != name {
		return invalidf("the role's name is %q in the path and %q in the body; a role cannot be renamed", name, req.Name)
	}
	req.Name = name
	ctx := r.Context()
	old, err := s.cfg.Store.GetCustomRole(ctx, p.tenantID, name)
	if err != nil {
		return err
	}
	// Changing a role changes what its holders may do: the caller must
	// hold what the role grants now as well as what it will grant.
	if err := p.mayGrant(old.Permissions, mustCanonical(old.Query)); err != nil {
		return err
	}
	cr, err := s.checkRole(p, req)
	if err != nil {
		return err
	}
	cr.CreatedAt = old.CreatedAt
	cr.UpdatedAt = s.clock.Now().UTC()
	if err := s.cfg.Store.UpdateCustomRole(ctx, cr); err != nil {
		return err
	}
	before, _ := json.Marshal(old)
	after, _ := json.Marshal(cr)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "role.update",
		Target: "role:" + string(cr.Name), Outcome: steward.AuditSuccess, Before: before, After: after})
	return writeJSON(w, http.StatusOK, customRoleInfo(cr))
}

// mustCanonical is canonicalQuery for a stored query, which parsed when it
// was stored; one that no longer does is kept as it is (and matches no
// caller's query).
func mustCanonical(q string) string {
	c, err := canonicalQuery(q)
	if err != nil {
		return q
	}
	return c
}

func (s *Server) deleteRole(w http.ResponseWriter, r *http.Request, p principal) error {
	name := steward.Role(r.PathValue("name"))
	if _, builtin := steward.RolePermissions(name); builtin {
		return invalidf("%s is a built-in role and cannot be deleted", name)
	}
	ctx := r.Context()
	old, err := s.cfg.Store.GetCustomRole(ctx, p.tenantID, name)
	if err != nil {
		return err
	}
	if err := p.mayGrant(old.Permissions, mustCanonical(old.Query)); err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteCustomRole(ctx, p.tenantID, name); err != nil {
		return err
	}
	before, _ := json.Marshal(old)
	s.recordOperator(ctx, r, steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: "role.delete",
		Target: "role:" + string(name), Outcome: steward.AuditSuccess, Before: before})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
