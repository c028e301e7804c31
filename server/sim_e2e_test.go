package server

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/notify"
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
	const secret = "sim-webhook-secret"
	var (
		mu      sync.Mutex
		devices = map[string]bool{}
		badSig  int
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if !notify.Verify(secret, r.Header.Get("X-Steward-Signature"), r.Header.Get("X-Steward-Timestamp"), body, time.Now(), time.Minute) {
			badSig++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var got steward.Notification
		if err := json.Unmarshal(body, &got); err == nil && got.Rule == "cpu-seen" && got.State == string(steward.AlertFiring) {
			devices[got.DeviceID] = true
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	if _, err := n.admin.CreateChannel(ctx, client.ChannelRequest{Name: "ops", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: hook.URL, Secret: secret}}); err != nil {
		t.Fatal(err)
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
		mu.Lock()
		defer mu.Unlock()
		return len(devices) == 3
	})
	mu.Lock()
	defer mu.Unlock()
	if badSig != 0 {
		t.Fatalf("%d webhook requests with a bad signature", badSig)
	}
	for id := range devices {
		if _, err := n.admin.GetDevice(ctx, id); err != nil {
			t.Fatalf("notified device %s: %v", id, err)
		}
	}
}
