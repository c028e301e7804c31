package credentials

import (
	"context"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

// EventCredentialExpiring is the device event type the expiry watch writes
// for a device whose newest certificate expires within the window: an
// alert rule of kind event on this type raises an alert per device.
const EventCredentialExpiring = "credential.expiring"

// DefaultExpiryWindow is how far ahead the expiry watch looks: a healthy
// agent renews at two thirds of a 90-day certificate, so a device inside
// the last 14 days has missed its renewal for two weeks.
const DefaultExpiryWindow = 14 * 24 * time.Hour

// ReportExpiring writes a credential.expiring warning event for each device,
// of every tenant, whose newest unrevoked certificate expires within the
// window (a device that has already renewed is not reported for its older
// certificate). It returns how many devices it reported.
func (s *Service) ReportExpiring(ctx context.Context, within time.Duration) (int, error) {
	if within <= 0 || within > MaxExpiryWindow {
		return 0, steward.Errorf(steward.CodeInvalid, "the window must be more than 0 and at most %d days", int(MaxExpiryWindow.Hours()/24))
	}
	tenants, err := s.cfg.Store.ListTenants(ctx)
	if err != nil {
		return 0, err
	}
	now := s.cfg.Clock.Now()
	n := 0
	for _, t := range tenants {
		certs, err := s.cfg.Store.ListExpiringCertificates(ctx, t.ID, now, now.Add(within), 10000)
		if err != nil {
			return n, err
		}
		seen := map[string]bool{}
		var events []steward.DeviceEvent
		for _, c := range certs {
			if seen[c.DeviceID] {
				continue
			}
			seen[c.DeviceID] = true
			all, err := s.cfg.Store.ListCertificates(ctx, t.ID, c.DeviceID)
			if err != nil {
				return n, err
			}
			newest := c
			for _, o := range all {
				if !o.Revoked() && o.NotAfter.After(newest.NotAfter) {
					newest = o
				}
			}
			if !newest.NotAfter.Before(now.Add(within)) {
				continue // renewed already
			}
			days := int(newest.NotAfter.Sub(now).Hours() / 24)
			events = append(events, steward.DeviceEvent{TenantID: t.ID, DeviceID: c.DeviceID, Type: EventCredentialExpiring, Severity: steward.SeverityWarning,
				Message: fmt.Sprintf("certificate %s expires at %s (%d days) and has not been renewed", newest.Serial, newest.NotAfter.UTC().Format(time.RFC3339), days),
				Fields:  map[string]any{"serial": newest.Serial, "not_after": newest.NotAfter.UTC().Format(time.RFC3339), "days_left": days},
				At:      now, Received: now})
		}
		if len(events) == 0 {
			continue
		}
		if err := s.cfg.Store.AddDeviceEvents(ctx, events); err != nil {
			return n, err
		}
		n += len(events)
	}
	if n > 0 {
		s.log.Warn("devices with certificates about to expire", "devices", n, "within", within)
	}
	return n, nil
}

// RunExpiryWatch reports expiring certificates every interval (with the
// window DefaultExpiryWindow) until ctx ends.
func (s *Service) RunExpiryWatch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.ReportExpiring(ctx, DefaultExpiryWindow); err != nil && ctx.Err() == nil {
			s.log.Error("report expiring certificates", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
