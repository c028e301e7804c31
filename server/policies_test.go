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
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/notify"
)

// TestPolicyQuarantineEndToEnd: a threshold alert on a device whose
// policy has the quarantine action quarantines the device at once (the
// actor names the rule), and the policy's webhook receives the group
// message, signed, once group_wait has passed.
func TestPolicyQuarantineEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()

	const secret = "policy-hook-secret"
	var (
		mu       sync.Mutex
		received []steward.GroupMessage
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if !notify.Verify(secret, r.Header.Get("X-Steward-Signature"), r.Header.Get("X-Steward-Timestamp"), body, time.Now(), time.Minute) {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		var m steward.GroupMessage
		if err := json.Unmarshal(body, &m); err != nil || m.GroupKey == "" {
			http.Error(w, "not a group message", http.StatusBadRequest)
			return
		}
		mu.Lock()
		received = append(received, m)
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	ch, err := n.admin.CreateChannel(ctx, client.ChannelRequest{Name: "security", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: hook.URL, Secret: secret}})
	if err != nil {
		t.Fatal(err)
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
		mu.Lock()
		defer mu.Unlock()
		return len(received) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	m := received[0]
	if m.Policy != "compromise" || m.Status != "firing" || m.GroupKey != `{rule="tamper"}` || len(m.Alerts) != 1 ||
		m.Alerts[0].DeviceID != id || m.Alerts[0].State != "firing" {
		t.Fatalf("group message: %+v", m)
	}
}
