package quarantine

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Observe queues a recorded security event for evaluation (the device
// gate's OnSecurityEvent hook). It never waits: past QueueSize the event
// is dropped and counted; it stays in the store, where the next event of
// the same device counts it.
func (s *Service) Observe(_ context.Context, e steward.SecurityEvent) {
	if e.DeviceID == "" || e.TenantID == "" {
		return
	}
	if _, _, ok := (steward.QuarantineRules{}).RuleFor(e.Kind); !ok {
		return
	}
	s.push(observation{e: e})
}

// ObserveSamples looks for a device's own report of configuration changes
// the server did not make (a sample of sec.config.changes above 0) and
// queues it to be recorded as a SecConfigChanged event and evaluated (the
// telemetry intake's OnSamples hook, called once a batch is committed). The event is stamped with the
// server's clock, like every other security event, so that a device's
// clock cannot move it out of a rule's window; the sample's own time is in
// the detail. It never waits.
func (s *Service) ObserveSamples(_ context.Context, samples []steward.Sample) {
	for _, sm := range samples {
		if sm.Metric != steward.MetricSecConfigChanges || !(sm.Value > 0) {
			continue
		}
		s.push(observation{record: true, e: steward.SecurityEvent{TenantID: sm.TenantID, DeviceID: sm.DeviceID, Kind: steward.SecConfigChanged,
			At: s.cfg.Clock.Now(), Detail: fmt.Sprintf("the device reported %s = %g at %s", steward.MetricSecConfigChanges, sm.Value, sm.At.UTC().Format(time.RFC3339))}})
	}
}

func (s *Service) push(o observation) {
	select {
	case s.queue <- o:
	default:
		if n := s.dropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, … drops
			s.log.Warn("quarantine evaluation queue full, observations dropped", "dropped", n, "kind", o.e.Kind, "device", o.e.DeviceID)
		}
	}
}

// Dropped is how many observations were dropped because the queue was full.
func (s *Service) Dropped() uint64 { return s.dropped.Load() }

// Run evaluates queued observations until ctx is done.
func (s *Service) Run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case o := <-s.queue:
			if o.record {
				if err := s.cfg.Store.AddSecurityEvent(ctx, o.e); err != nil {
					s.log.Error("record security event", "tenant", o.e.TenantID, "device", o.e.DeviceID, "kind", o.e.Kind, "err", err)
					continue
				}
			}
			if _, err := s.Evaluate(ctx, o.e); err != nil && ctx.Err() == nil {
				s.log.Warn("quarantine rule evaluation", "tenant", o.e.TenantID, "device", o.e.DeviceID, "kind", o.e.Kind, "err", err)
			}
		}
	}
}

// Evaluate applies the tenant's rule for e's kind to e's device, e being
// recorded already, and quarantines the device when the rule says so,
// with actor steward.QuarantineActor and a reason naming the rule and its
// evidence. It returns that reason, or "" when nothing was done: the rule
// is off or not met, or the device is not one a quarantine applies to
// (only a provisioned or active device can be quarantined; one already
// quarantined is left as it is).
func (s *Service) Evaluate(ctx context.Context, e steward.SecurityEvent) (string, error) {
	p, err := s.cachedPolicy(ctx, e.TenantID)
	if err != nil {
		return "", err
	}
	name, rule, ok := p.Rules.RuleFor(e.Kind)
	if !ok || !rule.Enabled || e.DeviceID == "" {
		return "", nil
	}
	d, err := s.cfg.Store.GetDevice(ctx, e.TenantID, e.DeviceID)
	if steward.IsNotFound(err) {
		return "", nil // an identity the registry does not hold
	}
	if err != nil {
		return "", err
	}
	if d.State != steward.StateActive && d.State != steward.StateProvisioned {
		return "", nil
	}
	var recent []steward.SecurityEvent
	for _, kind := range steward.QuarantineRuleKinds[name] {
		evs, err := s.cfg.Store.ListSecurityEvents(ctx, e.TenantID, steward.SecurityEventFilter{DeviceID: e.DeviceID, Kind: kind, Limit: rule.Threshold})
		if err != nil {
			return "", fmt.Errorf("security events of %s: %w", e.DeviceID, err)
		}
		recent = append(recent, evs...)
	}
	reason, fire := Decide(name, rule, recent, d.StateChangedAt, s.cfg.Clock.Now())
	if !fire {
		return "", nil
	}
	_, err = s.cfg.Quarantiner.Quarantine(ctx, e.TenantID, e.DeviceID, reason, steward.QuarantineActor)
	switch steward.ErrorCode(err) {
	case "":
		s.log.Warn("device quarantined by policy", "tenant", e.TenantID, "device", e.DeviceID, "rule", name, "reason", reason)
		return reason, nil
	case steward.CodeFailedPrecondition:
		return "", nil // its state changed meanwhile (quarantined, decommissioned…)
	}
	return "", fmt.Errorf("quarantine %s: %w", e.DeviceID, err)
}

// Decide applies a rule to a device's recent events of the rule's kinds
// (any order) at now. Only events within the rule's window that are not
// older than since count: since is when the device last changed state, so
// that a device released by an operator starts afresh instead of being
// quarantined again by the evidence it was released over. It returns the
// reason to quarantine, naming the rule and the evidence (count, window,
// the last event), and whether the rule is met.
func Decide(name steward.QuarantineRuleName, rule steward.QuarantineRule, recent []steward.SecurityEvent, since, now time.Time) (string, bool) {
	if !rule.Enabled || rule.Threshold < 1 {
		return "", false
	}
	from := now.Add(-rule.Window.D())
	if since.After(from) {
		from = since
	}
	var counted []steward.SecurityEvent
	for _, e := range recent {
		if !e.At.Before(from) && !e.At.After(now) {
			counted = append(counted, e)
		}
	}
	if len(counted) < rule.Threshold {
		return "", false
	}
	last := slices.MaxFunc(counted, func(a, b steward.SecurityEvent) int {
		if c := a.At.Compare(b.At); c != 0 {
			return c
		}
		return int(a.ID - b.ID)
	})
	var b strings.Builder
	fmt.Fprintf(&b, "quarantine rule %s", name)
	if rule.Threshold == 1 {
		fmt.Fprintf(&b, " (at once)")
	} else {
		fmt.Fprintf(&b, ": %d events within %s (threshold %d)", len(counted), rule.Window.D(), rule.Threshold)
	}
	fmt.Fprintf(&b, "; last %s at %s", last.Kind, last.At.UTC().Format(time.RFC3339))
	if last.Detail != "" {
		fmt.Fprintf(&b, ": %s", last.Detail)
	}
	if last.Remote != "" {
		fmt.Fprintf(&b, " from %s", last.Remote)
	}
	return b.String(), true
}
