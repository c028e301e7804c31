package server

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestMaintenanceSuppressesNotifications puts a device into maintenance
// through the API: its threshold alert is recorded but nothing reaches the
// webhook; when maintenance ends with the alert still firing, the
// notification goes out, signed.
func TestMaintenanceSuppressesNotifications(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()

	hook, _ := n.newWebhook(t, "ops", "maintenance-webhook-secret")
	rule, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "hot", Kind: steward.RuleThreshold, Severity: steward.AlertMajor, Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: steward.MetricTemperature, Aggregation: steward.AggLast,
			Window: steward.Duration(time.Minute), Operator: ">", Value: 80}})
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
	pub := func(topic steward.Channel, payload string) {
		t.Helper()
		tok := c.Publish(steward.Topic(id, topic), 1, false, []byte(payload))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	pub(steward.ChannelAttributes, `{"model":"gw-100","firmware":"1.0.0"}`)
	eventually(t, "active", func() bool { d, err := n.admin.GetDevice(ctx, id); return err == nil && d.State == steward.StateActive })

	d, err := n.admin.StartMaintenance(ctx, id, "replacing the fan")
	if err != nil || d.State != steward.StateMaintenance || d.StateReason != "replacing the fan" {
		t.Fatalf("start maintenance: %+v %v", d, err)
	}
	if _, err := n.admin.Quarantine(ctx, id, "x"); steward.ErrorCode(err) != steward.CodeConflict && steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("quarantine from maintenance: %v, want refused by the state machine", err)
	}

	pub(steward.ChannelTelemetry, `{"metrics":{"temperature":95}}`)
	var alert steward.Alert
	eventually(t, "suppressed alert", func() bool {
		as, err := n.admin.ListAlerts(ctx, steward.AlertFilter{RuleID: rule.ID, DeviceID: id})
		if err != nil || len(as) != 1 {
			return false
		}
		alert = as[0]
		return alert.State == steward.AlertFiring && alert.Suppressed != ""
	})
	// Evaluations go on; nothing may reach the webhook while in maintenance.
	after := n.clock.Now()
	eventually(t, "a later evaluation", func() bool {
		a, err := n.admin.GetAlert(ctx, alert.ID)
		return err == nil && a.LastEvaluatedAt.After(after.Add(100*time.Millisecond))
	})
	if got := hook.received(); len(got) != 0 {
		t.Fatalf("notified during maintenance: %s", got)
	}

	if d, err := n.admin.EndMaintenance(ctx, id); err != nil || d.State != steward.StateActive {
		t.Fatalf("end maintenance: %+v %v", d, err)
	}
	if _, err := n.admin.EndMaintenance(ctx, id); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("ending maintenance twice: %v, want 409", err)
	}
	pub(steward.ChannelTelemetry, `{"metrics":{"temperature":96}}`)
	eventually(t, "notification after maintenance", func() bool {
		for _, got := range hook.notifications() {
			if got.AlertID == alert.ID && got.State == string(steward.AlertFiring) {
				return true
			}
		}
		return false
	})
	hist, err := n.admin.GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var states []steward.State
	for _, h := range hist.History {
		states = append(states, h.To)
	}
	if len(states) < 4 || states[len(states)-2] != steward.StateMaintenance || states[len(states)-1] != steward.StateActive {
		t.Errorf("history %v, want … maintenance active", states)
	}
}
