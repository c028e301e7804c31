package server

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestPolicyQuarantineEndToEnd: a threshold alert on a device whose
// policy has the quarantine action quarantines the device at once (the
// actor names the rule), and the policy's webhook receives the group
// message, signed, once group_wait has passed.
func TestPolicyQuarantineEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()

	hook, ch := n.newWebhook(t, "security", "policy-hook-secret")
	// groups decodes the group messages delivered so far.
	groups := func() []steward.GroupMessage {
		var out []steward.GroupMessage
		for _, b := range hook.received() {
			var m steward.GroupMessage
			if json.Unmarshal(b, &m) == nil && m.GroupKey != "" {
				out = append(out, m)
			}
		}
		return out
	}
	if _, err := n.admin.CreatePolicy(ctx, client.PolicyRequest{Name: "compromise", Channels: []string{ch.ID},
		Matchers:  []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "tamper"}},
		GroupWait: steward.Duration(time.Second), Actions: []string{steward.PolicyActionQuarantine}}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "tamper", Kind: steward.RuleThreshold, Severity: steward.AlertCritical, Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: steward.MetricTemperature, Aggregation: steward.AggLast,
			Window: steward.Duration(time.Minute), Operator: ">", Value: 80}}); err != nil {
		t.Fatal(err)
	}
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-Q"))
	id := op.Leaf.Subject.CommonName
	c, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := c.Publish(steward.Topic(id, steward.ChannelTelemetry), 1, false, []byte(`{"metrics":{"temperature":95}}`))
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	eventually(t, "device quarantined by the alert", func() bool {
		d, err := n.admin.GetDevice(ctx, id)
		return err == nil && d.Device.State == steward.StateQuarantined
	})
	d, err := n.admin.GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if d.Device.StateActor != "alert:tamper" {
		t.Fatalf("quarantined by %q, want alert:tamper", d.Device.StateActor)
	}

	// The group goes out once group_wait has passed.
	n.clock.Add(2 * time.Second)
	eventually(t, "group message on the webhook", func() bool {
		n.Notifier.Wake()
		return len(groups()) > 0
	})
	m := groups()[0]
	if m.Policy != "compromise" || m.Status != "firing" || m.GroupKey != `{rule="tamper"}` || len(m.Alerts) != 1 ||
		m.Alerts[0].DeviceID != id || m.Alerts[0].State != "firing" {
		t.Fatalf("group message: %+v", m)
	}
}
