package decommission

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/credentials"
)

// Audit and approval actions of transfers between tenants.
const (
	ActionTenantTransfer = "device.transfer_tenant"
	actionTransferCancel = ActionTenantTransfer + ".cancel"
	actionTransferExpire = ActionTenantTransfer + ".expire"
	actionTransferAccept = ActionTenantTransfer + ".accept"
	// actionTransferOut is the source's record that the device left.
	actionTransferOut = ActionTenantTransfer + ".complete"
)

var _ steward.TenantTransfers = (*Service)(nil)

// codeEncoding writes transfer codes: lower-case base32, no padding, easy
// to read out and type.
var codeEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newTransferCode returns a one-time code of 160 random bits, "stx-" first
// so that it is recognisable in a ticket or a log it should not be in.
func newTransferCode() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return "stx-" + codeEncoding.EncodeToString(b[:])
}

// codeHash is what the store keeps of a code.
func codeHash(code string) string {
	h := sha256.Sum256([]byte(code))
	return hex.EncodeToString(h[:])
}

func newTransferID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "tr-" + hex.EncodeToString(b[:])
}

// TransferToTenant starts the transfer of a device to another tenant, on
// the source's side: its certificates are revoked (affiliation_changed)
// and its session closed, what the cloud keeps for it (desired
// configuration, jobs, deployment membership) cleared, its record reset
// and back to registered, as for a transfer to another owner; and a
// one-time code is returned, once, for the target tenant's administrator.
// While the transfer is pending the device cannot enroll again in the
// source tenant. Its data stays until the transfer is accepted, when the
// data policy applies. Bad input is CodeInvalid and changes nothing; when
// an approval policy covers the action, the first call returns the
// approval request and changes nothing else.
func (s *Service) TransferToTenant(ctx context.Context, tenantID, deviceID string, r steward.TenantTransferRequest, actor string) (steward.TenantTransferResult, error) {
	r.ToTenant, r.Reason = strings.TrimSpace(r.ToTenant), strings.TrimSpace(r.Reason)
	switch {
	case r.ToTenant == "":
		return steward.TenantTransferResult{}, steward.Errorf(steward.CodeInvalid, "a transfer needs the tenant it goes to (to_tenant)")
	case r.ToTenant == tenantID:
		return steward.TenantTransferResult{}, steward.Errorf(steward.CodeInvalid, "the device is already in tenant %s: to give it to another owner, transfer it within the tenant", tenantID)
	case r.Reason == "" || len(r.Reason) > 1024:
		return steward.TenantTransferResult{}, steward.Errorf(steward.CodeInvalid, "a transfer needs a reason of at most 1024 characters")
	}
	if r.Policy == "" {
		r.Policy = steward.DataDelete
	}
	if err := checkRetention(r.Policy, r.RetentionDays); err != nil {
		return steward.TenantTransferResult{}, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.TenantTransferResult{}, err
	}
	switch {
	case d.FactoryID == "":
		return steward.TenantTransferResult{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s has no factory identity to enroll with in another tenant", deviceID)
	case d.State != steward.StateRegistered && !steward.CanTransition(d.State, steward.StateRegistered):
		return steward.TenantTransferResult{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s is %s and cannot be transferred", deviceID, d.State)
	}
	if _, err := s.cfg.Store.GetTenant(ctx, r.ToTenant); err != nil {
		return steward.TenantTransferResult{}, err
	}
	if err := s.checkNoOpenWork(ctx, d); err != nil {
		return steward.TenantTransferResult{}, err
	}
	pending, err := credentials.RequireApproval(ctx, s.cfg.Approvals, steward.ApprovalRequest{TenantID: tenantID, Action: ActionTenantTransfer,
		Target: "device:" + deviceID, Payload: rawJSON(map[string]string{"to_tenant": r.ToTenant, "reason": r.Reason, "data_policy": string(r.Policy)}),
		Requester: actor}, r.ApprovalID)
	if err != nil {
		return steward.TenantTransferResult{}, err
	}
	if pending != nil {
		if err := s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: ActionTenantTransfer + ".request", Target: "device:" + deviceID,
			Outcome: steward.AuditSuccess, Detail: "to tenant " + r.ToTenant + ", awaiting approval " + pending.ID}); err != nil {
			s.log.Error("audit a transfer awaiting approval", "device", deviceID, "approval", pending.ID, "err", err)
		}
		return steward.TenantTransferResult{Approval: pending}, nil
	}

	now := s.cfg.Clock.Now()
	code := newTransferCode()
	tr := steward.DeviceTransfer{ID: newTransferID(), TenantID: tenantID, DeviceID: deviceID, TargetTenantID: r.ToTenant, Reason: r.Reason,
		Policy: r.Policy, RetentionDays: r.RetentionDays, State: steward.TransferPending, CodeHash: codeHash(code), FactoryID: d.FactoryID,
		Model: d.Model, Serial: d.Serial, Hardware: d.Hardware, RequestedBy: actor, ApprovalID: r.ApprovalID,
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.TransferTTL), UpdatedAt: now}
	if err := s.cfg.Store.CreateDeviceTransfer(ctx, tr); err != nil {
		return steward.TenantTransferResult{}, err
	}
	ctx = context.WithoutCancel(ctx) // a caller that goes away does not leave the device half released
	out, err := s.release(ctx, d, "", fmt.Sprintf("transfer %s to tenant %s: %s", tr.ID, r.ToTenant, r.Reason), actor)
	if err != nil {
		// Nothing is handed over: the transfer ends here, cancelled.
		at := s.cfg.Clock.Now()
		tr.State, tr.FinishedBy, tr.FinishedAt = steward.TransferCancelled, "system", &at
		if ferr := s.cfg.Store.FinishDeviceTransfer(ctx, tr); ferr != nil {
			s.log.Error("cancel a transfer whose device could not be released", "transfer", tr.ID, "err", ferr)
		}
		return steward.TenantTransferResult{}, fmt.Errorf("release device %s for transfer: %w", deviceID, err)
	}
	s.log.Info("device transfer to another tenant created", "tenant", tenantID, "device", deviceID, "to", r.ToTenant, "transfer", tr.ID, "actor", actor)
	if err := s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: ActionTenantTransfer, Target: "device:" + deviceID,
		Outcome: steward.AuditSuccess, Detail: r.Reason, Before: rawJSON(d), After: rawJSON(map[string]any{"transfer": tr, "device": out})}); err != nil {
		return steward.TenantTransferResult{}, steward.WrapError(steward.CodeInternal, err, "transfer %s was created but could not be recorded in the audit log; cancel it and try again", tr.ID)
	}
	return steward.TenantTransferResult{Transfer: &tr, Code: code}, nil
}

// checkNoOpenWork refuses a device with a pending transfer or a
// decommissioning under way.
func (s *Service) checkNoOpenWork(ctx context.Context, d steward.Device) error {
	trs, err := s.cfg.Store.ListDeviceTransfers(ctx, d.TenantID, d.ID)
	if err != nil {
		return err
	}
	for _, tr := range trs {
		if tr.State == steward.TransferPending {
			return steward.Errorf(steward.CodeConflict, "device %s has a pending transfer (%s) to tenant %s", d.ID, tr.ID, tr.TargetTenantID)
		}
	}
	recs, err := s.cfg.Store.ListDecommissions(ctx, d.TenantID, d.ID)
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if rec.State != steward.DecommissionFailed {
			return steward.Errorf(steward.CodeConflict, "device %s is being decommissioned (%s)", d.ID, rec.ID)
		}
	}
	return nil
}

// CancelTransfer cancels a pending transfer on the source's side. The
// device stays registered in the source tenant: it was released when the
// transfer was created, so it enrolls again there with its factory
// identity, as after a transfer to another owner.
func (s *Service) CancelTransfer(ctx context.Context, tenantID, id, actor string) (steward.DeviceTransfer, error) {
	tr, err := s.cfg.Store.GetDeviceTransfer(ctx, tenantID, id)
	if err != nil {
		return steward.DeviceTransfer{}, err
	}
	if err := s.checkPending(tr); err != nil {
		return steward.DeviceTransfer{}, err
	}
	now := s.cfg.Clock.Now()
	tr.State, tr.FinishedBy, tr.FinishedAt, tr.UpdatedAt = steward.TransferCancelled, actor, &now, now
	if err := s.cfg.Store.FinishDeviceTransfer(ctx, tr); err != nil {
		return steward.DeviceTransfer{}, err
	}
	s.log.Info("device transfer cancelled", "tenant", tenantID, "transfer", id, "actor", actor)
	if err := s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: actionTransferCancel, Target: "device:" + tr.DeviceID,
		Outcome: steward.AuditSuccess, Detail: "transfer " + tr.ID + " to tenant " + tr.TargetTenantID + " cancelled", After: rawJSON(tr)}); err != nil {
		return tr, steward.WrapError(steward.CodeInternal, err, "transfer %s was cancelled but could not be recorded in the audit log", tr.ID)
	}
	return tr, nil
}

// checkPending refuses a transfer that is no longer pending, or whose code
// has expired (the expiry job may not have marked it yet).
func (s *Service) checkPending(tr steward.DeviceTransfer) error {
	if tr.State != steward.TransferPending {
		return steward.Errorf(steward.CodeFailedPrecondition, "transfer %s was %s; it can no longer be accepted or cancelled", tr.ID, tr.State)
	}
	if !s.cfg.Clock.Now().Before(tr.ExpiresAt) {
		return steward.Errorf(steward.CodeFailedPrecondition, "transfer %s expired at %s; the source tenant may create a new one", tr.ID, tr.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// GetTransfer returns one of the source tenant's transfers.
func (s *Service) GetTransfer(ctx context.Context, tenantID, id string) (steward.DeviceTransfer, error) {
	return s.cfg.Store.GetDeviceTransfer(ctx, tenantID, id)
}

// ListTransfers returns the source tenant's transfers (of one device when
// deviceID is set), newest first.
func (s *Service) ListTransfers(ctx context.Context, tenantID, deviceID string) ([]steward.DeviceTransfer, error) {
	return s.cfg.Store.ListDeviceTransfers(ctx, tenantID, deviceID)
}

// ListIncomingTransfers returns the transfers the tenant accepted.
func (s *Service) ListIncomingTransfers(ctx context.Context, tenantID string) ([]steward.DeviceTransfer, error) {
	return s.cfg.Store.ListIncomingTransfers(ctx, tenantID)
}

// AcceptTransfer takes a device into the caller's tenant with the code the
// source tenant was given. In one transaction: a device record is created
// in the tenant, registered and awaiting re-provisioning, with the
// inventory the transfer carries (model, serial, hardware) and none of
// the source's data; an individual enrollment pins the device's factory
// certificate to the tenant, which the device plane consults before any
// enrollment group; and the transfer is marked accepted. Then the source's
// record becomes a tombstone: decommissioned through the decommissioning
// workflow (without the wipe) under the data policy the source chose, with
// its signed record. A code that matches no transfer, that is for another
// tenant, that has expired or that was used or cancelled is refused and
// changes nothing.
func (s *Service) AcceptTransfer(ctx context.Context, tenantID, code, actor string) (steward.TransferAcceptance, error) {
	code = strings.TrimSpace(code)
	switch {
	case code == "":
		return steward.TransferAcceptance{}, steward.Errorf(steward.CodeInvalid, "accepting a transfer needs its code")
	case len(code) > 128:
		return steward.TransferAcceptance{}, steward.Errorf(steward.CodeInvalid, "a transfer code is at most 128 characters; this one has %d", len(code))
	}
	tr, err := s.cfg.Store.DeviceTransferByCode(ctx, codeHash(code))
	if err != nil {
		if steward.IsNotFound(err) {
			return steward.TransferAcceptance{}, steward.Errorf(steward.CodeNotFound, "no device transfer has this code")
		}
		return steward.TransferAcceptance{}, err
	}
	if subtle.ConstantTimeCompare([]byte(tr.TargetTenantID), []byte(tenantID)) != 1 {
		return steward.TransferAcceptance{}, steward.Errorf(steward.CodePermissionDenied, "this transfer code is for another tenant")
	}
	if err := s.checkPending(tr); err != nil {
		return steward.TransferAcceptance{}, err
	}
	now := s.cfg.Clock.Now()
	d := steward.Device{ID: steward.NewDeviceID(), TenantID: tenantID, FactoryID: tr.FactoryID, Model: tr.Model, Serial: tr.Serial, Hardware: tr.Hardware,
		Labels: map[string]string{}, Attributes: map[string]any{}, State: steward.StateRegistered,
		StateReason: "transferred in (" + tr.ID + "): awaiting provisioning with its factory identity", StateActor: actor, StateChangedAt: now,
		CreatedAt: now, UpdatedAt: now}
	enr := steward.IndividualEnrollment{TenantID: tenantID, DeviceID: d.ID, FactoryID: tr.FactoryID, Model: tr.Model, Serial: tr.Serial,
		TransferID: tr.ID, CreatedAt: now}
	tr.State, tr.FinishedBy, tr.FinishedAt, tr.UpdatedAt, tr.TargetDeviceID = steward.TransferAccepted, actor, &now, now, d.ID
	err = s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		if err := tx.FinishDeviceTransfer(ctx, tr); err != nil {
			return err
		}
		if err := tx.CreateDevice(ctx, d); err != nil {
			return fmt.Errorf("create the transferred device: %w", err)
		}
		return tx.PutIndividualEnrollment(ctx, enr, tr.TenantID)
	})
	if err != nil {
		return steward.TransferAcceptance{}, err
	}
	s.log.Info("device transfer accepted", "tenant", tenantID, "device", d.ID, "from", tr.TenantID, "transfer", tr.ID, "actor", actor)
	ctx = context.WithoutCancel(ctx)
	auditErr := s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: actionTransferAccept, Target: "device:" + d.ID,
		Outcome: steward.AuditSuccess, Detail: "transfer " + tr.ID + " accepted; the device enrolls with its factory certificate",
		After: rawJSON(map[string]any{"device": d, "individual_enrollment": enr})})
	if rec, err := s.tombstone(ctx, tr, actor); err != nil {
		// The device has moved; the source's record is finished by hand
		// (a decommissioning of it) and the log says so.
		s.log.Error("make the source's record of a transferred device a tombstone", "tenant", tr.TenantID, "device", tr.DeviceID, "transfer", tr.ID, "err", err)
	} else {
		tr.DecommissionID = rec.ID
	}
	if auditErr != nil {
		return steward.TransferAcceptance{Transfer: tr, Device: d}, steward.WrapError(steward.CodeInternal, auditErr, "transfer %s was accepted but could not be recorded in the audit log", tr.ID)
	}
	return steward.TransferAcceptance{Transfer: tr, Device: d}, nil
}

// tombstone finishes the source's side of an accepted transfer with the
// decommissioning workflow, wipe skipped: credentials revoked again and
// verified refused, cloud access removed, the data policy applied, the
// record decommissioned and signed. The record's factory ID is then
// cleared (the transfer keeps it), so that the identity may come back to
// this tenant one day by another transfer.
func (s *Service) tombstone(ctx context.Context, tr steward.DeviceTransfer, accepter string) (steward.Decommission, error) {
	now := s.cfg.Clock.Now()
	why := fmt.Sprintf("transferred to tenant %s (%s): %s", tr.TargetTenantID, tr.ID, tr.Reason)
	rec := steward.Decommission{ID: newID(), TenantID: tr.TenantID, DeviceID: tr.DeviceID, Reason: why, Policy: tr.Policy,
		State: steward.DecommissionRunning, Steps: []steward.DecommissionStep{}, RequestedBy: tr.RequestedBy, ApprovalID: tr.ApprovalID,
		CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.CreateDecommission(ctx, rec); err != nil {
		return rec, err
	}
	rec, err := s.run(ctx, rec, steward.DecommissionRequest{Reason: why, Policy: tr.Policy, RetentionDays: tr.RetentionDays}, tr.RequestedBy,
		"transferred: the device keeps its factory identity to enroll in tenant "+tr.TargetTenantID)
	if err != nil {
		return rec, err
	}
	if _, err := s.cfg.Lifecycle.Apply(ctx, tr.TenantID, tr.DeviceID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		d.FactoryID = ""
		return nil, nil
	}); err != nil {
		return rec, fmt.Errorf("clear the factory identity of the tombstone: %w", err)
	}
	if err := s.cfg.Store.SetTransferDecommission(ctx, tr.TenantID, tr.ID, rec.ID); err != nil {
		return rec, err
	}
	err = s.record(ctx, steward.AuditRecord{TenantID: tr.TenantID, Actor: tr.RequestedBy, Action: actionTransferOut, Target: "device:" + tr.DeviceID,
		Outcome: steward.AuditSuccess, Detail: fmt.Sprintf("transfer %s accepted by tenant %s (%s); tombstone %s", tr.ID, tr.TargetTenantID, accepter, rec.ID),
		After: rawJSON(map[string]string{"transfer": tr.ID, "decommissioning": rec.ID, "state": tr.State})})
	return rec, err
}

// ExpireTransfers marks the pending transfers whose code expired as
// expired and records each in its source tenant's audit log; it returns
// how many expired. Their devices stay registered in the source tenant.
func (s *Service) ExpireTransfers(ctx context.Context) (int, error) {
	gone, err := s.cfg.Store.ExpireDeviceTransfers(ctx, s.cfg.Clock.Now())
	for _, tr := range gone {
		s.log.Info("device transfer expired", "tenant", tr.TenantID, "transfer", tr.ID)
		if aerr := s.record(ctx, steward.AuditRecord{TenantID: tr.TenantID, Actor: "system", Action: actionTransferExpire, Target: "device:" + tr.DeviceID,
			Outcome: steward.AuditSuccess, Detail: "transfer " + tr.ID + " to tenant " + tr.TargetTenantID + " expired unaccepted"}); aerr != nil {
			s.log.Error("audit an expired transfer", "transfer", tr.ID, "err", aerr)
		}
	}
	return len(gone), err
}

// record writes an audit record, if the service has an auditor.
func (s *Service) record(ctx context.Context, r steward.AuditRecord) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	if r.At.IsZero() {
		r.At = s.cfg.Clock.Now()
	}
	return s.cfg.Auditor.Record(ctx, r)
}
