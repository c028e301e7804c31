package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// quarantineEvents decodes the quarantine webhook bodies delivered so far.
func (w *webhook) quarantineEvents() []steward.QuarantineEvent {
	var out []steward.QuarantineEvent
	for _, b := range w.received() {
		var e steward.QuarantineEvent
		if json.Unmarshal(b, &e) == nil && e.Type != "" {
			out = append(out, e)
		}
	}
	return out
}

// waitQuarantineEvent waits for the webhook to receive an event of typ
// for the device, and returns it.
func (w *webhook) waitQuarantineEvent(t *testing.T, typ steward.QuarantineEventType, device string, skip int) steward.QuarantineEvent {
	t.Helper()
	var got steward.QuarantineEvent
	eventually(t, "webhook "+string(typ), func() bool {
		seen := 0
		for _, e := range w.quarantineEvents() {
			if e.Type == typ && e.DeviceID == device {
				if seen == skip {
					got = e
					return true
				}
				seen++
			}
		}
		return false
	})
	return got
}

// putPolicyRaw sends a PUT /api/v1/quarantine-policy body as is and
// returns the status.
func (n *node) putPolicyRaw(t *testing.T, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, n.APIURL()+"/api/v1/quarantine-policy", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.AdminToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode
}

// TestQuarantinePolicy: a real MQTT client over mTLS that keeps publishing
// to another device's topics is quarantined by the policy's acl_denied
// rule; the firewall webhook (a loopback receiver checking the HMAC) gets
// the quarantine, then an operator's release; a policy that takes
// telemetry away from quarantined devices is enforced on the connection;
// bad policies are refused and change nothing.
func TestQuarantinePolicy(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName
	other := n.enroll(t, mfr.Factory(t, "SN-2"))
	otherID := other.Leaf.Subject.CommonName
	fp := sha256.Sum256(op.Leaf.Raw)

	hook, ch := n.newWebhook(t, "firewall", "fw-secret")
	if code := n.putPolicyRaw(t, `{"rules": {"acl_denied": {"threshold": 5, "window": "10m"}}, "webhook_channel": "`+ch.ID+`"}`); code != http.StatusOK {
		t.Fatalf("PUT policy: %d", code)
	}
	pol, err := n.admin.QuarantinePolicy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if pol.Rules.ACLDenied != (steward.QuarantineRule{Enabled: true, Threshold: 5, Window: steward.Duration(10 * time.Minute)}) ||
		pol.Rules.AuthFailed != steward.DefaultQuarantinePolicy("").Rules.AuthFailed || pol.WebhookChannel != ch.ID {
		t.Fatalf("stored policy = %+v", pol)
	}

	connect := func(t *testing.T) (paho.Client, chan error, func(topic, payload string) error) {
		t.Helper()
		lost := make(chan error, 1)
		c, err := n.mqttClient(t, op, id, lost)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		pub := func(topic, payload string) error {
			tok := c.Publish(topic, 1, false, []byte(payload))
			if !tok.WaitTimeout(10 * time.Second) {
				return context.DeadlineExceeded
			}
			return tok.Error()
		}
		return c, lost, pub
	}
	waitLost := func(t *testing.T, lost chan error, what string) {
		t.Helper()
		select {
		case <-lost:
		case <-time.After(60 * time.Second):
			t.Fatalf("session not closed: %s", what)
		}
	}

	_, lost, pub := connect(t)
	if err := pub(steward.Topic(id, steward.ChannelAttributes), `{"model":"gw-100","firmware":"1.0.0","serial":"SN-1"}`); err != nil {
		t.Fatal(err)
	}
	eventually(t, "active", func() bool { d, err := n.admin.GetDevice(ctx, id); return err == nil && d.State == steward.StateActive })

	t.Run("probing foreign topics quarantines the device", func(t *testing.T) {
		for range 5 {
			_ = pub(steward.Topic(otherID, steward.ChannelTelemetry), `{"metrics":{"cpu":1}}`)
		}
		var d steward.DeviceDetail
		eventually(t, "quarantined by the policy", func() bool {
			d, err = n.admin.GetDevice(ctx, id)
			return err == nil && d.State == steward.StateQuarantined
		})
		if d.StateActor != steward.QuarantineActor || !strings.Contains(d.StateReason, "acl_denied") || !strings.Contains(d.StateReason, otherID) {
			t.Errorf("quarantined by %q for %q", d.StateActor, d.StateReason)
		}
		waitLost(t, lost, "after the quarantine")
		e := hook.waitQuarantineEvent(t, steward.QuarantineEventQuarantined, id, 0)
		if e.TenantID != steward.DefaultTenant || e.Actor != steward.QuarantineActor || e.Reason != d.StateReason || e.Serial != "SN-1" ||
			e.CertFingerprint != hex.EncodeToString(fp[:]) || !strings.HasPrefix(e.RemoteAddr, "127.0.0.1:") || e.At.IsZero() {
			t.Errorf("quarantine event = %+v", e)
		}
		ds, err := n.admin.ListDeliveries(ctx, steward.DeliveryFilter{ChannelID: ch.ID})
		if err != nil || len(ds) == 0 {
			t.Fatalf("delivery log: %+v, %v", ds, err)
		}
	})

	t.Run("an operator's release is sent too", func(t *testing.T) {
		if _, err := n.admin.Release(ctx, id); err != nil {
			t.Fatal(err)
		}
		e := hook.waitQuarantineEvent(t, steward.QuarantineEventReleased, id, 0)
		if !strings.HasPrefix(e.Actor, "token:") || e.DeviceID != id || e.CertFingerprint != hex.EncodeToString(fp[:]) {
			t.Errorf("release event = %+v", e)
		}
		d, err := n.admin.GetDevice(ctx, id)
		if err != nil || d.State != steward.StateActive {
			t.Fatalf("after release: %+v, %v", d.State, err)
		}
	})

	t.Run("the allowance follows the policy on the live connection", func(t *testing.T) {
		if _, err := n.admin.Quarantine(ctx, id, "under investigation"); err != nil {
			t.Fatal(err)
		}
		hook.waitQuarantineEvent(t, steward.QuarantineEventQuarantined, id, 1)
		if code := n.putPolicyRaw(t, `{"may_publish": ["attributes", "events", "update/status", "telemetry"], "webhook_channel": "`+ch.ID+`"}`); code != http.StatusOK {
			t.Fatalf("PUT policy: %d", code)
		}
		_, lost, pub := connect(t)
		if err := pub(steward.Topic(id, steward.ChannelTelemetry), `{"metrics":{"cpu":0.5}}`); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a quarantined device's telemetry, allowed", func() bool {
			s, _ := n.admin.LatestTelemetry(ctx, id)
			return hasMetric(s, "cpu")
		})
		if code := n.putPolicyRaw(t, `{"may_publish": ["attributes", "events"], "webhook_channel": "`+ch.ID+`"}`); code != http.StatusOK {
			t.Fatalf("PUT policy: %d", code)
		}
		waitLost(t, lost, "after the allowance shrank")
		_, _, pub = connect(t)
		_ = pub(steward.Topic(id, steward.ChannelTelemetry), `{"metrics":{"temperature":99}}`)
		_ = pub(steward.Topic(id, steward.ChannelUpdateStatus), `{}`)
		eventually(t, "quarantine_refused events for telemetry and update/status", func() bool {
			evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id, Kind: steward.SecQuarantineRefused})
			var tel, upd bool
			for _, e := range evs {
				tel = tel || strings.Contains(e.Detail, "/telemetry")
				upd = upd || strings.Contains(e.Detail, "/update/status")
			}
			return tel && upd
		})
		if s, _ := n.admin.LatestTelemetry(ctx, id); hasMetric(s, "temperature") {
			t.Fatalf("refused telemetry stored: %v", s)
		}
	})

	t.Run("bad policies are refused and change nothing", func(t *testing.T) {
		before, err := n.admin.QuarantinePolicy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for name, body := range map[string]string{
			"unknown channel":         `{"may_publish": ["attributes", "shell"]}`,
			"configuration":           `{"may_subscribe": ["update/job", "twin/desired"]}`,
			"negative threshold":      `{"rules": {"auth_failed": {"threshold": -3}}}`,
			"bad window":              `{"rules": {"acl_denied": {"window": "soon"}}}`,
			"unknown webhook channel": `{"webhook_channel": "ch-nosuch"}`,
			"unknown field":           `{"may_publish": [], "allow_everything": true}`,
			"malformed JSON":          `{"may_publish": [`,
		} {
			if code := n.putPolicyRaw(t, body); code != http.StatusBadRequest {
				t.Errorf("%s: status %d, want 400", name, code)
			}
		}
		after, err := n.admin.QuarantinePolicy(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("a refused policy changed it: %+v, then %+v", before, after)
		}
	})

	t.Run("policy changes are audited with before and after", func(t *testing.T) {
		recs, _, err := n.admin.SearchAudit(ctx, client.AuditQuery{Action: "quarantine_policy.update"})
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 3 {
			t.Fatalf("%d quarantine_policy.update records, want 3", len(recs))
		}
		for _, r := range recs {
			if len(r.Before) == 0 || len(r.After) == 0 || !strings.HasPrefix(r.Actor, "token:") || bytes.Equal(r.Before, r.After) {
				t.Errorf("audit record %+v (before %s, after %s)", r, r.Before, r.After)
			}
		}
	})
}

func hasMetric(s []steward.Sample, metric string) bool {
	for _, x := range s {
		if x.Metric == metric {
			return true
		}
	}
	return false
}
