// Package privacy serves a person's rights over the data of a device that
// belongs to them: consent per data class, an export of everything held
// about the device, and its erasure, which keeps a tombstone and the audit
// record of the erasure.
package privacy

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/steward-iot/steward"
)

// TxAuditor is an Auditor that can also record inside a store
// transaction, so that an action and its record land together (the audit
// log does).
type TxAuditor interface {
	steward.Auditor
	RecordIn(ctx context.Context, tx steward.Store, r steward.AuditRecord) error
}

// Config configures the service.
type Config struct {
	Store steward.Store
	// Auditor records consents and erasures; when it is a TxAuditor the
	// erasure and its record are one transaction. Without one, records go
	// to the logger only.
	Auditor steward.Auditor
	Clock   steward.Clock
	Logger  *slog.Logger
	// ConsentChanged, when set, is told the tenant of each change of
	// consent (the telemetry intake's ConsentChanged), so that it applies
	// on this node at once.
	ConsentChanged func(tenantID string)
}

// Service implements consent, export and erasure.
type Service struct {
	cfg Config
}

// New returns the service.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg}
}

// Export returns everything held about a device.
func (s *Service) Export(ctx context.Context, tenantID, deviceID string) (steward.DeviceExport, error) {
	return s.cfg.Store.ExportDevice(ctx, tenantID, deviceID, s.cfg.Clock.Now())
}

// Erase deletes everything held about a device and keeps its tombstone;
// the audit record of the erasure (action device.erase, with the erased
// row counts) is kept, in the same transaction when the auditor can.
func (s *Service) Erase(ctx context.Context, tenantID, deviceID, actor string) (steward.DeviceTombstone, error) {
	now := s.cfg.Clock.Now().UTC()
	rec := steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "device.erase", Target: "device:" + deviceID, At: now}
	in := steward.DeviceTombstone{TenantID: tenantID, DeviceID: deviceID, ErasedAt: now, ErasedBy: actor}
	var out steward.DeviceTombstone
	var err error
	if ta, ok := s.cfg.Auditor.(TxAuditor); ok {
		err = s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
			if out, err = tx.EraseDevice(ctx, in); err != nil {
				return err
			}
			rec.Outcome, rec.After = steward.AuditSuccess, jsonOf(out)
			return ta.RecordIn(ctx, tx, rec)
		})
	} else {
		if out, err = s.cfg.Store.EraseDevice(ctx, in); err == nil {
			rec.Outcome, rec.After = steward.AuditSuccess, jsonOf(out)
			err = s.record(ctx, rec)
		}
	}
	if err != nil && steward.ErrorCode(err) != steward.CodeNotFound {
		rec.Outcome, rec.Detail, rec.After = steward.AuditFailure, err.Error(), nil
		_ = s.record(ctx, rec)
	}
	return out, err
}

// Consent returns a device's consent; a device without one is not
// personal (everything is kept).
func (s *Service) Consent(ctx context.Context, tenantID, deviceID string) (steward.DeviceConsent, error) {
	c, err := s.cfg.Store.GetDeviceConsent(ctx, tenantID, deviceID)
	if steward.ErrorCode(err) != steward.CodeNotFound {
		return c, err
	}
	if _, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID); err != nil {
		return c, err
	}
	return steward.DeviceConsent{TenantID: tenantID, DeviceID: deviceID, Granted: []string{}}, nil
}

// SetConsent records a device's consent and audits it (action
// device.consent, before and after).
func (s *Service) SetConsent(ctx context.Context, c steward.DeviceConsent, actor string) (steward.DeviceConsent, error) {
	c.UpdatedAt = s.cfg.Clock.Now().UTC()
	if err := c.Validate(); err != nil {
		return c, err
	}
	before, err := s.Consent(ctx, c.TenantID, c.DeviceID)
	if err != nil {
		return c, err
	}
	if err := s.cfg.Store.PutDeviceConsent(ctx, c); err != nil {
		return c, err
	}
	if s.cfg.ConsentChanged != nil {
		s.cfg.ConsentChanged(c.TenantID)
	}
	return c, s.record(ctx, steward.AuditRecord{TenantID: c.TenantID, Actor: actor, Action: "device.consent",
		Target: "device:" + c.DeviceID, Outcome: steward.AuditSuccess, Before: jsonOf(before), After: jsonOf(c), At: c.UpdatedAt})
}

// record hands r to the auditor, or to the logger when there is none.
func (s *Service) record(ctx context.Context, r steward.AuditRecord) error {
	if s.cfg.Auditor != nil {
		return s.cfg.Auditor.Record(ctx, r)
	}
	s.cfg.Logger.Info("audit", "tenant", r.TenantID, "actor", r.Actor, "action", r.Action, "target", r.Target, "outcome", r.Outcome, "detail", r.Detail)
	return nil
}

func jsonOf(v any) json.RawMessage {
	b, _ := json.Marshal(v) // values of this package's own types: they marshal
	return b
}
