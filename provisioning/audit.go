package provisioning

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/steward-iot/steward"
)

// auditEnroll records a device's first enrollment in tx, the transaction
// that creates it.
func (s *Service) auditEnroll(ctx context.Context, tx steward.Store, d steward.Device, g steward.EnrollmentGroup, cert *x509.Certificate) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	after, err := json.Marshal(map[string]any{"state": d.State, "group": g.ID, "serial": d.Serial,
		"certificate": cert.SerialNumber.Text(16), "not_after": cert.NotAfter.UTC()})
	if err != nil {
		return err
	}
	err = s.cfg.Auditor.RecordIn(ctx, tx, steward.AuditRecord{TenantID: d.TenantID, Actor: "device:" + d.ID, Action: "device.enroll",
		Target: "device:" + d.ID, Outcome: steward.AuditSuccess, Detail: "enrolled through group " + g.Name, After: after, At: d.CreatedAt})
	if err != nil {
		return fmt.Errorf("audit enrollment: %w", err)
	}
	return nil
}

// auditedIncidents are the security events that are also audit records:
// each is rare and matters on its own. The others (a refused publish, an
// oversized message, …) can come by the thousand from one misbehaving
// device; they stay in the security events, with their own retention.
var auditedIncidents = map[steward.SecurityEventKind]bool{
	steward.SecSuspectedClone:    true,
	steward.SecRevokedCredential: true,
	steward.SecValidationFailed:  true,
}

// auditSecurity records a security incident of a known tenant.
func (s *Service) auditSecurity(ctx context.Context, e steward.SecurityEvent) {
	if s.cfg.Auditor == nil || !auditedIncidents[e.Kind] || e.TenantID == "" {
		return
	}
	r := steward.AuditRecord{TenantID: e.TenantID, Actor: "device:" + e.DeviceID, Action: "security." + string(e.Kind),
		Target: "device:" + e.DeviceID, Outcome: steward.AuditDenied, Remote: e.Remote, Detail: e.Detail, At: e.At}
	if e.DeviceID == "" {
		r.Actor, r.Target = "anonymous", ""
	}
	if err := s.cfg.Auditor.RecordIn(context.WithoutCancel(ctx), s.cfg.Store, r); err != nil {
		s.log.Error("AUDIT RECORD LOST: a security incident is not in the audit log", "tenant", e.TenantID, "device", e.DeviceID, "kind", e.Kind, "err", err)
	}
}
