package steward

import (
	"context"
	"slices"
	"strings"
	"time"
)

// User is an operator of one tenant's management plane: a person who logs
// in to the console with a password (or through the organisation's OpenID
// Connect provider) and holds one role.
//
// A user holds exactly one role, built-in or custom, because a role may be
// limited to a fleet query: two roles with different limits would make the
// reach of each permission depend on which role granted it.
type User struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	// Email is the login name, unique in the tenant, kept in lower case.
	Email    string `json:"email"`
	Name     string `json:"name"`
	Role     Role   `json:"role"`
	Disabled bool   `json:"disabled"`
	// PasswordHash is the argon2id hash in PHC form; empty for a user who
	// logs in only through OpenID Connect.
	PasswordHash string `json:"-"`
	// OIDCSubject is "issuer|subject" of the user's identity at the
	// tenant's OpenID Connect provider, once the user logged in that way.
	OIDCSubject string `json:"oidc_subject,omitempty"`
	// FailedLogins counts password failures since the last success, and
	// LockedUntil is when the lockout they started ends.
	FailedLogins int       `json:"-"`
	LockedUntil  time.Time `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// ServiceAccount is a non-person identity of a tenant (a CI pipeline, an
// integration) that owns API tokens and holds one role, as a user does.
type ServiceAccount struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// CustomRole is a role a tenant defines: a name, the permissions it
// grants and, optionally, a fleet query that limits every device
// permission of the role to the devices the query selects.
type CustomRole struct {
	TenantID    string       `json:"tenant_id"`
	Name        Role         `json:"name"`
	Description string       `json:"description,omitempty"`
	Permissions []Permission `json:"permissions"`
	// Query, when not empty, is a fleet query (docs/query.md): holders of
	// the role see and touch only the devices it selects.
	Query     string    `json:"query,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate checks a custom role: a name that is not a built-in role's,
// known permissions without repeats, none that spans tenants.
func (r *CustomRole) Validate() error {
	switch {
	case r.TenantID == "":
		return Errorf(CodeInvalid, "a role needs a tenant")
	case !ValidRoleName(string(r.Name)):
		return Errorf(CodeInvalid, "role name %q: use 1 to 64 lower-case letters, digits, '-' or '_', starting with a letter", r.Name)
	}
	if _, builtin := RolePermissions(r.Name); builtin {
		return Errorf(CodeInvalid, "role name %q is a built-in role", r.Name)
	}
	if len(r.Permissions) == 0 {
		return Errorf(CodeInvalid, "a role needs at least one permission")
	}
	for i, p := range r.Permissions {
		if !p.Valid() {
			return Errorf(CodeInvalid, "unknown permission %q", p)
		}
		if p == PermTenantsAdmin {
			return Errorf(CodeInvalid, "permission %s spans tenants and is not for a tenant's role", p)
		}
		if slices.Contains(r.Permissions[:i], p) {
			return Errorf(CodeInvalid, "permission %s is listed twice", p)
		}
	}
	return nil
}

// ValidRoleName reports whether s can name a role: 1 to 64 lower-case
// letters, digits, '-' or '_', starting with a letter.
func ValidRoleName(s string) bool {
	if s == "" || len(s) > 64 || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for _, c := range s {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' && c != '_' {
			return false
		}
	}
	return true
}

// NormalizeEmail is the form in which emails are stored and compared.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// Session is a console login: the browser holds a random secret in a
// cookie, the store only its SHA-256. It ends at ExpiresAt (absolute) or
// when it has been idle for longer than the server's idle timeout.
type Session struct {
	Hash      string    `json:"-"` // SHA-256 of the secret (hex)
	TenantID  string    `json:"tenant_id"`
	UserID    string    `json:"user_id"`
	CreatedAt time.Time `json:"created_at"`
	LastSeen  time.Time `json:"last_seen"`
	ExpiresAt time.Time `json:"expires_at"`
}

// AccountToken is an API token that a user or a service account owns: its
// permissions are the owner's role's, narrowed to Scopes when those are
// set, and it is refused from ExpiresAt on. Tokens without an owner (the
// tenant's admin and system tokens) have their own Role.
type AccountToken struct {
	APIToken
	UserID           string       `json:"user_id,omitempty"`
	ServiceAccountID string       `json:"service_account_id,omitempty"`
	Scopes           []Permission `json:"scopes,omitempty"`
	ExpiresAt        *time.Time   `json:"expires_at,omitempty"`
}

// Expired reports whether the token is past its expiry at now.
func (t *AccountToken) Expired(now time.Time) bool {
	return t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)
}

// UserStore keeps operators, service accounts, custom roles, console
// sessions and account tokens. Every method that takes a tenant ID matches
// it; the two lookups by hash work across tenants (authentication comes
// before the tenant is known).
type UserStore interface {
	// CreateUser refuses (CodeConflict) an email or ID in use in the
	// tenant; CodeNotFound for an unknown tenant.
	CreateUser(ctx context.Context, u User) error
	GetUser(ctx context.Context, tenantID, id string) (User, error)
	UserByEmail(ctx context.Context, tenantID, email string) (User, error)
	UserByOIDCSubject(ctx context.Context, tenantID, subject string) (User, error)
	// ListUsers returns the tenant's users, ordered by email.
	ListUsers(ctx context.Context, tenantID string) ([]User, error)
	// UpdateUser writes name, role, disabled, password hash, OIDC subject
	// and update time of a user (CodeConflict when the subject is taken).
	UpdateUser(ctx context.Context, u User) error
	// SetLoginFailures writes a user's failure count and lockout end.
	SetLoginFailures(ctx context.Context, tenantID, id string, failures int, lockedUntil time.Time) error
	// DeleteUser deletes a user with its sessions and tokens.
	DeleteUser(ctx context.Context, tenantID, id string) error

	// CreateServiceAccount refuses (CodeConflict) a name in use in the tenant.
	CreateServiceAccount(ctx context.Context, a ServiceAccount) error
	GetServiceAccount(ctx context.Context, tenantID, id string) (ServiceAccount, error)
	// ListServiceAccounts returns the tenant's service accounts, by name.
	ListServiceAccounts(ctx context.Context, tenantID string) ([]ServiceAccount, error)
	// DeleteServiceAccount deletes a service account with its tokens.
	DeleteServiceAccount(ctx context.Context, tenantID, id string) error

	// CreateCustomRole refuses (CodeConflict) a name in use in the tenant.
	CreateCustomRole(ctx context.Context, r CustomRole) error
	GetCustomRole(ctx context.Context, tenantID string, name Role) (CustomRole, error)
	// ListCustomRoles returns the tenant's custom roles, by name.
	ListCustomRoles(ctx context.Context, tenantID string) ([]CustomRole, error)
	// UpdateCustomRole writes a role's description, permissions, query and
	// update time.
	UpdateCustomRole(ctx context.Context, r CustomRole) error
	// DeleteCustomRole refuses (CodeConflict) a role a user or service
	// account still holds.
	DeleteCustomRole(ctx context.Context, tenantID string, name Role) error

	CreateSession(ctx context.Context, s Session) error
	// SessionByHash finds a session across tenants.
	SessionByHash(ctx context.Context, hash string) (Session, error)
	// TouchSession moves a session's last-seen time forward (never back).
	TouchSession(ctx context.Context, hash string, at time.Time) error
	DeleteSession(ctx context.Context, hash string) error
	// DeleteUserSessions ends every session of a user.
	DeleteUserSessions(ctx context.Context, tenantID, userID string) error
	// DeleteExpiredSessions deletes sessions whose absolute expiry is
	// before before, of all tenants, and returns how many.
	DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error)

	// CreateAccountToken stores a token with its owner, scopes and expiry;
	// CodeNotFound when the owner is not in the token's tenant.
	CreateAccountToken(ctx context.Context, t AccountToken) error
	// AccountTokenByHash finds any token, owned or not, across tenants.
	AccountTokenByHash(ctx context.Context, hash string) (AccountToken, error)
	// ListAccountTokens returns the tenant's tokens with their owners,
	// oldest first.
	ListAccountTokens(ctx context.Context, tenantID string) ([]AccountToken, error)
}
