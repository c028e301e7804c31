package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Security event list limits.
const (
	DefaultSecurityEventLimit = 100
	MaxSecurityEventLimit     = 1000
)

// AddLifecycleEvent implements steward.Store. The device must exist in the
// event's tenant (CodeNotFound otherwise).
func (s *Store) AddLifecycleEvent(ctx context.Context, e steward.LifecycleEvent) error {
	if err := required("tenant id", e.TenantID, "device id", e.DeviceID); err != nil {
		return err
	}
	if !e.To.Valid() || (e.From != "" && !e.From.Valid()) {
		return invalid("lifecycle event from %q to %q names an unknown state", e.From, e.To)
	}
	_, err := s.exec(ctx, `INSERT INTO lifecycle_events (tenant_id, device_id, from_state, to_state, reason, actor, at)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		e.TenantID, e.DeviceID, string(e.From), string(e.To), e.Reason, e.Actor, ts(e.At))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", e.DeviceID)
	}
	return s.fail(err, "add lifecycle event of device %s", e.DeviceID)
}

// ListLifecycleEvents implements steward.Store: the device's history,
// oldest first.
func (s *Store) ListLifecycleEvents(ctx context.Context, tenantID, deviceID string) ([]steward.LifecycleEvent, error) {
	rows, err := s.query(ctx, `SELECT id, tenant_id, device_id, from_state, to_state, reason, actor, at
		FROM lifecycle_events WHERE tenant_id = ? AND device_id = ? ORDER BY id`, tenantID, deviceID)
	if err != nil {
		return nil, s.fail(err, "list lifecycle events")
	}
	return collect(rows, func(e *steward.LifecycleEvent) []any {
		return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.From, &e.To, &e.Reason, &e.Actor, timeCol{&e.At}}
	}, s, "list lifecycle events")
}

const certCols = `serial, tenant_id, device_id, key_id, not_before, not_after, revoked_at, pem, created_at`

func scanCert(c *steward.Certificate) []any {
	return []any{&c.Serial, &c.TenantID, &c.DeviceID, &c.KeyID, timeCol{&c.NotBefore}, timeCol{&c.NotAfter},
		timePtrCol{&c.RevokedAt}, &c.PEM, timeCol{&c.CreatedAt}}
}

// AddCertificate implements steward.Store. The device must exist in the
// certificate's tenant (CodeNotFound otherwise); a serial is unique.
func (s *Store) AddCertificate(ctx context.Context, c steward.Certificate) error {
	if err := required("certificate serial", c.Serial, "tenant id", c.TenantID, "device id", c.DeviceID); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO certificates (`+certCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.Serial, c.TenantID, c.DeviceID, c.KeyID, ts(c.NotBefore), ts(c.NotAfter), nullTSPtr(c.RevokedAt), c.PEM, ts(c.CreatedAt))
	switch {
	case err == nil:
		return nil
	case s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", c.DeviceID)
	case s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "certificate serial %s already recorded", c.Serial)
	}
	return s.fail(err, "add certificate %s", c.Serial)
}

// GetCertificate implements steward.Store.
func (s *Store) GetCertificate(ctx context.Context, tenantID, serial string) (steward.Certificate, error) {
	var c steward.Certificate
	err := s.queryRow(ctx, `SELECT `+certCols+` FROM certificates WHERE tenant_id = ? AND serial = ?`, tenantID, serial).Scan(scanCert(&c)...)
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("certificate %s not found", serial)
	}
	return c, s.fail(err, "get certificate %s", serial)
}

// ListCertificates implements steward.Store: the device's certificates,
// oldest first.
func (s *Store) ListCertificates(ctx context.Context, tenantID, deviceID string) ([]steward.Certificate, error) {
	rows, err := s.query(ctx, `SELECT `+certCols+` FROM certificates WHERE tenant_id = ? AND device_id = ?
		ORDER BY not_before, created_at, serial`, tenantID, deviceID)
	if err != nil {
		return nil, s.fail(err, "list certificates")
	}
	return collect(rows, scanCert, s, "list certificates")
}

// RevokeCertificates implements steward.Store. Revoking again revokes
// nothing and keeps the first revocation time.
func (s *Store) RevokeCertificates(ctx context.Context, tenantID, deviceID string, at time.Time) (int, error) {
	res, err := s.exec(ctx, `UPDATE certificates SET revoked_at = ? WHERE tenant_id = ? AND device_id = ? AND revoked_at IS NULL`,
		ts(at), tenantID, deviceID)
	if err != nil {
		return 0, s.fail(err, "revoke certificates of device %s", deviceID)
	}
	n, err := affected(res)
	if err != nil {
		return 0, s.fail(err, "revoke certificates of device %s", deviceID)
	}
	return int(n), nil
}

// AddSecurityEvent implements steward.Store.
func (s *Store) AddSecurityEvent(ctx context.Context, e steward.SecurityEvent) error {
	if err := required("security event kind", string(e.Kind)); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO security_events (tenant_id, device_id, kind, detail, remote, at) VALUES (?, ?, ?, ?, ?, ?)`,
		e.TenantID, e.DeviceID, string(e.Kind), e.Detail, e.Remote, ts(e.At))
	return s.fail(err, "add security event")
}

// ListSecurityEvents implements steward.Store: the tenant's events matching
// f, newest first, at most f.Limit (default 100, at most 1000).
func (s *Store) ListSecurityEvents(ctx context.Context, tenantID string, f steward.SecurityEventFilter) ([]steward.SecurityEvent, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, invalid("limit must not be negative")
	case limit == 0:
		limit = DefaultSecurityEventLimit
	case limit > MaxSecurityEventLimit:
		limit = MaxSecurityEventLimit
	}
	var b strings.Builder
	b.WriteString(`SELECT id, tenant_id, device_id, kind, detail, remote, at FROM security_events WHERE tenant_id = ?`)
	args := []any{tenantID}
	if f.DeviceID != "" {
		b.WriteString(` AND device_id = ?`)
		args = append(args, f.DeviceID)
	}
	if f.Kind != "" {
		b.WriteString(` AND kind = ?`)
		args = append(args, string(f.Kind))
	}
	b.WriteString(` ORDER BY id DESC LIMIT ?`)
	args = append(args, limit)
	rows, err := s.query(ctx, b.String(), args...)
	if err != nil {
		return nil, s.fail(err, "list security events")
	}
	return collect(rows, func(e *steward.SecurityEvent) []any {
		return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Kind, &e.Detail, &e.Remote, timeCol{&e.At}}
	}, s, "list security events")
}
