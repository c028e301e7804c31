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

// BenchmarkEvaluateRule10k measures one rule's pass over a fleet of
// 10,000 active devices, each with ten readings of ten metrics (cpu and
// nine others) in the last minute (a tenth of them older than the absence
// window, a tenth above the
// threshold): a threshold rule (avg cpu over a minute > 50) and an
// absence rule (no telemetry for five minutes). The first pass, outside
// the timer, opens the alerts; the timed passes find them open, as a
// steady evaluator does. It reports ms per rule pass.
func BenchmarkEvaluateRule10k(b *testing.B) {
	const devices = 10000
	s := openStoreTB(b)
	ctx := b.Context()
	now := t0.Add(time.Hour)
	var samples []steward.Sample
	if err := s.InTx(ctx, func(tx steward.Store) error {
		for i := range devices {
			id := fmt.Sprintf("d-k%05d", i)
			if err := tx.CreateDevice(ctx, steward.Device{ID: id, TenantID: tenant, State: steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}); err != nil {
				return err
			}
			last := now.Add(-time.Second)
			if i%10 == 1 {
				last = now.Add(-10 * time.Minute) // silent: the absence rule fires
			}
			v := float64(i % 50) // below the threshold
			if i%10 == 0 {
				v = 90
			}
			// Ten readings of ten metrics, as the devices of the
			// telemetry benchmark send them: the rule reads one.
			for j := range 10 {
				at := last.Add(-time.Duration(j) * time.Second)
				samples = append(samples, steward.Sample{TenantID: tenant, DeviceID: id, Metric: "cpu", At: at, Value: v})
				for m := 1; m < 10; m++ {
					samples = append(samples, steward.Sample{TenantID: tenant, DeviceID: id, Metric: fmt.Sprintf("m%d", m), At: at, Value: float64(m)})
				}
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	if err := s.WriteSamples(ctx, samples); err != nil {
		b.Fatal(err)
	}
	threshold := rule(steward.RuleThreshold, 0)
	threshold.ID, threshold.Scope = "r-threshold10k", ""
	threshold.Threshold = &steward.ThresholdCondition{Metric: "cpu", Aggregation: steward.AggAvg, Window: steward.Duration(time.Minute), Operator: ">", Value: 50}
	absence := rule(steward.RuleAbsence, 0)
	absence.ID, absence.Scope = "r-absence10k", ""
	absence.Absence = &steward.AbsenceCondition{Signal: "telemetry", Window: steward.Duration(5 * time.Minute)}
	for _, tc := range []struct {
		name   string
		r      steward.AlertRule
		firing int
	}{
		{"threshold", threshold, devices / 10},
		{"absence", absence, devices / 10},
	} {
		// Outside b.Run, whose function runs more than once.
		if err := s.CreateAlertRule(ctx, tc.r); err != nil {
			b.Fatal(err)
		}
		ev := New(Config{Store: s, Clock: &testClock{now: now}})
		if err := ev.EvaluateRule(ctx, tc.r, now); err != nil {
			b.Fatal(err)
		}
		as, err := s.ListAlerts(ctx, tenant, steward.AlertFilter{RuleID: tc.r.ID, Open: true, Limit: 1000})
		if err != nil {
			b.Fatal(err)
		}
		if len(as) != tc.firing {
			b.Fatalf("%s: %d alerts after the first pass, want %d", tc.name, len(as), tc.firing)
		}
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				if err := ev.EvaluateRule(ctx, tc.r, now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/pass")
		})
	}
}
