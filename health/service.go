package health

import (
	"context"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

// maxEvents is how many recent error events one evaluation reads: the
// store's largest page, far more than any rule counts.
const maxEvents = 1000

// Service evaluates device health from the store. It implements
// steward.FleetHealth.
type Service struct {
	store steward.Store
	clock steward.Clock
	rules Rules
}

var _ steward.FleetHealth = (*Service)(nil)

// New returns a service grading devices by rules (DefaultRules, usually).
func New(store steward.Store, clock steward.Clock, rules Rules) *Service {
	return &Service{store: store, clock: clock, rules: rules}
}

// Device evaluates one device of a tenant now; CodeNotFound when the tenant
// has no such device.
func (s *Service) Device(ctx context.Context, tenantID, id string) (steward.DeviceHealth, error) {
	if !steward.ValidDeviceID(id) {
		return steward.DeviceHealth{}, steward.Errorf(steward.CodeNotFound, "device %q not found", id)
	}
	d, err := s.store.GetDevice(ctx, tenantID, id)
	if err != nil {
		return steward.DeviceHealth{}, err
	}
	now := s.clock.Now().UTC()
	in := Input{Device: d, Now: now}
	if in.Latest, err = s.store.LatestSamples(ctx, tenantID, id); err != nil {
		return steward.DeviceHealth{}, fmt.Errorf("latest samples of %s: %w", id, err)
	}
	if s.rules.EventWindow > 0 {
		// No upper bound: an event a device dates a little ahead of the
		// server's clock is still recent.
		in.Events, err = s.store.ListDeviceEvents(ctx, tenantID, id, steward.DeviceEventFilter{
			MinSeverity: steward.SeverityError, From: now.Add(-s.rules.EventWindow), Limit: maxEvents,
		})
		if err != nil {
			return steward.DeviceHealth{}, fmt.Errorf("recent events of %s: %w", id, err)
		}
	}
	if s.rules.ReconnectWindow > 0 {
		if in.Presence, err = s.presence(ctx, d, now.Add(-s.rules.ReconnectWindow), now); err != nil {
			return steward.DeviceHealth{}, err
		}
	}
	return Evaluate(in, s.rules), nil
}

// presence summarises a device's presence history in [from, to) as GET
// /api/v1/devices/{id}/presence does: every connect is a reconnect but the
// device's very first.
func (s *Service) presence(ctx context.Context, d steward.Device, from, to time.Time) (steward.PresenceSummary, error) {
	counts, err := s.store.CountPresenceEvents(ctx, d.TenantID, d.ID, from, to)
	if err != nil {
		return steward.PresenceSummary{}, fmt.Errorf("count presence events of %s: %w", d.ID, err)
	}
	sum := steward.PresenceSummary{Online: d.Presence.Online, From: from, To: to,
		Connects: counts.Connects, Disconnects: counts.Disconnects, Reconnects: counts.Connects}
	if sum.Reconnects > 0 {
		earlier, err := s.store.ListPresenceEvents(ctx, d.TenantID, d.ID, time.Time{}, from, 1)
		if err != nil {
			return steward.PresenceSummary{}, fmt.Errorf("presence events of %s: %w", d.ID, err)
		}
		if len(earlier) == 0 {
			sum.Reconnects--
		}
	}
	sum.ReconnectsPerHour = float64(sum.Reconnects) / to.Sub(from).Hours()
	return sum, nil
}
