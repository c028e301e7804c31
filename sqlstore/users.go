package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

const userCols = `tenant_id, id, email, name, role, disabled, password_hash, oidc_subject, failed_logins, locked_until, created_at, updated_at`

func scanUser(u *steward.User) []any {
	return []any{&u.TenantID, &u.ID, &u.Email, &u.Name, &u.Role, &u.Disabled, &u.PasswordHash, nullString{&u.OIDCSubject},
		&u.FailedLogins, timeCol{&u.LockedUntil}, timeCol{&u.CreatedAt}, timeCol{&u.UpdatedAt}}
}

// nullString scans a nullable text column; NULL is the empty string.
type nullString struct{ s *string }

// Scan implements sql.Scanner.
func (c nullString) Scan(src any) error {
	var ns sql.NullString
	if err := ns.Scan(src); err != nil {
		return err
	}
	*c.s = ns.String
	return nil
}

// orNull stores the empty string as NULL, so that unique constraints
// leave empty values alone.
func orNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// CreateUser implements steward.UserStore.
func (s *Store) CreateUser(ctx context.Context, u steward.User) error {
	if err := required("tenant id", u.TenantID, "user id", u.ID, "user email", u.Email, "user role", string(u.Role)); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO users (`+userCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.TenantID, u.ID, u.Email, u.Name, string(u.Role), u.Disabled, u.PasswordHash, orNull(u.OIDCSubject),
		u.FailedLogins, nullTS(u.LockedUntil), ts(u.CreatedAt), ts(u.UpdatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", u.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "a user with email %q, ID %s or that identity already exists", u.Email, u.ID)
	}
	return s.fail(err, "create user %s", u.ID)
}

func (s *Store) getUser(ctx context.Context, where, tenantID, arg, what string) (steward.User, error) {
	var u steward.User
	err := s.queryRow(ctx, `SELECT `+userCols+` FROM users WHERE tenant_id = ? AND `+where+` = ?`, tenantID, arg).Scan(scanUser(&u)...)
	if errors.Is(err, sql.ErrNoRows) {
		return u, notFound("user %s not found", what)
	}
	return u, s.fail(err, "get user %s", what)
}

// GetUser implements steward.UserStore.
func (s *Store) GetUser(ctx context.Context, tenantID, id string) (steward.User, error) {
	return s.getUser(ctx, "id", tenantID, id, id)
}

// UserByEmail implements steward.UserStore; the email is compared in its
// normal form.
func (s *Store) UserByEmail(ctx context.Context, tenantID, email string) (steward.User, error) {
	return s.getUser(ctx, "email", tenantID, steward.NormalizeEmail(email), "with that email")
}

// UserByOIDCSubject implements steward.UserStore.
func (s *Store) UserByOIDCSubject(ctx context.Context, tenantID, subject string) (steward.User, error) {
	if subject == "" {
		return steward.User{}, notFound("user with that identity not found")
	}
	return s.getUser(ctx, "oidc_subject", tenantID, subject, "with that identity")
}

// ListUsers implements steward.UserStore.
func (s *Store) ListUsers(ctx context.Context, tenantID string) ([]steward.User, error) {
	rows, err := s.query(ctx, `SELECT `+userCols+` FROM users WHERE tenant_id = ? ORDER BY email, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list users")
	}
	return collect(rows, scanUser, s, "list users")
}

// UpdateUser implements steward.UserStore.
func (s *Store) UpdateUser(ctx context.Context, u steward.User) error {
	if err := required("user role", string(u.Role)); err != nil {
		return err
	}
	res, err := s.exec(ctx, `UPDATE users SET name = ?, role = ?, disabled = ?, password_hash = ?, oidc_subject = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ?`,
		u.Name, string(u.Role), u.Disabled, u.PasswordHash, orNull(u.OIDCSubject), ts(u.UpdatedAt), u.TenantID, u.ID)
	if err != nil && s.d.IsUniqueViolation(err) {
		return steward.WrapError(steward.CodeConflict, err, "another user of the tenant has that identity")
	}
	return s.oneRow(res, err, "update user %s", u.ID)
}

// SetLoginFailures implements steward.UserStore.
func (s *Store) SetLoginFailures(ctx context.Context, tenantID, id string, failures int, lockedUntil time.Time) error {
	res, err := s.exec(ctx, `UPDATE users SET failed_logins = ?, locked_until = ? WHERE tenant_id = ? AND id = ?`,
		failures, nullTS(lockedUntil), tenantID, id)
	return s.oneRow(res, err, "record login failures of user %s", id)
}

// DeleteUser implements steward.UserStore: the user's tokens go in the
// same transaction (SQLite has no foreign key from tokens to owners), its
// sessions by the foreign key's cascade.
func (s *Store) DeleteUser(ctx context.Context, tenantID, id string) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if _, err := t.exec(ctx, `DELETE FROM api_tokens WHERE tenant_id = ? AND user_id = ?`, tenantID, id); err != nil {
			return t.fail(err, "delete tokens of user %s", id)
		}
		return t.deleteOne(ctx, `DELETE FROM users WHERE tenant_id = ? AND id = ?`, tenantID, id, "user")
	})
}

// oneRow turns the result of an update of one row into CodeNotFound when
// it changed none.
func (s *Store) oneRow(res sql.Result, err error, format string, args ...any) error {
	if err != nil {
		return s.fail(err, format, args...)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, format, args...)
	}
	if n == 0 {
		return steward.Errorf(steward.CodeNotFound, "%s: not found", fmt.Sprintf(format, args...))
	}
	return nil
}

const serviceAccountCols = `tenant_id, id, name, role, disabled, created_at`

func scanServiceAccount(a *steward.ServiceAccount) []any {
	return []any{&a.TenantID, &a.ID, &a.Name, &a.Role, &a.Disabled, timeCol{&a.CreatedAt}}
}

// CreateServiceAccount implements steward.UserStore.
func (s *Store) CreateServiceAccount(ctx context.Context, a steward.ServiceAccount) error {
	if err := required("tenant id", a.TenantID, "service account id", a.ID, "service account name", a.Name, "service account role", string(a.Role)); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO service_accounts (`+serviceAccountCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		a.TenantID, a.ID, a.Name, string(a.Role), a.Disabled, ts(a.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", a.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "a service account named %q or with ID %s already exists", a.Name, a.ID)
	}
	return s.fail(err, "create service account %s", a.ID)
}

// GetServiceAccount implements steward.UserStore.
func (s *Store) GetServiceAccount(ctx context.Context, tenantID, id string) (steward.ServiceAccount, error) {
	var a steward.ServiceAccount
	err := s.queryRow(ctx, `SELECT `+serviceAccountCols+` FROM service_accounts WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanServiceAccount(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("service account %s not found", id)
	}
	return a, s.fail(err, "get service account %s", id)
}

// ListServiceAccounts implements steward.UserStore.
func (s *Store) ListServiceAccounts(ctx context.Context, tenantID string) ([]steward.ServiceAccount, error) {
	rows, err := s.query(ctx, `SELECT `+serviceAccountCols+` FROM service_accounts WHERE tenant_id = ? ORDER BY name, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list service accounts")
	}
	return collect(rows, scanServiceAccount, s, "list service accounts")
}

// DeleteServiceAccount implements steward.UserStore, with the account's
// tokens in the same transaction.
func (s *Store) DeleteServiceAccount(ctx context.Context, tenantID, id string) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if _, err := t.exec(ctx, `DELETE FROM api_tokens WHERE tenant_id = ? AND service_account_id = ?`, tenantID, id); err != nil {
			return t.fail(err, "delete tokens of service account %s", id)
		}
		return t.deleteOne(ctx, `DELETE FROM service_accounts WHERE tenant_id = ? AND id = ?`, tenantID, id, "service account")
	})
}

const customRoleCols = `tenant_id, name, description, permissions, query, created_at, updated_at`

func scanCustomRole(r *steward.CustomRole) []any {
	return []any{&r.TenantID, &r.Name, &r.Description, jsonCol{&r.Permissions}, &r.Query, timeCol{&r.CreatedAt}, timeCol{&r.UpdatedAt}}
}

// CreateCustomRole implements steward.UserStore.
func (s *Store) CreateCustomRole(ctx context.Context, r steward.CustomRole) error {
	if err := r.Validate(); err != nil {
		return err
	}
	perms, err := jsonText(r.Permissions, "[]")
	if err != nil {
		return invalid("role permissions: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO custom_roles (`+customRoleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		r.TenantID, string(r.Name), r.Description, perms, r.Query, ts(r.CreatedAt), ts(r.UpdatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", r.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "a role named %q already exists", r.Name)
	}
	return s.fail(err, "create role %s", r.Name)
}

// GetCustomRole implements steward.UserStore.
func (s *Store) GetCustomRole(ctx context.Context, tenantID string, name steward.Role) (steward.CustomRole, error) {
	var r steward.CustomRole
	err := s.queryRow(ctx, `SELECT `+customRoleCols+` FROM custom_roles WHERE tenant_id = ? AND name = ?`, tenantID, string(name)).
		Scan(scanCustomRole(&r)...)
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("role %s not found", name)
	}
	return r, s.fail(err, "get role %s", name)
}

// ListCustomRoles implements steward.UserStore.
func (s *Store) ListCustomRoles(ctx context.Context, tenantID string) ([]steward.CustomRole, error) {
	rows, err := s.query(ctx, `SELECT `+customRoleCols+` FROM custom_roles WHERE tenant_id = ? ORDER BY name`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list roles")
	}
	return collect(rows, scanCustomRole, s, "list roles")
}

// UpdateCustomRole implements steward.UserStore.
func (s *Store) UpdateCustomRole(ctx context.Context, r steward.CustomRole) error {
	if err := r.Validate(); err != nil {
		return err
	}
	perms, err := jsonText(r.Permissions, "[]")
	if err != nil {
		return invalid("role permissions: %v", err)
	}
	res, err := s.exec(ctx, `UPDATE custom_roles SET description = ?, permissions = ?, query = ?, updated_at = ? WHERE tenant_id = ? AND name = ?`,
		r.Description, perms, r.Query, ts(r.UpdatedAt), r.TenantID, string(r.Name))
	return s.oneRow(res, err, "update role %s", r.Name)
}

// DeleteCustomRole implements steward.UserStore. The check for holders and
// the delete run in one transaction, so that a role is never deleted under
// a user given it at the same moment on SQLite (one writer); on
// PostgreSQL the window is a grant racing the delete, which leaves a user
// with an unknown role: such a user holds no permission at all.
func (s *Store) DeleteCustomRole(ctx context.Context, tenantID string, name steward.Role) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		var n int
		err := t.queryRow(ctx, `SELECT (SELECT COUNT(*) FROM users WHERE tenant_id = ? AND role = ?)
			+ (SELECT COUNT(*) FROM service_accounts WHERE tenant_id = ? AND role = ?)`,
			tenantID, string(name), tenantID, string(name)).Scan(&n)
		if err != nil {
			return t.fail(err, "delete role %s", name)
		}
		if n > 0 {
			return steward.Errorf(steward.CodeConflict, "role %s is held by %d users or service accounts; give them another role first", name, n)
		}
		return t.deleteOne(ctx, `DELETE FROM custom_roles WHERE tenant_id = ? AND name = ?`, tenantID, string(name), "role")
	})
}

const sessionCols = `hash, tenant_id, user_id, created_at, last_seen, expires_at`

func scanSession(x *steward.Session) []any {
	return []any{&x.Hash, &x.TenantID, &x.UserID, timeCol{&x.CreatedAt}, timeCol{&x.LastSeen}, timeCol{&x.ExpiresAt}}
}

// CreateSession implements steward.UserStore.
func (s *Store) CreateSession(ctx context.Context, x steward.Session) error {
	if err := required("session hash", x.Hash, "tenant id", x.TenantID, "user id", x.UserID); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		x.Hash, x.TenantID, x.UserID, ts(x.CreatedAt), ts(x.LastSeen), ts(x.ExpiresAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "user %s not found", x.UserID)
	}
	return s.fail(err, "create session")
}

// SessionByHash implements steward.UserStore.
func (s *Store) SessionByHash(ctx context.Context, hash string) (steward.Session, error) {
	var x steward.Session
	err := s.queryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE hash = ?`, hash).Scan(scanSession(&x)...)
	if errors.Is(err, sql.ErrNoRows) {
		return x, notFound("session not found")
	}
	return x, s.fail(err, "find session")
}

// TouchSession implements steward.UserStore.
func (s *Store) TouchSession(ctx context.Context, hash string, at time.Time) error {
	_, err := s.exec(ctx, `UPDATE sessions SET last_seen = ? WHERE hash = ? AND last_seen < ?`, ts(at), hash, ts(at))
	return s.fail(err, "touch session")
}

// DeleteSession implements steward.UserStore; deleting a session that is
// gone already is not an error (logging out twice ends one session).
func (s *Store) DeleteSession(ctx context.Context, hash string) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE hash = ?`, hash)
	return s.fail(err, "delete session")
}

// DeleteUserSessions implements steward.UserStore.
func (s *Store) DeleteUserSessions(ctx context.Context, tenantID, userID string) error {
	_, err := s.exec(ctx, `DELETE FROM sessions WHERE tenant_id = ? AND user_id = ?`, tenantID, userID)
	return s.fail(err, "delete sessions of user %s", userID)
}

// DeleteExpiredSessions implements steward.UserStore.
func (s *Store) DeleteExpiredSessions(ctx context.Context, before time.Time) (int, error) {
	res, err := s.exec(ctx, `DELETE FROM sessions WHERE expires_at < ?`, ts(before))
	if err != nil {
		return 0, s.fail(err, "delete expired sessions")
	}
	n, err := affected(res)
	return int(n), s.fail(err, "delete expired sessions")
}

const accountTokenCols = `id, tenant_id, name, role, hash, created_at, user_id, service_account_id, scopes, expires_at`

func scanAccountToken(t *steward.AccountToken) []any {
	return []any{&t.ID, &t.TenantID, &t.Name, &t.Role, &t.Hash, timeCol{&t.CreatedAt},
		nullString{&t.UserID}, nullString{&t.ServiceAccountID}, jsonCol{&t.Scopes}, timePtrCol{&t.ExpiresAt}}
}

// CreateAccountToken implements steward.UserStore. The owner is checked in
// the same transaction as the insert (SQLite has no foreign key for it).
func (s *Store) CreateAccountToken(ctx context.Context, t steward.AccountToken) error {
	if err := required("token id", t.ID, "tenant id", t.TenantID, "token hash", t.Hash, "token role", string(t.Role)); err != nil {
		return err
	}
	if t.UserID != "" && t.ServiceAccountID != "" {
		return invalid("a token has one owner, a user or a service account")
	}
	for _, p := range t.Scopes {
		if !p.Valid() {
			return invalid("unknown permission %q in the token's scopes", p)
		}
	}
	scopes, err := jsonText(t.Scopes, "[]")
	if err != nil {
		return invalid("token scopes: %v", err)
	}
	return s.InTx(ctx, func(tx steward.Store) error {
		x := tx.(*Store)
		switch {
		case t.UserID != "":
			if _, err := x.GetUser(ctx, t.TenantID, t.UserID); err != nil {
				return err
			}
		case t.ServiceAccountID != "":
			if _, err := x.GetServiceAccount(ctx, t.TenantID, t.ServiceAccountID); err != nil {
				return err
			}
		}
		_, err := x.exec(ctx, `INSERT INTO api_tokens (`+accountTokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			t.ID, t.TenantID, t.Name, string(t.Role), t.Hash, ts(t.CreatedAt),
			orNull(t.UserID), orNull(t.ServiceAccountID), scopes, nullTSPtr(t.ExpiresAt))
		if err != nil && x.d.IsForeignKeyViolation(err) {
			return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", t.TenantID)
		}
		return x.fail(err, "create token %s", t.ID)
	})
}

// AccountTokenByHash implements steward.UserStore.
func (s *Store) AccountTokenByHash(ctx context.Context, hash string) (steward.AccountToken, error) {
	var t steward.AccountToken
	err := s.queryRow(ctx, `SELECT `+accountTokenCols+` FROM api_tokens WHERE hash = ?`, hash).Scan(scanAccountToken(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("token not found")
	}
	return t, s.fail(err, "find token")
}

// ListAccountTokens implements steward.UserStore.
func (s *Store) ListAccountTokens(ctx context.Context, tenantID string) ([]steward.AccountToken, error) {
	rows, err := s.query(ctx, `SELECT `+accountTokenCols+` FROM api_tokens WHERE tenant_id = ? ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list tokens")
	}
	return collect(rows, scanAccountToken, s, "list tokens")
}
