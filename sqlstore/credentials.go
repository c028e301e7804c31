package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/steward-iot/steward"
)

// RevokeCertificate implements steward.CredentialStore: the revocation
// time and the reason are written in one transaction.
func (s *Store) RevokeCertificate(ctx context.Context, r steward.Revocation) (steward.Certificate, error) {
	if err := required("tenant", r.TenantID, "serial", r.Serial); err != nil {
		return steward.Certificate{}, err
	}
	if !r.Reason.Valid() {
		return steward.Certificate{}, invalid("unknown revocation reason %q", r.Reason)
	}
	var c steward.Certificate
	err := s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		var err error
		if c, err = t.GetCertificate(ctx, r.TenantID, r.Serial); err != nil {
			return err
		}
		if c.Revoked() {
			return steward.Errorf(steward.CodeFailedPrecondition, "certificate %s was revoked at %s", r.Serial, c.RevokedAt.UTC().Format(time.RFC3339))
		}
		if _, err := t.exec(ctx, `UPDATE certificates SET revoked_at = ? WHERE tenant_id = ? AND serial = ? AND revoked_at IS NULL`,
			ts(r.At), r.TenantID, r.Serial); err != nil {
			return t.fail(err, "revoke certificate %s", r.Serial)
		}
		if _, err := t.exec(ctx, `INSERT INTO certificate_revocations (serial, tenant_id, device_id, reason, actor, at) VALUES (?, ?, ?, ?, ?, ?)
			ON CONFLICT (serial) DO NOTHING`, r.Serial, r.TenantID, c.DeviceID, string(r.Reason), r.Actor, ts(r.At)); err != nil {
			return t.fail(err, "record revocation of %s", r.Serial)
		}
		at := ts(r.At)
		c.RevokedAt = &at
		return nil
	})
	return c, err
}

// ListRevokedCertificates implements steward.CredentialStore.
func (s *Store) ListRevokedCertificates(ctx context.Context, tenantID string, now time.Time) ([]steward.RevokedCertificate, error) {
	rows, err := s.query(ctx, `SELECT c.serial, c.tenant_id, c.device_id, c.key_id, c.not_before, c.not_after, c.revoked_at, c.pem, c.created_at,
			COALESCE(r.reason, 'unspecified')
		FROM certificates c LEFT JOIN certificate_revocations r ON r.serial = c.serial
		WHERE c.tenant_id = ? AND c.revoked_at IS NOT NULL AND c.not_after > ? ORDER BY c.serial`, tenantID, ts(now))
	if err != nil {
		return nil, s.fail(err, "list revoked certificates")
	}
	return collect(rows, func(r *steward.RevokedCertificate) []any {
		return append(scanCert(&r.Certificate), &r.Reason)
	}, s, "list revoked certificates")
}

// ListExpiringCertificates implements steward.CredentialStore.
func (s *Store) ListExpiringCertificates(ctx context.Context, tenantID string, from, to time.Time, limit int) ([]steward.Certificate, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	rows, err := s.query(ctx, `SELECT c.serial, c.tenant_id, c.device_id, c.key_id, c.not_before, c.not_after, c.revoked_at, c.pem, c.created_at
		FROM certificates c JOIN devices d ON d.tenant_id = c.tenant_id AND d.id = c.device_id
		WHERE c.tenant_id = ? AND c.revoked_at IS NULL AND c.not_after >= ? AND c.not_after < ? AND d.state <> 'decommissioned'
		ORDER BY c.not_after, c.serial LIMIT ?`, tenantID, ts(from), ts(to), limit)
	if err != nil {
		return nil, s.fail(err, "list expiring certificates")
	}
	return collect(rows, scanCert, s, "list expiring certificates")
}

// ListGroupDevices implements steward.CredentialStore.
func (s *Store) ListGroupDevices(ctx context.Context, tenantID, groupID string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT id FROM devices WHERE tenant_id = ? AND enrollment_group_id = ? ORDER BY id`, tenantID, groupID)
	if err != nil {
		return nil, s.fail(err, "list devices of group %s", groupID)
	}
	return collect(rows, func(id *string) []any { return []any{id} }, s, "list devices of group")
}

const caGenCols = `tenant_id, generation, key_id, state, overlap_until, retired_at, approval_id, created_at`

func scanCAGen(g *steward.CAGeneration) []any {
	return []any{&g.TenantID, &g.Generation, &g.KeyID, &g.State, timePtrCol{&g.OverlapUntil}, timePtrCol{&g.RetiredAt}, &g.ApprovalID, timeCol{&g.CreatedAt}}
}

func validCAGen(g steward.CAGeneration) error {
	if err := required("tenant", g.TenantID, "key ID", g.KeyID); err != nil {
		return err
	}
	switch {
	case g.Generation < 0:
		return invalid("a CA generation is not negative")
	case g.State != steward.CAActive && g.State != steward.CAPrevious && g.State != steward.CARetired:
		return invalid("unknown CA generation state %q", g.State)
	}
	return nil
}

// AddCAGeneration implements steward.CredentialStore.
func (s *Store) AddCAGeneration(ctx context.Context, g steward.CAGeneration) error {
	if err := validCAGen(g); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO ca_generations (`+caGenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		g.TenantID, g.Generation, g.KeyID, g.State, nullTSPtr(g.OverlapUntil), nullTSPtr(g.RetiredAt), g.ApprovalID, ts(g.CreatedAt))
	switch {
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "tenant %s already has CA generation %d", g.TenantID, g.Generation)
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", g.TenantID)
	}
	return s.fail(err, "add CA generation")
}

// UpdateCAGeneration implements steward.CredentialStore.
func (s *Store) UpdateCAGeneration(ctx context.Context, g steward.CAGeneration) error {
	if err := validCAGen(g); err != nil {
		return err
	}
	res, err := s.exec(ctx, `UPDATE ca_generations SET state = ?, overlap_until = ?, retired_at = ? WHERE tenant_id = ? AND generation = ?`,
		g.State, nullTSPtr(g.OverlapUntil), nullTSPtr(g.RetiredAt), g.TenantID, g.Generation)
	if err != nil {
		return s.fail(err, "update CA generation")
	}
	if n, err := affected(res); err != nil {
		return s.fail(err, "update CA generation")
	} else if n == 0 {
		return notFound("tenant %s has no CA generation %d", g.TenantID, g.Generation)
	}
	return nil
}

// ListCAGenerations implements steward.CredentialStore.
func (s *Store) ListCAGenerations(ctx context.Context, tenantID string) ([]steward.CAGeneration, error) {
	rows, err := s.query(ctx, `SELECT `+caGenCols+` FROM ca_generations WHERE tenant_id = ? ORDER BY generation`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list CA generations")
	}
	return collect(rows, scanCAGen, s, "list CA generations")
}

// NextCRLNumber implements steward.CredentialStore: one upsert, so two
// nodes never get the same number.
func (s *Store) NextCRLNumber(ctx context.Context, tenantID string) (int64, error) {
	var n int64
	err := s.w.QueryRowContext(ctx, s.q(`INSERT INTO crl_numbers (tenant_id, number) VALUES (?, 1)
		ON CONFLICT (tenant_id) DO UPDATE SET number = crl_numbers.number + 1 RETURNING number`), tenantID).Scan(&n)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return 0, steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", tenantID)
	}
	return n, s.fail(err, "next CRL number")
}

// PutCRL implements steward.CredentialStore.
func (s *Store) PutCRL(ctx context.Context, c steward.CRL) error {
	if err := required("tenant", c.TenantID, "issuer key ID", c.IssuerKeyID); err != nil {
		return err
	}
	if len(c.DER) == 0 || c.Number <= 0 {
		return invalid("a CRL needs its DER and a positive number")
	}
	_, err := s.exec(ctx, `INSERT INTO crls (tenant_id, issuer_key_id, number, this_update, next_update, digest, der) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, issuer_key_id) DO UPDATE SET number = excluded.number, this_update = excluded.this_update,
			next_update = excluded.next_update, digest = excluded.digest, der = excluded.der
		WHERE excluded.number > crls.number`,
		c.TenantID, c.IssuerKeyID, c.Number, ts(c.ThisUpdate), ts(c.NextUpdate), c.Digest, c.DER)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", c.TenantID)
	}
	return s.fail(err, "put CRL")
}

// GetCRL implements steward.CredentialStore.
func (s *Store) GetCRL(ctx context.Context, tenantID, issuerKeyID string) (steward.CRL, error) {
	c := steward.CRL{TenantID: tenantID, IssuerKeyID: issuerKeyID}
	err := s.queryRow(ctx, `SELECT number, this_update, next_update, digest, der FROM crls WHERE tenant_id = ? AND issuer_key_id = ?`,
		tenantID, issuerKeyID).Scan(&c.Number, timeCol{&c.ThisUpdate}, timeCol{&c.NextUpdate}, &c.Digest, &c.DER)
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("no CRL of CA %s yet", issuerKeyID)
	}
	return c, s.fail(err, "get CRL")
}

// RevokeManufacturerCA implements steward.CredentialStore.
func (s *Store) RevokeManufacturerCA(ctx context.Context, r steward.RevokedCA) error {
	if err := required("tenant", r.TenantID, "fingerprint", r.Fingerprint); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO revoked_cas (tenant_id, fingerprint, group_id, reason, actor, at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, fingerprint) DO NOTHING`, r.TenantID, r.Fingerprint, r.GroupID, r.Reason, r.Actor, ts(r.At))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", r.TenantID)
	}
	return s.fail(err, "revoke manufacturer CA")
}

// GetRevokedCA implements steward.CredentialStore.
func (s *Store) GetRevokedCA(ctx context.Context, tenantID, fingerprint string) (steward.RevokedCA, error) {
	var r steward.RevokedCA
	err := s.queryRow(ctx, `SELECT tenant_id, fingerprint, group_id, reason, actor, at FROM revoked_cas WHERE tenant_id = ? AND fingerprint = ?`,
		tenantID, fingerprint).Scan(&r.TenantID, &r.Fingerprint, &r.GroupID, &r.Reason, &r.Actor, timeCol{&r.At})
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("manufacturer CA %s is not revoked", fingerprint)
	}
	return r, s.fail(err, "get revoked CA")
}

const decomCols = `tenant_id, id, device_id, reason, policy, retain_until, state, steps, requested_by, approval_id, certificate, created_at, updated_at, finished_at`

func scanDecom(d *steward.Decommission) []any {
	return []any{&d.TenantID, &d.ID, &d.DeviceID, &d.Reason, &d.Policy, timePtrCol{&d.RetainUntil}, &d.State, jsonCol{&d.Steps},
		&d.RequestedBy, &d.ApprovalID, &d.Certificate, timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt}, timePtrCol{&d.FinishedAt}}
}

func validDecom(d steward.Decommission) error {
	if err := required("tenant", d.TenantID, "id", d.ID, "device", d.DeviceID, "reason", d.Reason, "requested by", d.RequestedBy); err != nil {
		return err
	}
	switch d.State {
	case steward.DecommissionAwaitingApproval, steward.DecommissionRunning, steward.DecommissionCompleted, steward.DecommissionFailed:
	default:
		return invalid("unknown decommissioning state %q", d.State)
	}
	if !d.Policy.Valid() {
		return invalid("unknown data policy %q", d.Policy)
	}
	return nil
}

// CreateDecommission implements steward.CredentialStore.
func (s *Store) CreateDecommission(ctx context.Context, d steward.Decommission) error {
	if err := validDecom(d); err != nil {
		return err
	}
	steps, err := jsonText(d.Steps, "[]")
	if err != nil {
		return invalid("decommissioning steps: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO decommissions (`+decomCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.TenantID, d.ID, d.DeviceID, d.Reason, string(d.Policy), nullTSPtr(d.RetainUntil), d.State, steps, d.RequestedBy, d.ApprovalID,
		d.Certificate, ts(d.CreatedAt), ts(d.UpdatedAt), nullTSPtr(d.FinishedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", d.DeviceID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "device %s is already being decommissioned, or was", d.DeviceID)
	}
	return s.fail(err, "create decommissioning %s", d.ID)
}

// UpdateDecommission implements steward.CredentialStore.
func (s *Store) UpdateDecommission(ctx context.Context, d steward.Decommission) error {
	if err := validDecom(d); err != nil {
		return err
	}
	steps, err := jsonText(d.Steps, "[]")
	if err != nil {
		return invalid("decommissioning steps: %v", err)
	}
	res, err := s.exec(ctx, `UPDATE decommissions SET state = ?, steps = ?, retain_until = ?, approval_id = ?, certificate = ?, updated_at = ?, finished_at = ?
		WHERE tenant_id = ? AND id = ?`, d.State, steps, nullTSPtr(d.RetainUntil), d.ApprovalID, d.Certificate, ts(d.UpdatedAt), nullTSPtr(d.FinishedAt),
		d.TenantID, d.ID)
	if err != nil {
		if s.d.IsUniqueViolation(err) {
			return steward.WrapError(steward.CodeConflict, err, "device %s is already being decommissioned", d.DeviceID)
		}
		return s.fail(err, "update decommissioning %s", d.ID)
	}
	if n, err := affected(res); err != nil {
		return s.fail(err, "update decommissioning %s", d.ID)
	} else if n == 0 {
		return notFound("decommissioning %s not found", d.ID)
	}
	return nil
}

// GetDecommission implements steward.CredentialStore.
func (s *Store) GetDecommission(ctx context.Context, tenantID, id string) (steward.Decommission, error) {
	var d steward.Decommission
	err := s.queryRow(ctx, `SELECT `+decomCols+` FROM decommissions WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanDecom(&d)...)
	if errors.Is(err, sql.ErrNoRows) {
		return d, notFound("decommissioning %s not found", id)
	}
	return d, s.fail(err, "get decommissioning %s", id)
}

// ListDecommissions implements steward.CredentialStore.
func (s *Store) ListDecommissions(ctx context.Context, tenantID, deviceID string) ([]steward.Decommission, error) {
	return listOfDevice(ctx, s, `SELECT `+decomCols+` FROM decommissions`, tenantID, deviceID, scanDecom, "list decommissionings")
}

// listOfDevice runs sel (a SELECT with no WHERE of a table with tenant_id,
// device_id, created_at and id columns) for the tenant's rows, of one
// device when deviceID is set, newest first, at most 1000.
func listOfDevice[T any](ctx context.Context, s *Store, sel, tenantID, deviceID string, scan func(*T) []any, op string) ([]T, error) {
	q := sel + ` WHERE tenant_id = ?`
	args := []any{tenantID}
	if deviceID != "" {
		q += ` AND device_id = ?`
		args = append(args, deviceID)
	}
	rows, err := s.query(ctx, q+` ORDER BY created_at DESC, id DESC LIMIT 1000`, args...)
	if err != nil {
		return nil, s.fail(err, "%s", op)
	}
	return collect(rows, scan, s, op)
}

// ListRetainedDecommissions implements steward.CredentialStore.
func (s *Store) ListRetainedDecommissions(ctx context.Context, now time.Time, limit int) ([]steward.Decommission, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	rows, err := s.query(ctx, `SELECT `+decomCols+` FROM decommissions
		WHERE policy = 'keep' AND purged = ? AND state = 'completed' AND retain_until < ? ORDER BY retain_until LIMIT ?`, false, ts(now), limit)
	if err != nil {
		return nil, s.fail(err, "list retained decommissionings")
	}
	return collect(rows, scanDecom, s, "list retained decommissionings")
}

// deviceDataTables hold a device's measurements and history; each has
// tenant_id and device_id columns.
var deviceDataTables = []string{"samples", "samples_recent", "metric_latest", "samples_1m", "samples_1h", "samples_1d", "device_events", "presence_events"}

// EraseDeviceData implements steward.CredentialStore. A keep record of the
// device is marked purged in the same transaction.
func (s *Store) EraseDeviceData(ctx context.Context, tenantID, deviceID string) (int64, error) {
	var total int64
	err := s.withTelemetryDeleted(ctx, tenantID, deviceID, func(tx *Store, deleted map[string]int64) error {
		for _, n := range deleted {
			total += n
		}
		return tx.eraseDeviceData(ctx, tenantID, deviceID, &total)
	})
	if err != nil {
		return 0, fmt.Errorf("erase data of device %s: %w", deviceID, err)
	}
	return total, nil
}

// eraseDeviceData is EraseDeviceData's transaction, adding the rows it
// deletes to total.
func (s *Store) eraseDeviceData(ctx context.Context, tenantID, deviceID string, total *int64) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if _, err := t.GetDevice(ctx, tenantID, deviceID); err != nil {
			return err
		}
		for _, table := range s.notTelemetry(slices.Clone(deviceDataTables)) {
			res, err := t.exec(ctx, `DELETE FROM `+table+` WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID)
			if err != nil {
				return t.fail(err, "erase %s of device %s", table, deviceID)
			}
			n, err := affected(res)
			if err != nil {
				return t.fail(err, "erase %s of device %s", table, deviceID)
			}
			*total += n
		}
		if _, err := t.exec(ctx, `UPDATE decommissions SET purged = ? WHERE tenant_id = ? AND device_id = ? AND policy = 'keep'`,
			true, tenantID, deviceID); err != nil {
			return t.fail(err, "mark data of device %s purged", deviceID)
		}
		return nil
	})
}

// AnonymiseDeviceData implements steward.CredentialStore.
func (s *Store) AnonymiseDeviceData(ctx context.Context, tenantID, deviceID string) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if _, err := t.GetDevice(ctx, tenantID, deviceID); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE presence_events SET remote_addr = '' WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID); err != nil {
			return t.fail(err, "anonymise presence history of %s", deviceID)
		}
		if _, err := t.exec(ctx, `UPDATE security_events SET remote = '' WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID); err != nil {
			return t.fail(err, "anonymise security events of %s", deviceID)
		}
		return nil
	})
}

var _ steward.CredentialStore = (*Store)(nil)
