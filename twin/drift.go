package twin

import (
	"context"
	"time"

	"github.com/steward-iot/steward"
)

// CheckDrift flags the devices whose reported configuration has differed
// from the desired one for longer than the grace period, unflags those back
// in sync, hands the changes to OnDrift and refreshes the drift counts. Two
// nodes may run it at once: each change is handed on by one of them.
func (s *Service) CheckDrift(ctx context.Context) ([]steward.DriftChange, error) {
	changes, err := s.cfg.Store.MarkDrift(ctx, s.cfg.Clock.Now(), s.cfg.Grace)
	if err != nil {
		return nil, err
	}
	for _, c := range changes {
		s.cfg.Logger.Info("configuration drift", "tenant", c.TenantID, "device", c.DeviceID, "drifted", c.Drifted, "since", c.Since)
	}
	if len(changes) > 0 && s.cfg.OnDrift != nil {
		s.cfg.OnDrift(ctx, changes)
	}
	counts, err := s.cfg.Store.CountDrift(ctx)
	if err != nil {
		return changes, err
	}
	s.counts.Store(&counts)
	return changes, nil
}

// DriftCounts returns the counts of the last drift check (the gauge of
// drifted devices per tenant); nil before the first.
func (s *Service) DriftCounts() []steward.DriftCount {
	if p := s.counts.Load(); p != nil {
		return *p
	}
	return nil
}

// RunDrift checks drift every interval until ctx is done.
func (s *Service) RunDrift(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.CheckDrift(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("drift check", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Drifted returns the tenant's devices flagged as drifted, by device ID,
// and how many there are in all.
func (s *Service) Drifted(ctx context.Context, tenantID string, f steward.TwinFilter) ([]steward.Twin, int, error) {
	f.Drifted = true
	twins, err := s.cfg.Store.ListTwins(ctx, tenantID, f)
	if err != nil {
		return nil, 0, err
	}
	counts, err := s.cfg.Store.CountDrift(ctx)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for _, c := range counts {
		if c.TenantID == tenantID {
			n = c.Drifted
		}
	}
	return twins, n, nil
}

// Drift signal names, for alert rules: an event of type EventDrift when a
// device is flagged (EventDriftCleared when it is back in sync), and the
// metric MetricDrift, 1 while drifted and 0 once cleared.
const (
	EventDrift        = "config.drift"
	EventDriftCleared = "config.drift.cleared"
	MetricDrift       = "config.drift"
)

// Signals returns the OnDrift hook that makes drift visible to alert rules
// without a rule kind of its own: each change is written as a device event
// (an event rule on type config.drift fires on it) and as a sample of the
// metric config.drift (a threshold rule "config.drift last > 0" fires
// while a device is drifted and resolves when it is back in sync).
func Signals(store steward.Store, log interface {
	Error(msg string, args ...any)
}) func(context.Context, []steward.DriftChange) {
	return func(ctx context.Context, changes []steward.DriftChange) {
		var (
			events  []steward.DeviceEvent
			samples []steward.Sample
		)
		for _, c := range changes {
			e := steward.DeviceEvent{TenantID: c.TenantID, DeviceID: c.DeviceID, Type: EventDriftCleared, Severity: steward.SeverityInfo,
				Message: "reported configuration matches the desired one again", At: c.At, Received: c.At}
			v := 0.0
			if c.Drifted {
				e.Type, e.Severity, v = EventDrift, steward.SeverityWarning, 1
				e.Message = "reported configuration differs from the desired one since " + c.Since.Format(time.RFC3339)
			}
			events = append(events, e)
			samples = append(samples, steward.Sample{TenantID: c.TenantID, DeviceID: c.DeviceID, Metric: MetricDrift, Value: v, At: c.At})
		}
		if err := store.AddDeviceEvents(ctx, events); err != nil {
			log.Error("record drift events", "err", err)
		}
		if err := store.WriteSamples(ctx, samples); err != nil {
			log.Error("record drift samples", "err", err)
		}
	}
}

// Run sends every stored desired state to its device again (trying again
// while the device plane is not up yet), then checks drift every interval
// until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		n, err := s.Republish(ctx)
		if err == nil {
			s.cfg.Logger.Info("desired twins published", "twins", n)
			break
		}
		s.cfg.Logger.Warn("publish desired twins; will retry", "err", err, "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
	s.RunDrift(ctx, every)
}

// Grace returns the grace period the drift check allows.
func (s *Service) Grace() time.Duration { return s.cfg.Grace }
