package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/steward-iot/steward"
)

// PutQuarantinePolicy implements steward.QuarantineStore.
func (s *Store) PutQuarantinePolicy(ctx context.Context, p steward.QuarantinePolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if p.UpdatedAt.IsZero() {
		return invalid("a quarantine policy needs its time")
	}
	doc, err := jsonText(p, "{}")
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO quarantine_policies (tenant_id, policy, updated_at, updated_by) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
		p.TenantID, doc, ts(p.UpdatedAt), p.UpdatedBy)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", p.TenantID)
	}
	return s.fail(err, "put quarantine policy")
}

// GetQuarantinePolicy implements steward.QuarantineStore. The columns, not
// the document, say whose policy it is and when it changed.
func (s *Store) GetQuarantinePolicy(ctx context.Context, tenantID string) (steward.QuarantinePolicy, error) {
	var p steward.QuarantinePolicy
	err := s.queryRow(ctx, `SELECT policy, tenant_id, updated_at, updated_by FROM quarantine_policies WHERE tenant_id = ?`, tenantID).
		Scan(jsonCol{&p}, &p.TenantID, timeCol{&p.UpdatedAt}, &p.UpdatedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return steward.QuarantinePolicy{}, notFound("tenant %s has no quarantine policy", tenantID)
	}
	if err != nil {
		return steward.QuarantinePolicy{}, s.fail(err, "get quarantine policy")
	}
	return p, nil
}
