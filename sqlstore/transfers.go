package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/steward-iot/steward"
)

const transferCols = `tenant_id, id, device_id, target_tenant_id, reason, policy, retention_days, state, code_hash, factory_id,
	model, serial, hardware, requested_by, approval_id, created_at, expires_at, updated_at, finished_by, finished_at,
	target_device_id, decommission_id`

func scanTransfer(t *steward.DeviceTransfer) []any {
	return []any{&t.TenantID, &t.ID, &t.DeviceID, &t.TargetTenantID, &t.Reason, &t.Policy, &t.RetentionDays, &t.State, &t.CodeHash, &t.FactoryID,
		&t.Model, &t.Serial, &t.Hardware, &t.RequestedBy, &t.ApprovalID, timeCol{&t.CreatedAt}, timeCol{&t.ExpiresAt}, timeCol{&t.UpdatedAt},
		&t.FinishedBy, timePtrCol{&t.FinishedAt}, &t.TargetDeviceID, &t.DecommissionID}
}

func validTransferState(state string) bool {
	switch state {
	case steward.TransferPending, steward.TransferAccepted, steward.TransferCancelled, steward.TransferExpired:
		return true
	}
	return false
}

// CreateDeviceTransfer implements steward.TransferStore.
func (s *Store) CreateDeviceTransfer(ctx context.Context, t steward.DeviceTransfer) error {
	if err := required("tenant", t.TenantID, "id", t.ID, "device", t.DeviceID, "target tenant", t.TargetTenantID, "reason", t.Reason,
		"code hash", t.CodeHash, "factory ID", t.FactoryID, "requested by", t.RequestedBy); err != nil {
		return err
	}
	switch {
	case t.State != steward.TransferPending:
		return invalid("a new transfer is pending, not %q", t.State)
	case !t.Policy.Valid():
		return invalid("unknown data policy %q", t.Policy)
	case t.TargetTenantID == t.TenantID:
		return invalid("a transfer goes to another tenant")
	case !t.ExpiresAt.After(t.CreatedAt):
		return invalid("a transfer expires after it is created")
	}
	_, err := s.exec(ctx, `INSERT INTO device_transfers (`+transferCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		t.TenantID, t.ID, t.DeviceID, t.TargetTenantID, t.Reason, string(t.Policy), t.RetentionDays, t.State, t.CodeHash, t.FactoryID,
		t.Model, t.Serial, t.Hardware, t.RequestedBy, t.ApprovalID, ts(t.CreatedAt), ts(t.ExpiresAt), ts(t.UpdatedAt), t.FinishedBy,
		nullTSPtr(t.FinishedAt), t.TargetDeviceID, t.DecommissionID)
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", t.DeviceID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "device %s already has a pending transfer", t.DeviceID)
	}
	return s.fail(err, "create transfer %s", t.ID)
}

// FinishDeviceTransfer implements steward.TransferStore.
func (s *Store) FinishDeviceTransfer(ctx context.Context, t steward.DeviceTransfer) error {
	if !validTransferState(t.State) || t.State == steward.TransferPending {
		return invalid("a transfer finishes accepted, cancelled or expired, not %q", t.State)
	}
	if err := required("tenant", t.TenantID, "id", t.ID, "finished by", t.FinishedBy); err != nil {
		return err
	}
	if t.FinishedAt == nil {
		return invalid("a finished transfer needs its time")
	}
	res, err := s.exec(ctx, `UPDATE device_transfers SET state = ?, finished_by = ?, finished_at = ?, updated_at = ?, target_device_id = ?
		WHERE tenant_id = ? AND id = ? AND state = 'pending'`,
		t.State, t.FinishedBy, ts(*t.FinishedAt), ts(*t.FinishedAt), t.TargetDeviceID, t.TenantID, t.ID)
	if err != nil {
		return s.fail(err, "finish transfer %s", t.ID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "finish transfer %s", t.ID)
	}
	if n == 0 {
		cur, err := s.GetDeviceTransfer(ctx, t.TenantID, t.ID)
		if err != nil {
			return err
		}
		return steward.Errorf(steward.CodeFailedPrecondition, "transfer %s is %s, no longer pending", t.ID, cur.State)
	}
	return nil
}

// SetTransferDecommission implements steward.TransferStore.
func (s *Store) SetTransferDecommission(ctx context.Context, tenantID, id, decommissionID string) error {
	res, err := s.exec(ctx, `UPDATE device_transfers SET decommission_id = ? WHERE tenant_id = ? AND id = ?`, decommissionID, tenantID, id)
	if err != nil {
		return s.fail(err, "record the tombstone of transfer %s", id)
	}
	if n, err := affected(res); err != nil {
		return s.fail(err, "record the tombstone of transfer %s", id)
	} else if n == 0 {
		return notFound("transfer %s not found", id)
	}
	return nil
}

// GetDeviceTransfer implements steward.TransferStore.
func (s *Store) GetDeviceTransfer(ctx context.Context, tenantID, id string) (steward.DeviceTransfer, error) {
	var t steward.DeviceTransfer
	err := s.queryRow(ctx, `SELECT `+transferCols+` FROM device_transfers WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanTransfer(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("transfer %s not found", id)
	}
	return t, s.fail(err, "get transfer %s", id)
}

// DeviceTransferByCode implements steward.TransferStore.
func (s *Store) DeviceTransferByCode(ctx context.Context, codeHash string) (steward.DeviceTransfer, error) {
	var t steward.DeviceTransfer
	if codeHash == "" {
		return t, notFound("no transfer has this code")
	}
	err := s.queryRow(ctx, `SELECT `+transferCols+` FROM device_transfers WHERE code_hash = ?`, codeHash).Scan(scanTransfer(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("no transfer has this code")
	}
	return t, s.fail(err, "find transfer by code")
}

// ListDeviceTransfers implements steward.TransferStore.
func (s *Store) ListDeviceTransfers(ctx context.Context, tenantID, deviceID string) ([]steward.DeviceTransfer, error) {
	return listOfDevice(ctx, s, `SELECT `+transferCols+` FROM device_transfers`, tenantID, deviceID, scanTransfer, "list transfers")
}

// ListIncomingTransfers implements steward.TransferStore.
func (s *Store) ListIncomingTransfers(ctx context.Context, targetTenantID string) ([]steward.DeviceTransfer, error) {
	rows, err := s.query(ctx, `SELECT `+transferCols+` FROM device_transfers WHERE target_tenant_id = ? AND state = 'accepted'
		ORDER BY created_at DESC, id DESC LIMIT 1000`, targetTenantID)
	if err != nil {
		return nil, s.fail(err, "list incoming transfers")
	}
	return collect(rows, scanTransfer, s, "list incoming transfers")
}

// ExpireDeviceTransfers implements steward.TransferStore.
func (s *Store) ExpireDeviceTransfers(ctx context.Context, now time.Time) ([]steward.DeviceTransfer, error) {
	var out []steward.DeviceTransfer
	err := s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		rows, err := t.query(ctx, `SELECT `+transferCols+` FROM device_transfers WHERE state = 'pending' AND expires_at <= ?
			ORDER BY expires_at LIMIT 1000`, ts(now))
		if err != nil {
			return t.fail(err, "list expired transfers")
		}
		due, err := collect(rows, scanTransfer, t, "list expired transfers")
		if err != nil {
			return err
		}
		for _, tr := range due {
			at := ts(now)
			tr.State, tr.FinishedBy, tr.FinishedAt, tr.UpdatedAt = steward.TransferExpired, "system", &at, at
			if err := t.FinishDeviceTransfer(ctx, tr); err != nil {
				return err
			}
			out = append(out, tr)
		}
		return nil
	})
	return out, err
}

const enrollmentCols = `tenant_id, device_id, factory_id, model, serial, transfer_id, created_at`

func scanEnrollment(e *steward.IndividualEnrollment) []any {
	return []any{&e.TenantID, &e.DeviceID, &e.FactoryID, &e.Model, &e.Serial, &e.TransferID, timeCol{&e.CreatedAt}}
}

// PutIndividualEnrollment implements steward.TransferStore.
func (s *Store) PutIndividualEnrollment(ctx context.Context, e steward.IndividualEnrollment, replaceTenant string) error {
	if err := required("tenant", e.TenantID, "device", e.DeviceID, "factory ID", e.FactoryID); err != nil {
		return err
	}
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if replaceTenant != "" {
			if _, err := t.exec(ctx, `DELETE FROM individual_enrollments WHERE tenant_id = ? AND factory_id = ?`, replaceTenant, e.FactoryID); err != nil {
				return t.fail(err, "replace the individual enrollment of %s", e.FactoryID)
			}
		}
		_, err := t.exec(ctx, `INSERT INTO individual_enrollments (`+enrollmentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			e.TenantID, e.DeviceID, e.FactoryID, e.Model, e.Serial, e.TransferID, ts(e.CreatedAt))
		switch {
		case err != nil && t.d.IsForeignKeyViolation(err):
			return steward.WrapError(steward.CodeNotFound, err, "device %s not found", e.DeviceID)
		case err != nil && t.d.IsUniqueViolation(err):
			return steward.WrapError(steward.CodeConflict, err, "this factory certificate, or device %s, already has an individual enrollment", e.DeviceID)
		}
		return t.fail(err, "create individual enrollment of %s", e.DeviceID)
	})
}

// IndividualEnrollmentByFactoryID implements steward.TransferStore.
func (s *Store) IndividualEnrollmentByFactoryID(ctx context.Context, factoryID string) (steward.IndividualEnrollment, error) {
	var e steward.IndividualEnrollment
	if factoryID == "" {
		return e, notFound("no individual enrollment")
	}
	err := s.queryRow(ctx, `SELECT `+enrollmentCols+` FROM individual_enrollments WHERE factory_id = ?`, factoryID).Scan(scanEnrollment(&e)...)
	if errors.Is(err, sql.ErrNoRows) {
		return e, notFound("no individual enrollment of factory certificate %s", factoryID)
	}
	return e, s.fail(err, "find individual enrollment")
}

// ListIndividualEnrollments implements steward.TransferStore.
func (s *Store) ListIndividualEnrollments(ctx context.Context, tenantID string) ([]steward.IndividualEnrollment, error) {
	rows, err := s.query(ctx, `SELECT `+enrollmentCols+` FROM individual_enrollments WHERE tenant_id = ? ORDER BY device_id LIMIT 10000`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list individual enrollments")
	}
	return collect(rows, scanEnrollment, s, "list individual enrollments")
}
