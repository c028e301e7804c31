// Package decommission takes a device out of service for good, as a
// workflow whose every step is recorded with its outcome: wipe the device
// (and wait for its acknowledgement), revoke its certificates and close its
// session, remove its cloud access, apply the data policy, mark the
// inventory record decommissioned, verify that its old credentials are
// refused by the device plane, and sign the record (a decommissioning
// certificate).
package decommission

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/credentials"
)

// Defaults of Config.
const (
	DefaultWipeTimeout = 30 * time.Second
	DefaultRetention   = 90 * 24 * time.Hour
	// MaxRetention bounds what a keep policy may ask for.
	MaxRetention = 10 * 365 * 24 * time.Hour
)

// Step names, in the order they run.
const (
	StepWipe        = "wipe"
	StepRevoke      = "revoke"
	StepCloudAccess = "cloud_access"
	StepDataPolicy  = "data_policy"
	StepInventory   = "inventory"
	StepVerify      = "verify"
)

// PEMType is the PEM block type of a decommissioning certificate (the
// type openssl uses for a CMS SignedData).
const PEMType = "PKCS7"

// Applier is the one read-modify-write path for a stored device
// (lifecycle.Service.Apply), which tells the device plane of a new state.
type Applier interface {
	Apply(ctx context.Context, tenantID, id string, fn func(d *steward.Device) ([]steward.LifecycleEvent, error)) (steward.Device, error)
}

// Signer signs a record with the tenant's CA (pki.Authority).
type Signer interface {
	SignRecord(ctx context.Context, tenantID string, data []byte) ([]byte, error)
}

// Config wires the service.
type Config struct {
	Store steward.Store
	// Fleet sends the wipe command.
	Fleet     steward.Fleet
	Lifecycle Applier
	// Gate and Enroller are the device plane's own checks, which the
	// verification asks with the device's old certificates.
	Gate     steward.DeviceGate
	Enroller steward.Enroller
	Bus      steward.Bus
	Signer   Signer
	// Removers let go of what the cloud keeps for the device (desired
	// configuration, jobs, subscriptions), besides the retained desired
	// configuration on the broker, which the service clears itself.
	Removers []steward.DeviceAccessRemover
	// Auditor records every step (optional); Approvals gates the
	// decommissioning when a policy says so (optional).
	Auditor   steward.Auditor
	Approvals steward.Approvals
	// WipeTimeout bounds the wait for the wipe acknowledgement.
	WipeTimeout time.Duration
	// Retention is how long a keep policy keeps the data by default.
	Retention time.Duration
	// TransferTTL is how long a transfer code to another tenant can be
	// used (default steward.DefaultTransferTTL).
	TransferTTL time.Duration
	Clock       steward.Clock
	Logger      *slog.Logger
}

// Service runs decommissionings.
type Service struct {
	cfg Config
	log *slog.Logger
}

var _ steward.Decommissioner = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.WipeTimeout <= 0 {
		cfg.WipeTimeout = DefaultWipeTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.TransferTTL <= 0 {
		cfg.TransferTTL = steward.DefaultTransferTTL
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "dc-" + hex.EncodeToString(b[:])
}

// Decommission runs the workflow for a device. Bad input (no reason, an
// unknown policy, a retention out of range) is CodeInvalid and changes
// nothing; a device already decommissioned is CodeFailedPrecondition. When
// an approval policy applies, the first call records the decommissioning as
// awaiting approval and returns the request; the call with the approved
// request's ID runs it. A failed step stops the workflow with the record
// failed (a failed decommissioning may be started again).
func (s *Service) Decommission(ctx context.Context, tenantID, deviceID string, r steward.DecommissionRequest, actor string) (steward.DecommissionResult, error) {
	r.Reason = strings.TrimSpace(r.Reason)
	switch {
	case r.Reason == "" || len(r.Reason) > 1024:
		return steward.DecommissionResult{}, steward.Errorf(steward.CodeInvalid, "a decommissioning needs a reason of at most 1024 characters")
	}
	if r.Policy == "" {
		r.Policy = steward.DataDelete
	}
	if err := checkRetention(r.Policy, r.RetentionDays); err != nil {
		return steward.DecommissionResult{}, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.DecommissionResult{}, err
	}
	if d.State == steward.StateDecommissioned {
		return steward.DecommissionResult{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s is already decommissioned", deviceID)
	}
	rec, err := s.openRecord(ctx, d, r, actor)
	if err != nil {
		return steward.DecommissionResult{}, err
	}
	if rec.State == steward.DecommissionAwaitingApproval && r.ApprovalID == "" {
		return steward.DecommissionResult{Record: rec}, steward.Errorf(steward.CodeFailedPrecondition, "decommissioning %s awaits approval %s", rec.ID, rec.ApprovalID)
	}
	pending, err := credentials.RequireApproval(ctx, s.cfg.Approvals, steward.ApprovalRequest{TenantID: tenantID, Action: "device.decommission",
		Target: "device:" + deviceID, Payload: rawJSON(map[string]string{"reason": r.Reason, "data_policy": string(r.Policy)}), Requester: actor}, r.ApprovalID)
	if err != nil {
		return steward.DecommissionResult{Record: rec}, err
	}
	if pending != nil {
		rec.State, rec.ApprovalID, rec.UpdatedAt = steward.DecommissionAwaitingApproval, pending.ID, s.cfg.Clock.Now()
		if err := s.cfg.Store.UpdateDecommission(ctx, rec); err != nil {
			return steward.DecommissionResult{}, err
		}
		s.audit(ctx, rec, actor, "device.decommission.request", steward.AuditSuccess, "awaiting approval "+pending.ID)
		return steward.DecommissionResult{Record: rec, Approval: pending}, nil
	}
	if r.ApprovalID != "" {
		rec.ApprovalID = r.ApprovalID
	}
	rec.State = steward.DecommissionRunning
	rec, err = s.run(ctx, rec, r, actor, "")
	return steward.DecommissionResult{Record: rec}, err
}

// checkRetention checks a data policy and the retention that goes with it.
func checkRetention(p steward.DataPolicy, days int) error {
	if !p.Valid() {
		return steward.Errorf(steward.CodeInvalid, "data policy %q: use delete, anonymise or keep", p)
	}
	maxDays := int(MaxRetention.Hours() / 24)
	if days < 0 || days > maxDays || days != 0 && p != steward.DataKeep {
		return steward.Errorf(steward.CodeInvalid, "retention_days goes with the keep policy only, from 1 to %d", maxDays)
	}
	return nil
}

// openRecord returns the device's record awaiting approval, or a new one.
func (s *Service) openRecord(ctx context.Context, d steward.Device, r steward.DecommissionRequest, actor string) (steward.Decommission, error) {
	recs, err := s.cfg.Store.ListDecommissions(ctx, d.TenantID, d.ID)
	if err != nil {
		return steward.Decommission{}, err
	}
	for _, rec := range recs {
		switch rec.State {
		case steward.DecommissionAwaitingApproval:
			return rec, nil
		case steward.DecommissionRunning, steward.DecommissionCompleted:
			return steward.Decommission{}, steward.Errorf(steward.CodeConflict, "device %s is being decommissioned (%s)", d.ID, rec.ID)
		}
	}
	now := s.cfg.Clock.Now()
	rec := steward.Decommission{ID: newID(), TenantID: d.TenantID, DeviceID: d.ID, Reason: r.Reason, Policy: r.Policy,
		State: steward.DecommissionRunning, Steps: []steward.DecommissionStep{}, RequestedBy: actor, CreatedAt: now, UpdatedAt: now}
	if err := s.cfg.Store.CreateDecommission(ctx, rec); err != nil {
		return steward.Decommission{}, err
	}
	return rec, nil
}

// run carries out the steps, writing the record after each. A skipWipe
// reason skips the wipe (a device that leaves for another tenant keeps its
// factory identity and state).
func (s *Service) run(ctx context.Context, rec steward.Decommission, r steward.DecommissionRequest, actor, skipWipe string) (steward.Decommission, error) {
	ctx = context.WithoutCancel(ctx) // a caller that goes away does not leave a device half decommissioned
	certs, err := s.cfg.Store.ListCertificates(ctx, rec.TenantID, rec.DeviceID)
	if err != nil {
		return rec, err
	}
	steps := []struct {
		name string
		fn   func() (outcome, detail string)
	}{
		{StepWipe, func() (string, string) {
			if skipWipe != "" {
				return steward.StepSkipped, skipWipe
			}
			return s.wipe(ctx, rec)
		}},
		{StepRevoke, func() (string, string) { return s.revoke(ctx, rec, certs, actor) }},
		{StepCloudAccess, func() (string, string) { return s.cloudAccess(ctx, rec) }},
		{StepDataPolicy, func() (string, string) { return s.dataPolicy(ctx, &rec, r) }},
		{StepInventory, func() (string, string) { return s.inventory(ctx, rec, actor) }},
		{StepVerify, func() (string, string) { return s.verify(ctx, certs) }},
	}
	for _, st := range steps {
		outcome, detail := st.fn()
		rec.Steps = append(rec.Steps, steward.DecommissionStep{Name: st.name, Outcome: outcome, Detail: detail, At: s.cfg.Clock.Now()})
		rec.UpdatedAt = s.cfg.Clock.Now()
		auditOutcome := steward.AuditSuccess
		if outcome == steward.StepFailed {
			auditOutcome = steward.AuditFailure
			rec.State = steward.DecommissionFailed
			now := rec.UpdatedAt
			rec.FinishedAt = &now
		}
		if err := s.cfg.Store.UpdateDecommission(ctx, rec); err != nil {
			return rec, fmt.Errorf("record decommissioning step %s: %w", st.name, err)
		}
		s.audit(ctx, rec, actor, "device.decommission."+st.name, auditOutcome, detail)
		s.log.Info("decommissioning step", "tenant", rec.TenantID, "device", rec.DeviceID, "record", rec.ID, "step", st.name, "outcome", outcome, "detail", detail)
		if outcome == steward.StepFailed {
			return rec, steward.Errorf(steward.CodeFailedPrecondition, "decommissioning %s failed at %s: %s", rec.ID, st.name, detail)
		}
	}
	now := s.cfg.Clock.Now()
	rec.State, rec.FinishedAt, rec.UpdatedAt = steward.DecommissionCompleted, &now, now
	cert, err := s.sign(ctx, rec)
	if err != nil {
		return rec, err
	}
	rec.Certificate = cert
	if err := s.cfg.Store.UpdateDecommission(ctx, rec); err != nil {
		return rec, err
	}
	s.audit(ctx, rec, actor, "device.decommission", steward.AuditSuccess, rec.Reason)
	return rec, nil
}

// wipe sends the wipe command and waits for its acknowledgement. A device
// that does not acknowledge (offline, refused, timed out) is a warning, not
// a stop: its credentials are revoked next, whatever it did.
func (s *Service) wipe(ctx context.Context, rec steward.Decommission) (string, string) {
	res, err := s.cfg.Fleet.SendCommand(ctx, rec.TenantID, rec.DeviceID, steward.Command{Name: steward.CommandWipe}, s.cfg.WipeTimeout)
	switch {
	case err != nil:
		return steward.StepWarning, "wipe not acknowledged: " + steward.ErrorMessage(err)
	case res.Status != steward.CommandOK:
		return steward.StepWarning, fmt.Sprintf("wipe answered %s: %s", res.Status, res.Error)
	}
	return steward.StepOK, fmt.Sprintf("wipe acknowledged by the device (erased %v)", res.Result["erased"])
}

// revoke revokes every certificate of the device and closes its session.
func (s *Service) revoke(ctx context.Context, rec steward.Decommission, certs []steward.Certificate, actor string) (string, string) {
	now := s.cfg.Clock.Now()
	n := 0
	for _, c := range certs {
		if c.Revoked() {
			continue
		}
		_, err := s.cfg.Store.RevokeCertificate(ctx, steward.Revocation{TenantID: rec.TenantID, Serial: c.Serial, DeviceID: rec.DeviceID,
			Reason: steward.ReasonCessationOfOperation, Actor: actor, At: now})
		if err != nil && steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			return steward.StepFailed, "revoke certificate " + c.Serial + ": " + steward.ErrorMessage(err)
		}
		n++
	}
	if err := s.cfg.Bus.Control(ctx, steward.SessionControl{TenantID: rec.TenantID, DeviceID: rec.DeviceID, Close: true, Reason: "decommissioned"}); err != nil {
		s.log.Warn("close session of decommissioned device", "device", rec.DeviceID, "err", err)
	}
	return steward.StepOK, fmt.Sprintf("%d certificates revoked (%d in all); session closed", n, len(certs))
}

// cloudAccess clears the retained desired configuration on the broker and
// asks each remover to let go of the device.
func (s *Service) cloudAccess(ctx context.Context, rec steward.Decommission) (string, string) {
	var done []string
	if err := s.cfg.Bus.Send(ctx, steward.OutboundMessage{TenantID: rec.TenantID, DeviceID: rec.DeviceID, Channel: steward.ChannelTwinDesired,
		Payload: []byte{}, QoS: 1, Retain: true}); err != nil {
		return steward.StepFailed, "clear the retained desired configuration: " + steward.ErrorMessage(err)
	}
	done = append(done, "retained desired configuration cleared")
	for _, r := range s.cfg.Removers {
		what, err := r.RemoveDeviceAccess(ctx, rec.TenantID, rec.DeviceID)
		if err != nil {
			return steward.StepFailed, strings.Join(append(done, "failed: "+steward.ErrorMessage(err)), "; ")
		}
		if what != "" {
			done = append(done, what)
		}
	}
	return steward.StepOK, strings.Join(done, "; ")
}

// dataPolicy applies the data policy; the keep policy sets the record's
// retention, after which Purge erases the data.
func (s *Service) dataPolicy(ctx context.Context, rec *steward.Decommission, r steward.DecommissionRequest) (string, string) {
	switch rec.Policy {
	case steward.DataDelete:
		n, err := s.cfg.Store.EraseDeviceData(ctx, rec.TenantID, rec.DeviceID)
		if err != nil {
			return steward.StepFailed, "erase: " + steward.ErrorMessage(err)
		}
		return steward.StepOK, fmt.Sprintf("delete: %d rows of telemetry, events and presence history erased", n)
	case steward.DataAnonymise:
		if err := s.cfg.Store.AnonymiseDeviceData(ctx, rec.TenantID, rec.DeviceID); err != nil {
			return steward.StepFailed, "anonymise: " + steward.ErrorMessage(err)
		}
		return steward.StepOK, "anonymise: client addresses removed from the history; owner, location, labels and free attributes removed from the inventory record; measurements kept"
	default:
		keep := s.cfg.Retention
		if r.RetentionDays > 0 {
			keep = time.Duration(r.RetentionDays) * 24 * time.Hour
		}
		until := s.cfg.Clock.Now().Add(keep)
		rec.RetainUntil = &until
		return steward.StepOK, "keep: data kept until " + until.UTC().Format(time.RFC3339) + ", then erased"
	}
}

// anonymousAttributes are the attributes an anonymised record keeps: what
// the device was, not where or whose.
var anonymousAttributes = []string{steward.AttrModel, steward.AttrFirmware, steward.AttrHardware}

// inventory marks the record decommissioned with the reason (which also
// closes any session for good) and, under the anonymise policy, strips it.
func (s *Service) inventory(ctx context.Context, rec steward.Decommission, actor string) (string, string) {
	_, err := s.cfg.Lifecycle.Apply(ctx, rec.TenantID, rec.DeviceID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		ev, err := steward.Transition(d, steward.StateDecommissioned, rec.Reason, actor, s.cfg.Clock.Now())
		if err != nil {
			return nil, err
		}
		if rec.Policy == steward.DataAnonymise {
			d.Owner, d.Location, d.Labels = "", steward.Location{}, map[string]string{}
			kept := map[string]any{}
			for _, k := range anonymousAttributes {
				if v, ok := d.Attributes[k]; ok {
					kept[k] = v
				}
			}
			d.Attributes = kept
		}
		return []steward.LifecycleEvent{ev}, nil
	})
	if err != nil {
		return steward.StepFailed, steward.ErrorMessage(err)
	}
	return steward.StepOK, "inventory record decommissioned: " + rec.Reason
}

// verify asks the device plane's own checks about every certificate the
// device held: the MQTT handshake's gate and the EST re-enrollment's
// authentication must both refuse each one. The server never holds a
// device's private key, so it cannot make the TLS handshake itself; these
// are the functions that handshake and that request reach.
func (s *Service) verify(ctx context.Context, certs []steward.Certificate) (string, string) {
	var refused, accepted []string
	for _, c := range certs {
		b, _ := pem.Decode([]byte(c.PEM))
		if b == nil {
			return steward.StepFailed, "certificate " + c.Serial + " is not readable"
		}
		x, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return steward.StepFailed, "certificate " + c.Serial + " is not readable"
		}
		_, mqttErr := s.cfg.Gate.AuthenticateDevice(ctx, x, "decommission-verification")
		_, estErr := s.cfg.Enroller.Reenroll(ctx, steward.EnrollRequest{PeerChain: []*x509.Certificate{x}, Remote: "decommission-verification"})
		if isRefusal(mqttErr) && isRefusal(estErr) {
			refused = append(refused, fmt.Sprintf("%s refused (mqtt: %s; est: %s)", c.Serial, steward.ErrorMessage(mqttErr), steward.ErrorMessage(estErr)))
			continue
		}
		accepted = append(accepted, c.Serial)
	}
	if len(accepted) > 0 {
		return steward.StepFailed, "still accepted by the device plane: " + strings.Join(accepted, ", ")
	}
	if len(refused) == 0 {
		return steward.StepOK, "the device held no certificate"
	}
	return steward.StepOK, strings.Join(refused, "; ")
}

// isRefusal reports whether err refuses the credentials themselves (not a
// malformed request that got past authentication).
func isRefusal(err error) bool {
	c := steward.ErrorCode(err)
	return err != nil && (c == steward.CodeUnauthenticated || c == steward.CodePermissionDenied)
}

// CertificateContent is what a decommissioning certificate signs.
type CertificateContent struct {
	Type   string               `json:"type"` // "steward.decommissioning/v1"
	Record steward.Decommission `json:"record"`
}

// ContentType names CertificateContent's format.
const ContentType = "steward.decommissioning/v1"

// sign makes the decommissioning certificate: the record as JSON, signed by
// the tenant's device CA as a CMS SignedData, PEM.
func (s *Service) sign(ctx context.Context, rec steward.Decommission) (string, error) {
	rec.Certificate = ""
	data, err := json.MarshalIndent(CertificateContent{Type: ContentType, Record: rec}, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encode decommissioning record: %w", err)
	}
	der, err := s.cfg.Signer.SignRecord(ctx, rec.TenantID, append(data, '\n'))
	if err != nil {
		return "", fmt.Errorf("sign decommissioning record: %w", err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: PEMType, Bytes: der})), nil
}

// GetDecommission returns a decommissioning record.
func (s *Service) GetDecommission(ctx context.Context, tenantID, id string) (steward.Decommission, error) {
	return s.cfg.Store.GetDecommission(ctx, tenantID, id)
}

// ListDecommissions returns the tenant's records (of one device when
// deviceID is set).
func (s *Service) ListDecommissions(ctx context.Context, tenantID, deviceID string) ([]steward.Decommission, error) {
	return s.cfg.Store.ListDecommissions(ctx, tenantID, deviceID)
}

// Purge erases the data of decommissioned devices whose keep period has
// ended, and returns how many devices it purged.
func (s *Service) Purge(ctx context.Context) (int, error) {
	due, err := s.cfg.Store.ListRetainedDecommissions(ctx, s.cfg.Clock.Now(), 100)
	if err != nil {
		return 0, err
	}
	for i, rec := range due {
		n, err := s.cfg.Store.EraseDeviceData(ctx, rec.TenantID, rec.DeviceID)
		if err != nil {
			return i, err
		}
		s.audit(ctx, rec, "system:decommission", "device.decommission.purge", steward.AuditSuccess, fmt.Sprintf("%d rows erased at the end of the retention", n))
		s.log.Info("retained data of decommissioned device erased", "tenant", rec.TenantID, "device", rec.DeviceID, "rows", n)
	}
	return len(due), nil
}

// Run purges retained data and expires transfer codes every interval until
// ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.Purge(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("purge retained data of decommissioned devices", "err", err)
		}
		if _, err := s.ExpireTransfers(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("expire device transfers", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Service) audit(ctx context.Context, rec steward.Decommission, actor, action, outcome, detail string) {
	if s.cfg.Auditor == nil {
		return
	}
	err := s.cfg.Auditor.Record(ctx, steward.AuditRecord{TenantID: rec.TenantID, Actor: actor, Action: action, Target: "device:" + rec.DeviceID,
		Outcome: outcome, Detail: detail, After: rawJSON(map[string]string{"decommissioning": rec.ID, "state": rec.State}), At: s.cfg.Clock.Now()})
	if err != nil {
		// The record itself keeps every step; the log is told, loudly.
		s.log.Error("audit a decommissioning step", "device", rec.DeviceID, "action", action, "err", err)
	}
}

func rawJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// Transfer hands a device to another owner: its certificates are revoked
// (reason affiliation_changed) and its session closed, what the cloud keeps
// for it is cleared, its configuration reset (labels back to its
// enrollment group's, attributes and location cleared), its key binding
// dropped, and it returns to registered: it must be provisioned again with
// its factory identity, with a new key.
func (s *Service) Transfer(ctx context.Context, tenantID, deviceID string, r steward.TransferRequest, actor string) (steward.Device, error) {
	r.Owner, r.Reason = strings.TrimSpace(r.Owner), strings.TrimSpace(r.Reason)
	switch {
	case r.Owner == "" || len(r.Owner) > 256:
		return steward.Device{}, steward.Errorf(steward.CodeInvalid, "a transfer needs the new owner, at most 256 characters")
	case r.Reason == "" || len(r.Reason) > 1024:
		return steward.Device{}, steward.Errorf(steward.CodeInvalid, "a transfer needs a reason of at most 1024 characters")
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.Device{}, err
	}
	if !steward.CanTransition(d.State, steward.StateRegistered) {
		return steward.Device{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s is %s and cannot be transferred", deviceID, d.State)
	}
	now := s.cfg.Clock.Now()
	before := d
	out, err := s.release(ctx, d, r.Owner, "transferred to "+r.Owner+": "+r.Reason, actor)
	if err != nil {
		return steward.Device{}, err
	}
	s.log.Info("device transferred", "tenant", tenantID, "device", deviceID, "owner", r.Owner, "actor", actor)
	if s.cfg.Auditor != nil {
		if err := s.cfg.Auditor.Record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "device.transfer", Target: "device:" + deviceID,
			Outcome: steward.AuditSuccess, Detail: r.Reason, Before: rawJSON(before), After: rawJSON(out), At: now}); err != nil {
			return out, steward.WrapError(steward.CodeInternal, err, "device.transfer was done but could not be recorded in the audit log")
		}
	}
	return out, nil
}

// release takes a device back to registered, as a transfer to another
// owner or tenant needs: its certificates are revoked (reason
// affiliation_changed), what the cloud keeps for it is cleared, its
// configuration reset (owner set to owner, labels back to its enrollment
// group's, attributes and location cleared), its key binding dropped, and
// its session closed. It must then be provisioned again with its factory
// identity, with a new key. A device that is already registered stays so,
// its record reset.
func (s *Service) release(ctx context.Context, d steward.Device, owner, why, actor string) (steward.Device, error) {
	labels := map[string]string{}
	if d.EnrollmentGroupID != "" {
		if g, err := s.cfg.Store.GetEnrollmentGroup(ctx, d.TenantID, d.EnrollmentGroupID); err == nil {
			for k, v := range g.Labels {
				labels[k] = v
			}
		}
	}
	certs, err := s.cfg.Store.ListCertificates(ctx, d.TenantID, d.ID)
	if err != nil {
		return steward.Device{}, err
	}
	now := s.cfg.Clock.Now()
	for _, c := range certs {
		if c.Revoked() {
			continue
		}
		if _, err := s.cfg.Store.RevokeCertificate(ctx, steward.Revocation{TenantID: d.TenantID, Serial: c.Serial, DeviceID: d.ID,
			Reason: steward.ReasonAffiliationChanged, Actor: actor, At: now}); err != nil && steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			return steward.Device{}, err
		}
	}
	rec := steward.Decommission{TenantID: d.TenantID, DeviceID: d.ID}
	if outcome, detail := s.cloudAccess(ctx, rec); outcome == steward.StepFailed {
		return steward.Device{}, steward.Errorf(steward.CodeUnavailable, "transfer of %s: %s", d.ID, detail)
	}
	out, err := s.cfg.Lifecycle.Apply(ctx, d.TenantID, d.ID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		var evs []steward.LifecycleEvent
		if d.State != steward.StateRegistered {
			ev, err := steward.Transition(d, steward.StateRegistered, why, actor, s.cfg.Clock.Now())
			if err != nil {
				return nil, err
			}
			evs = append(evs, ev)
		}
		d.Owner, d.Labels, d.Location, d.Attributes, d.FactoryKeyID = owner, labels, steward.Location{}, map[string]any{}, ""
		return evs, nil
	})
	if err != nil {
		return steward.Device{}, err
	}
	// Registered is not a state the broker closes sessions for: close it.
	if err := s.cfg.Bus.Control(ctx, steward.SessionControl{TenantID: d.TenantID, DeviceID: d.ID, Close: true, Reason: "transferred"}); err != nil {
		s.log.Warn("close session of transferred device", "device", d.ID, "err", err)
	}
	return out, nil
}
