package lifecycle

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/steward-iot/steward"
)

// TxAuditor records in the audit log within a store transaction
// (audit.Log does), so that a state change and its record land together.
type TxAuditor interface {
	RecordIn(ctx context.Context, tx steward.Store, r steward.AuditRecord) error
}

// SetAuditor makes the service record every state change of a device (in
// the transaction that makes it, whoever asked: an operator, the device's
// own report, an alert action) and every revocation in the audit log. Call
// it before the service is used; without it nothing is recorded.
func (s *Service) SetAuditor(a TxAuditor) { s.audit = a }

// transitionAction names a state change as an audit action.
func transitionAction(ev steward.LifecycleEvent) string {
	switch {
	case ev.To == steward.StateActive && ev.From == steward.StateQuarantined:
		return "device.release"
	case ev.To == steward.StateActive && ev.From == steward.StateMaintenance:
		return "device.maintenance_end"
	case ev.To == steward.StateQuarantined:
		return "device.quarantine"
	case ev.To == steward.StateMaintenance:
		return "device.maintenance"
	case ev.To == steward.StateDecommissioned:
		return "device.decommission"
	case ev.To == steward.StateActive:
		return "device.activate"
	}
	return "device." + string(ev.To)
}

// auditActor names a lifecycle actor as the audit log does: "system" is
// system:lifecycle, "device" the device itself.
func auditActor(actor, deviceID string) string {
	switch {
	case actor == "" || actor == "system":
		return "system:lifecycle"
	case actor == "device":
		return "device:" + deviceID
	case strings.Contains(actor, ":"):
		return actor
	}
	return "system:" + actor
}

// auditTransitions records state changes in tx.
func (s *Service) auditTransitions(ctx context.Context, tx steward.Store, events []steward.LifecycleEvent) error {
	if s.audit == nil {
		return nil
	}
	for _, ev := range events {
		before, err := json.Marshal(map[string]any{"state": ev.From})
		if err != nil {
			return err
		}
		after, err := json.Marshal(map[string]any{"state": ev.To, "reason": ev.Reason})
		if err != nil {
			return err
		}
		err = s.audit.RecordIn(ctx, tx, steward.AuditRecord{TenantID: ev.TenantID, Actor: auditActor(ev.Actor, ev.DeviceID),
			Action: transitionAction(ev), Target: "device:" + ev.DeviceID, Outcome: steward.AuditSuccess, Detail: ev.Reason,
			Before: before, After: after, At: ev.At})
		if err != nil {
			return fmt.Errorf("audit state change of %s: %w", ev.DeviceID, err)
		}
	}
	return nil
}

// auditRevoke records a revocation that happened; a failure to record it
// is logged at error level, since the certificates are revoked already.
func (s *Service) auditRevoke(ctx context.Context, tenantID, id, actor string, n int) {
	if s.audit == nil {
		return
	}
	err := s.audit.RecordIn(context.WithoutCancel(ctx), s.store, steward.AuditRecord{TenantID: tenantID, Actor: auditActor(actor, id),
		Action: "device.revoke", Target: "device:" + id, Outcome: steward.AuditSuccess,
		Detail: fmt.Sprintf("%d certificates revoked", n), At: s.clock.Now()})
	if err != nil {
		s.logger.Error("AUDIT RECORD LOST: device credentials were revoked but the audit log did not take the record",
			"tenant", tenantID, "device", id, "actor", actor, "err", err)
	}
}
