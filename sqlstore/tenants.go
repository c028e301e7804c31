package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/steward-iot/steward"
)

// CreateTenant implements steward.Store.
func (s *Store) CreateTenant(ctx context.Context, t steward.Tenant) error {
	if err := required("tenant id", t.ID); err != nil {
		return err
	}
	if t.Status == "" {
		t.Status = steward.TenantActive
	}
	if t.Status != steward.TenantActive && t.Status != steward.TenantSuspended {
		return invalid("tenant status %q: want %s or %s", t.Status, steward.TenantActive, steward.TenantSuspended)
	}
	var err error
	if t.Status == steward.TenantActive && t.StatusReason == "" && t.StatusChangedAt == nil {
		// The columns' defaults say the same, and a schema from before the
		// status (an older migration under test) takes the row too.
		_, err = s.exec(ctx, `INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)`, t.ID, t.Name, ts(t.CreatedAt))
	} else {
		_, err = s.exec(ctx, `INSERT INTO tenants (id, name, status, status_reason, status_changed_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
			t.ID, t.Name, t.Status, t.StatusReason, nullTSPtr(t.StatusChangedAt), ts(t.CreatedAt))
	}
	return s.fail(err, "create tenant %s", t.ID)
}

// GetTenant implements steward.Store.
func (s *Store) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	var t steward.Tenant
	err := s.queryRow(ctx, `SELECT `+tenantCols+` FROM tenants WHERE id = ?`, id).Scan(scanTenant(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("tenant %s not found", id)
	}
	return t, s.fail(err, "get tenant %s", id)
}

// ListTenants implements steward.Store: every tenant, ordered by ID.
func (s *Store) ListTenants(ctx context.Context) ([]steward.Tenant, error) {
	rows, err := s.query(ctx, `SELECT `+tenantCols+` FROM tenants ORDER BY id`)
	if err != nil {
		return nil, s.fail(err, "list tenants")
	}
	return collect(rows, scanTenant, s, "list tenants")
}

const tenantCols = `id, name, status, status_reason, status_changed_at, created_at`

func scanTenant(t *steward.Tenant) []any {
	return []any{&t.ID, &t.Name, &t.Status, &t.StatusReason, timePtrCol{&t.StatusChangedAt}, timeCol{&t.CreatedAt}}
}

// CreateSecret implements steward.Store.
func (s *Store) CreateSecret(ctx context.Context, name string, value []byte) error {
	if err := required("secret name", name); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	_, err := s.exec(ctx, `INSERT INTO secrets (name, value) VALUES (?, ?)`, name, value)
	if err != nil && s.d.IsUniqueViolation(err) {
		return steward.WrapError(steward.CodeConflict, err, "secret %s already exists", name)
	}
	return s.fail(err, "create secret %s", name)
}

// GetSecret implements steward.Store.
func (s *Store) GetSecret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := s.queryRow(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("secret %s not found", name)
	}
	if err != nil {
		return nil, s.fail(err, "get secret %s", name)
	}
	return v, nil
}

const tokenCols = `id, tenant_id, name, role, hash, created_at`

func scanToken(t *steward.APIToken) []any {
	return []any{&t.ID, &t.TenantID, &t.Name, &t.Role, &t.Hash, timeCol{&t.CreatedAt}}
}

// CreateToken implements steward.Store.
func (s *Store) CreateToken(ctx context.Context, t steward.APIToken) error {
	if err := required("token id", t.ID, "tenant id", t.TenantID, "token hash", t.Hash, "token role", string(t.Role)); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO api_tokens (`+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		t.ID, t.TenantID, t.Name, string(t.Role), t.Hash, ts(t.CreatedAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", t.TenantID)
	}
	return s.fail(err, "create token %s", t.ID)
}

// TokenByHash implements steward.Store: it looks across tenants.
func (s *Store) TokenByHash(ctx context.Context, hash string) (steward.APIToken, error) {
	var t steward.APIToken
	err := s.queryRow(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE hash = ?`, hash).Scan(scanToken(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("token not found")
	}
	return t, s.fail(err, "find token")
}

// ListTokens implements steward.Store: the tenant's tokens, oldest first.
func (s *Store) ListTokens(ctx context.Context, tenantID string) ([]steward.APIToken, error) {
	rows, err := s.query(ctx, `SELECT `+tokenCols+` FROM api_tokens WHERE tenant_id = ? ORDER BY created_at, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list tokens")
	}
	return collect(rows, scanToken, s, "list tokens")
}

// DeleteToken implements steward.Store.
func (s *Store) DeleteToken(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, `DELETE FROM api_tokens WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return s.fail(err, "delete token %s", id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete token %s", id)
	}
	if n == 0 {
		return notFound("token %s not found", id)
	}
	return nil
}

// collect scans every row of rows into a slice; fields gives the scan
// destinations of one element.
func collect[T any](rows *sql.Rows, fields func(*T) []any, s *Store, op string) ([]T, error) {
	defer rows.Close()
	out := []T{}
	for rows.Next() {
		var v T
		if err := rows.Scan(fields(&v)...); err != nil {
			return nil, s.fail(err, "%s", op)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(err, "%s", op)
	}
	return out, nil
}
