package metrics_test

import (
	"testing"

	"github.com/steward-iot/steward"
)

func TestDriftGauges(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, nil)
	var counts []steward.DriftCount
	if err := m.WatchDrift(func() []steward.DriftCount { return counts }); err != nil {
		t.Fatal(err)
	}
	if _, ok := value(t, m.Registry(), "steward_twin_drifted_devices", map[string]string{"tenant": "t1"}); ok {
		t.Fatal("a series before the first drift check")
	}
	counts = []steward.DriftCount{{TenantID: "t1", Twins: 10, Drifted: 2}, {TenantID: "t2", Twins: 1}}
	want(t, m.Registry(), "steward_twin_devices", map[string]string{"tenant": "t1"}, 10)
	want(t, m.Registry(), "steward_twin_drifted_devices", map[string]string{"tenant": "t1"}, 2)
	want(t, m.Registry(), "steward_twin_drifted_devices", map[string]string{"tenant": "t2"}, 0)
	if err := m.WatchDrift(func() []steward.DriftCount { return nil }); err == nil {
		t.Error("registered the drift gauges twice")
	}
}
