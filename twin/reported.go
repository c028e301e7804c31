package twin

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

// Limits of a reported message beyond its state document.
const (
	maxReportErrors   = 256
	maxReportErrorLen = 1024
	// maxReported is the largest reported message: a state document at
	// its limit and room for the version and errors.
	maxReported = steward.MaxConfigDocument + 16<<10
)

// writeTimeout bounds the store work of one report.
const writeTimeout = 30 * time.Second

// HandleReported takes a device's report on dev/{id}/twin/reported. A
// report too large or not in the documented shape is refused (CodeTooLarge
// or CodeInvalid), recorded as a security event, and changes nothing; a
// report for a version older than the one already reported is stale and
// dropped; a good one is acknowledged once stored.
func (s *Service) HandleReported(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	now := m.Received
	if now.IsZero() {
		now = s.cfg.Clock.Now()
	}
	// Not the caller's cancellation: a write under way when the broker
	// shuts down is finished, so that its message is acknowledged.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	rep, err := decodeReported(m.Payload)
	if err != nil {
		kind := steward.SecMalformedPayload
		if steward.ErrorCode(err) == steward.CodeTooLarge {
			kind = steward.SecPayloadTooLarge
		}
		s.refuse(wctx, m, kind, now, err)
		ack(err)
		return
	}
	err = s.storeReported(wctx, m, rep, now)
	switch code := steward.ErrorCode(err); code {
	case "":
		ack(nil)
	case steward.CodeInvalid, steward.CodeTooLarge:
		s.refuse(wctx, m, steward.SecMalformedPayload, now, err)
		ack(err)
	case steward.CodeNotFound:
		s.cfg.Logger.Warn("twin report refused", "tenant", m.TenantID, "device", m.DeviceID, "err", err)
		ack(err)
	default:
		s.cfg.Logger.Error("store twin report", "tenant", m.TenantID, "device", m.DeviceID, "err", err)
		ack(steward.WrapError(steward.CodeUnavailable, err, "twin report not stored"))
	}
}

// refuse records a refused report as a security event.
func (s *Service) refuse(ctx context.Context, m steward.DeviceMessage, kind steward.SecurityEventKind, now time.Time, err error) {
	s.cfg.Logger.Warn("twin report refused", "tenant", m.TenantID, "device", m.DeviceID, "kind", kind, "err", err)
	e := steward.SecurityEvent{TenantID: m.TenantID, DeviceID: m.DeviceID, Kind: kind, At: now,
		Detail: fmt.Sprintf("twin report of %d bytes refused: %s", len(m.Payload), steward.ErrorMessage(err))}
	if s.cfg.RecordSecurityEvent != nil {
		s.cfg.RecordSecurityEvent(ctx, e)
		return
	}
	if rerr := s.cfg.Store.AddSecurityEvent(ctx, e); rerr != nil {
		s.cfg.Logger.Error("record security event", "tenant", m.TenantID, "device", m.DeviceID, "err", rerr)
	}
}

// decodeReported reads and checks a reported message.
func decodeReported(b []byte) (steward.TwinReportedMessage, error) {
	var rep steward.TwinReportedMessage
	if len(b) > maxReported {
		return rep, steward.Errorf(steward.CodeTooLarge, "twin report of %d bytes, over %d", len(b), maxReported)
	}
	var raw struct {
		Version *json.Number      `json:"version"`
		State   json.RawMessage   `json:"state"`
		Errors  map[string]string `json:"errors"`
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&raw); err != nil || d.More() {
		return rep, steward.Errorf(steward.CodeInvalid, "twin report: want a JSON object with version, state and errors")
	}
	if raw.Version == nil {
		return rep, steward.Errorf(steward.CodeInvalid, "twin report: version is required")
	}
	v, err := raw.Version.Int64()
	if err != nil || v < 0 {
		return rep, steward.Errorf(steward.CodeInvalid, "twin report: version must be a whole number, 0 or more")
	}
	if err := steward.CheckConfigObject("reported state", raw.State); err != nil {
		return rep, err
	}
	if len(raw.Errors) > maxReportErrors {
		return rep, steward.Errorf(steward.CodeInvalid, "twin report: more than %d errors", maxReportErrors)
	}
	for k, e := range raw.Errors {
		if k == "" || len(k) > maxReportErrorLen || len(e) > maxReportErrorLen {
			return rep, steward.Errorf(steward.CodeInvalid, "twin report: an error needs a key and a message of at most %d bytes", maxReportErrorLen)
		}
	}
	rep.Version, rep.State, rep.Errors = v, raw.State, raw.Errors
	return rep, nil
}

// storeReported writes a report over the twin's current revision, again
// when an operator's change got in between.
func (s *Service) storeReported(ctx context.Context, m steward.DeviceMessage, rep steward.TwinReportedMessage, now time.Time) error {
	for range maxRetries {
		t, err := s.cfg.Store.GetTwin(ctx, m.TenantID, m.DeviceID)
		fresh := steward.IsNotFound(err)
		switch {
		case err != nil && !fresh:
			return err
		case fresh:
			// A device reporting before any desired state was set: its
			// twin starts at desired version 0 with an empty document.
			t = steward.Twin{TenantID: m.TenantID, DeviceID: m.DeviceID, Desired: json.RawMessage(`{}`), DesiredAt: now, CreatedAt: now}
		}
		switch {
		case rep.Version > t.DesiredVersion:
			return steward.Errorf(steward.CodeInvalid, "twin report for desired version %d, which was never set (desired is at %d)", rep.Version, t.DesiredVersion)
		case rep.Version < t.ReportedVersion:
			s.cfg.Logger.Info("stale twin report dropped", "tenant", m.TenantID, "device", m.DeviceID, "version", rep.Version, "reported", t.ReportedVersion)
			return nil
		}
		// Known good: the device reached its desired state now (it was not
		// there with this version before), so a rollback can come back to
		// the versions it was built from.
		wasGood := t.ReportedVersion == t.DesiredVersion && t.InSync()
		t.Reported, t.ReportedVersion, t.ReportErrors, t.ReportedAt, t.UpdatedAt = rep.State, rep.Version, rep.Errors, now, now
		if t.DesiredVersion > 0 {
			t.UpdateDrift(now)
		}
		good := t.DesiredVersion > 0 && t.ReportedVersion == t.DesiredVersion && t.InSync() && len(t.Sources) > 0 && !wasGood
		err = s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
			if _, err := tx.PutTwin(ctx, t); err != nil {
				return err
			}
			if good {
				return tx.RecordKnownGood(ctx, m.TenantID, m.DeviceID, t.Sources, now)
			}
			return nil
		})
		if steward.IsConflict(err) {
			continue
		}
		return err
	}
	return steward.Errorf(steward.CodeUnavailable, "the twin of device %s kept changing", m.DeviceID)
}
