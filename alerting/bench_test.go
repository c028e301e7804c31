package alerting

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// BenchmarkEvaluateRule measures one threshold rule's pass over 1000
// devices with ten samples each in the window, half of them alerting.
func BenchmarkEvaluateRule(b *testing.B) {
	s := openStoreTB(b)
	ctx := b.Context()
	now := t0.Add(time.Hour)
	var samples []steward.Sample
	for i := range 1000 {
		id := fmt.Sprintf("d-b%04d", i)
		if err := s.CreateDevice(ctx, steward.Device{ID: id, TenantID: tenant, State: steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}); err != nil {
			b.Fatal(err)
		}
		for j := range 10 {
			samples = append(samples, steward.Sample{TenantID: tenant, DeviceID: id, Metric: "cpu", At: now.Add(-time.Duration(j) * time.Second), Value: float64(i % 2 * 100)})
		}
	}
	if err := s.WriteSamples(ctx, samples); err != nil {
		b.Fatal(err)
	}
	r := rule(steward.RuleThreshold, 0)
	r.Scope = ""
	r.Threshold = &steward.ThresholdCondition{Metric: "cpu", Aggregation: steward.AggAvg, Window: steward.Duration(time.Minute), Operator: ">", Value: 50}
	if err := s.CreateAlertRule(ctx, r); err != nil {
		b.Fatal(err)
	}
	ev := New(Config{Store: s, Clock: &testClock{now: now}})
	b.ResetTimer()
	for b.Loop() {
		if err := ev.EvaluateRule(ctx, r, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEvaluateSites measures a whole pass of a tenant with an
// offline rule over 1000 devices in 100 sites, ten of them dark: the
// grouped site count, the site alerts, and the offline alerts inhibited.
func BenchmarkEvaluateSites(b *testing.B) {
	s := openStoreTB(b)
	ctx := b.Context()
	now := t0.Add(time.Hour)
	for i := range 1000 {
		site := i % 100
		if err := s.CreateDevice(ctx, steward.Device{ID: fmt.Sprintf("d-s%04d", i), TenantID: tenant, Location: steward.Location{Site: fmt.Sprintf("site-%02d", site)},
			State: steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0,
			Presence: steward.Presence{Online: site >= 10, LastSeen: t0}}); err != nil {
			b.Fatal(err)
		}
	}
	r := rule(steward.RuleAbsence, 0)
	r.Scope = ""
	r.Absence = &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(time.Minute)}
	if err := s.CreateAlertRule(ctx, r); err != nil {
		b.Fatal(err)
	}
	ev := New(Config{Store: s, Clock: &testClock{now: now}})
	if err := ev.Evaluate(ctx); err != nil {
		b.Fatal(err)
	}
	if as, err := s.ListAlerts(ctx, tenant, steward.AlertFilter{RuleID: steward.BuiltinSiteRuleID}); err != nil || len(as) != 10 {
		b.Fatalf("site alerts: %d %v", len(as), err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := ev.Evaluate(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
