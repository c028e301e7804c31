package server

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sim"
)

// TestSimulatedFleetAlerts runs three simulated devices (package sim,
// in-process) against the node: they enroll, report telemetry, a rule
// fires for each, and each firing alert reaches a loopback webhook whose
// signature is verified.
func TestSimulatedFleetAlerts(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()
	hook, _ := n.newWebhook(t, "ops", "sim-webhook-secret")
	// devices are those with a firing notification of the rule.
	devices := func() map[string]bool {
		out := map[string]bool{}
		for _, got := range hook.notifications() {
			if got.Rule == "cpu-seen" && got.State == string(steward.AlertFiring) {
				out[got.DeviceID] = true
			}
		}
		return out
	}
	// Every reporting device has a CPU load of at least zero: the rule
	// fires once per device that reports.
	if _, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "cpu-seen", Kind: steward.RuleThreshold, Severity: steward.AlertMinor, Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: steward.MetricCPU, Aggregation: steward.AggLast,
			Window: steward.Duration(time.Hour), Operator: ">=", Value: 0}}); err != nil {
		t.Fatal(err)
	}
	mfr, err := sim.NewManufacturer("Sim Devices")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{Name: "sim", CAPEM: string(mfr.CertPEM()), Models: []string{"sim-gw"},
		Firmware: map[string][]string{"sim-gw": {"1.0.0"}}}); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Devices: 3, Manufacturer: mfr, ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool,
		StateDir: t.TempDir(), TelemetryInterval: 50 * time.Millisecond, Seed: 1, ConnectRate: -1})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	eventually(t, "a firing notification for each of the three simulated devices", func() bool {
		return len(devices()) == 3
	})
	for id := range devices() {
		if _, err := n.admin.GetDevice(ctx, id); err != nil {
			t.Fatalf("notified device %s: %v", id, err)
		}
	}
}
