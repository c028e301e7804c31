package sqlstore

import (
	"context"
	"time"

	"github.com/steward-iot/steward"
)

// PutRetentionOverride implements steward.RetentionStore.
func (s *Store) PutRetentionOverride(ctx context.Context, o steward.RetentionOverride) error {
	period := time.Duration(o.Period)
	switch {
	case o.TenantID == "" || o.Class == "":
		return invalid("a retention override needs a tenant and a class")
	case period < time.Second:
		return invalid("retention period %s: want at least a second", period)
	case o.UpdatedAt.IsZero():
		return invalid("a retention override needs its time")
	}
	_, err := s.exec(ctx, `INSERT INTO retention_overrides (tenant_id, class, period_seconds, updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant_id, class) DO UPDATE SET period_seconds = excluded.period_seconds, updated_at = excluded.updated_at`,
		o.TenantID, o.Class, int64(period/time.Second), ts(o.UpdatedAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", o.TenantID)
	}
	return s.fail(err, "put retention override %s", o.Class)
}

// ListRetentionOverrides implements steward.RetentionStore.
func (s *Store) ListRetentionOverrides(ctx context.Context, tenantID string) ([]steward.RetentionOverride, error) {
	rows, err := s.query(ctx, `SELECT tenant_id, class, period_seconds, updated_at FROM retention_overrides
		WHERE tenant_id = ? ORDER BY class`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list retention overrides")
	}
	return collect(rows, func(o *steward.RetentionOverride) []any {
		return []any{&o.TenantID, &o.Class, secondsCol{(*time.Duration)(&o.Period)}, timeCol{&o.UpdatedAt}}
	}, s, "list retention overrides")
}

// DeleteRetentionOverride implements steward.RetentionStore.
func (s *Store) DeleteRetentionOverride(ctx context.Context, tenantID, class string) error {
	res, err := s.exec(ctx, `DELETE FROM retention_overrides WHERE tenant_id = ? AND class = ?`, tenantID, class)
	if err != nil {
		return s.fail(err, "delete retention override %s", class)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete retention override %s", class)
	}
	if n == 0 {
		return notFound("no retention override of %s", class)
	}
	return nil
}

// pruneSQL holds, per built-in data class, the DELETE of at most ? of a
// tenant's rows older than ?: the chunk is chosen on the class's (tenant,
// time) index and deleted by key, the same text on both backends.
var pruneSQL = map[string]string{
	steward.RetentionDeviceEvents: `DELETE FROM device_events WHERE id IN
		(SELECT id FROM device_events WHERE tenant_id = ? AND at < ? LIMIT ?)`,
	steward.RetentionPresenceEvents: `DELETE FROM presence_events WHERE id IN
		(SELECT id FROM presence_events WHERE tenant_id = ? AND at < ? LIMIT ?)`,
	steward.RetentionSecurityEvents: `DELETE FROM security_events WHERE id IN
		(SELECT id FROM security_events WHERE tenant_id = ? AND at < ? LIMIT ?)`,
	steward.RetentionLifecycleEvents: `DELETE FROM lifecycle_events WHERE id IN
		(SELECT id FROM lifecycle_events WHERE tenant_id = ? AND at < ? LIMIT ?)`,
	// Pending deliveries are work still to do, never history.
	steward.RetentionDeliveries: `DELETE FROM deliveries WHERE id IN
		(SELECT id FROM deliveries WHERE tenant_id = ? AND created_at < ? AND status <> 'pending' LIMIT ?)`,
	steward.RetentionClosedAlerts: `DELETE FROM alerts WHERE (tenant_id, id) IN
		(SELECT tenant_id, id FROM alerts WHERE tenant_id = ? AND state = 'resolved' AND resolved_at < ? LIMIT ?)`,
}

// PruneDataClass implements steward.RetentionStore.
func (s *Store) PruneDataClass(ctx context.Context, tenantID, class string, before time.Time, limit int) (int, error) {
	stmt, ok := pruneSQL[class]
	switch {
	case !ok:
		return 0, invalid("the store prunes no data class %q", class)
	case tenantID == "":
		return 0, invalid("tenant id is required")
	case limit <= 0 || limit > MaxDeleteChunk:
		return 0, invalid("delete limit must be from 1 to %d", MaxDeleteChunk)
	case before.IsZero():
		return 0, invalid("delete needs a time to delete before")
	}
	res, err := s.exec(ctx, stmt, tenantID, ts(before), limit)
	if err != nil {
		return 0, s.fail(err, "prune %s", class)
	}
	n, err := affected(res)
	return int(n), s.fail(err, "prune %s", class)
}

// secondsCol scans a whole number of seconds into a duration.
type secondsCol struct{ d *time.Duration }

func (c secondsCol) Scan(src any) error {
	switch v := src.(type) {
	case int64:
		*c.d = time.Duration(v) * time.Second
		return nil
	case int32:
		*c.d = time.Duration(v) * time.Second
		return nil
	}
	return steward.Errorf(steward.CodeInternal, "seconds: unexpected %T", src)
}
