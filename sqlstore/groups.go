package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/steward-iot/steward"
)

const groupCols = `id, tenant_id, name, ca_pem, ca_fingerprint, ca_subject_hash, models, firmware, labels, serials, strict, created_at`

func scanGroup(g *steward.EnrollmentGroup) []any {
	return []any{&g.ID, &g.TenantID, &g.Name, &g.CAPEM, &g.CAFingerprint, &g.CASubjectHash,
		jsonCol{&g.Models}, jsonCol{&g.Firmware}, jsonCol{&g.Labels}, jsonCol{&g.Serials},
		&g.Strict, timeCol{&g.CreatedAt}}
}

// CreateEnrollmentGroup implements steward.Store.
func (s *Store) CreateEnrollmentGroup(ctx context.Context, g steward.EnrollmentGroup) error {
	if err := required("enrollment group id", g.ID, "tenant id", g.TenantID, "enrollment group name", g.Name,
		"CA fingerprint", g.CAFingerprint, "CA subject hash", g.CASubjectHash); err != nil {
		return err
	}
	models, err := jsonText(g.Models, "[]")
	if err != nil {
		return invalid("enrollment group models: %v", err)
	}
	firmware, err := jsonText(g.Firmware, "{}")
	if err != nil {
		return invalid("enrollment group firmware: %v", err)
	}
	labels, err := jsonText(g.Labels, "{}")
	if err != nil {
		return invalid("enrollment group labels: %v", err)
	}
	serials, err := jsonText(g.Serials, "[]")
	if err != nil {
		return invalid("enrollment group serials: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO enrollment_groups (`+groupCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.ID, g.TenantID, g.Name, g.CAPEM, g.CAFingerprint, g.CASubjectHash,
		models, firmware, labels, serials, g.Strict, ts(g.CreatedAt))
	switch {
	case err == nil:
		return nil
	case s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", g.TenantID)
	case s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "%s", s.groupConflict(ctx, g))
	}
	return s.fail(err, "create enrollment group %s", g.Name)
}

// groupConflict explains which unique rule a new group broke. It reads
// outside any transaction (a failed statement aborts a PostgreSQL one), so
// a clash with a row of the caller's own uncommitted transaction gets the
// general message.
func (s *Store) groupConflict(ctx context.Context, g steward.EnrollmentGroup) string {
	exists := func(q string, args ...any) bool {
		var one int
		return s.rdb.QueryRowContext(ctx, s.q(q), args...).Scan(&one) == nil
	}
	switch {
	case exists(`SELECT 1 FROM enrollment_groups WHERE ca_fingerprint = ?`, g.CAFingerprint):
		return "this CA is already registered in an enrollment group"
	case exists(`SELECT 1 FROM enrollment_groups WHERE tenant_id = ? AND name = ?`, g.TenantID, g.Name):
		return "an enrollment group named " + g.Name + " already exists"
	case exists(`SELECT 1 FROM enrollment_groups WHERE id = ?`, g.ID):
		return "enrollment group ID " + g.ID + " is already in use"
	}
	return "enrollment group name, ID or CA already in use"
}

// GetEnrollmentGroup implements steward.Store.
func (s *Store) GetEnrollmentGroup(ctx context.Context, tenantID, id string) (steward.EnrollmentGroup, error) {
	var g steward.EnrollmentGroup
	err := s.queryRow(ctx, `SELECT `+groupCols+` FROM enrollment_groups WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanGroup(&g)...)
	if errors.Is(err, sql.ErrNoRows) {
		return g, notFound("enrollment group %s not found", id)
	}
	return g, s.fail(err, "get enrollment group %s", id)
}

// ListEnrollmentGroups implements steward.Store: ordered by name.
func (s *Store) ListEnrollmentGroups(ctx context.Context, tenantID string) ([]steward.EnrollmentGroup, error) {
	rows, err := s.query(ctx, `SELECT `+groupCols+` FROM enrollment_groups WHERE tenant_id = ? ORDER BY name`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list enrollment groups")
	}
	return collect(rows, scanGroup, s, "list enrollment groups")
}

// DeleteEnrollmentGroup implements steward.Store. Devices enrolled through
// the group keep its ID as a record of where they came from.
func (s *Store) DeleteEnrollmentGroup(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, `DELETE FROM enrollment_groups WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return s.fail(err, "delete enrollment group %s", id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete enrollment group %s", id)
	}
	if n == 0 {
		return notFound("enrollment group %s not found", id)
	}
	return nil
}

// EnrollmentGroupsBySubject implements steward.Store: it looks across
// tenants, ordered by tenant and name.
func (s *Store) EnrollmentGroupsBySubject(ctx context.Context, subjectHash string) ([]steward.EnrollmentGroup, error) {
	rows, err := s.query(ctx, `SELECT `+groupCols+` FROM enrollment_groups WHERE ca_subject_hash = ? ORDER BY tenant_id, name`, subjectHash)
	if err != nil {
		return nil, s.fail(err, "find enrollment groups")
	}
	return collect(rows, scanGroup, s, "find enrollment groups")
}
