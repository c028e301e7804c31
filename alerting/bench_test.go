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
