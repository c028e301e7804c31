package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestAlertEndToEnd creates a threshold rule through the API, sends
// telemetry over MQTT with a paho client, and watches the node's evaluator
// fire the alert when the temperature crosses the threshold, keep it firing
// between the threshold and the resolve value (hysteresis), and resolve it
// below; the alert shows on /metrics.
func TestAlertEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()

	hook, _ := n.newWebhook(t, "ops", "webhook-secret-for-the-test")
	notified := func(state steward.AlertState) bool {
		for _, got := range hook.notifications() {
			if got.State == string(state) && got.Rule == "hot" {
				return true
			}
		}
		return false
	}
	resolve := 70.0
	rule, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "hot", Kind: steward.RuleThreshold, Severity: steward.AlertMajor, Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: steward.MetricTemperature, Aggregation: steward.AggLast,
			Window: steward.Duration(time.Minute), Operator: ">", Value: 80, ResolveValue: &resolve}})
	if err != nil {
		t.Fatal(err)
	}
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName
	c, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(payload string) {
		t.Helper()
		tok := c.Publish(steward.Topic(id, steward.ChannelTelemetry), 1, false, []byte(payload))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	alertOf := func() (steward.Alert, bool) {
		as, err := n.admin.ListAlerts(ctx, steward.AlertFilter{RuleID: rule.ID, DeviceID: id})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) == 0 {
			return steward.Alert{}, false
		}
		if len(as) > 1 {
			t.Fatalf("%d alerts of one rule and device: %+v", len(as), as)
		}
		return as[0], true
	}

	pub(`{"metrics":{"temperature":60}}`)
	pub(`{"metrics":{"temperature":90}}`)
	eventually(t, "alert firing", func() bool { a, ok := alertOf(); return ok && a.State == steward.AlertFiring })
	eventually(t, "firing notification on the webhook", func() bool { return notified(steward.AlertFiring) })
	if v, _ := sample(n.scrapeMetrics(t), `steward_alerts{severity="major",state="firing"}`); v != 1 {
		t.Fatalf("steward_alerts firing major = %v, want 1", v)
	}

	// Between the resolve value and the threshold it keeps firing: wait for
	// an evaluation after the sample is stored (the PUBACK follows the commit).
	pub(`{"metrics":{"temperature":75}}`)
	after := n.clock.Now()
	eventually(t, "evaluation after 75", func() bool { a, _ := alertOf(); return a.LastEvaluatedAt.After(after) })
	if a, _ := alertOf(); a.State != steward.AlertFiring || a.Value != 75 {
		t.Fatalf("at 75: %+v, want still firing", a)
	}

	pub(`{"metrics":{"temperature":65}}`)
	eventually(t, "alert resolved", func() bool { a, ok := alertOf(); return ok && a.State == steward.AlertResolved })
	eventually(t, "resolved notification on the webhook", func() bool { return notified(steward.AlertResolved) })
	received := hook.notifications()
	for _, got := range received {
		if got.DeviceID != id || got.Labels["device"] != id || got.Severity != string(steward.AlertMajor) {
			t.Errorf("notification: %+v", got)
		}
	}
	if len(received) != 2 {
		t.Errorf("%d notifications, want firing and resolved once each: %+v", len(received), received)
	}
	a, _ := alertOf()
	if a.FiredAt == nil || a.ResolvedAt == nil || !strings.Contains(a.Summary, "temperature") {
		t.Fatalf("resolved alert: %+v", a)
	}
	a, err = n.admin.AcknowledgeAlert(ctx, a.ID)
	if err != nil || a.AcknowledgedBy == "" {
		t.Fatalf("ack: %+v %v", a, err)
	}
}
