package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/config"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/twin"
)

// settings is a device's configuration as its handlers applied it.
type settings struct {
	mu     sync.Mutex
	values map[string]string
}

func (s *settings) get(k string) string { s.mu.Lock(); defer s.mu.Unlock(); return s.values[k] }

// handlers are the device's: interval must be a positive whole number, log
// any text; there is no handler for any other key.
func (s *settings) handlers() map[string]config.Handler {
	set := config.HandlerFunc(func(k string, v json.RawMessage) error {
		if k == "interval" && v != nil {
			var n int
			if err := json.Unmarshal(v, &n); err != nil || n <= 0 {
				return fmt.Errorf("interval %s: want a positive whole number", v)
			}
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if v == nil {
			delete(s.values, k)
		} else {
			s.values[k] = string(v)
		}
		return nil
	})
	return map[string]config.Handler{"interval": set, "log": set}
}

// runTwinAgent starts the real agent with configuration handlers, keeping
// its state in dir.
func (n *node) runTwinAgent(t *testing.T, factory tls.Certificate, dir string, s *settings) (*agent.Agent, func()) {
	t.Helper()
	a, err := agent.New(agent.Config{
		ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool, FactoryCert: factory, StateDir: dir,
		Model: "gw-100", Firmware: "1.1.0", Hardware: "revB",
		Attributes:        func() map[string]any { return map[string]any{"os": "test"} },
		Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.1} },
		TelemetryInterval: time.Second,
		BackoffMin:        50 * time.Millisecond, BackoffMax: time.Second,
		ConfigHandlers: s.handlers(),
		Clock:          steward.SystemClock{},
		Logger:         slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return a, stop
}

// TestTwinEndToEnd drives configuration through a real node and the real
// agent over MQTT/TLS: desired → applied by the device's handlers →
// reported → in sync; a stale version and a schema-invalid change refused;
// a key the device cannot apply → drifted after the grace period, flagged,
// counted and signalled; fixed → drift cleared; the applied state survives
// an agent restart.
func TestTwinEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.TwinGrace = time.Minute })
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	dev := &settings{values: map[string]string{}}
	dir := t.TempDir()
	factory := mfr.Factory(t, "SN-T1")
	a, stop := n.runTwinAgent(t, factory, dir, dev)
	id := n.waitState(t, a, steward.StateActive).ID

	base, err := n.admin.CreateConfigTemplate(ctx, client.ConfigTemplateRequest{Name: "base", Layer: steward.LayerBase})
	if err != nil {
		t.Fatal(err)
	}
	v1, err := n.admin.CreateConfigVersion(ctx, base.ID, client.ConfigVersionRequest{
		Document: json.RawMessage(`{"interval": 30, "log": "info"}`),
		Schema:   json.RawMessage(`{"type": "object", "properties": {"interval": {"type": "integer", "minimum": 1}, "log": {"enum": ["debug", "info", "warn"]}}}`),
		Message:  "first configuration"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(v1.Author, "token:") || v1.Version != 1 {
		t.Fatalf("version %+v", v1)
	}
	model, err := n.admin.CreateConfigTemplate(ctx, client.ConfigTemplateRequest{Name: "gateways", Layer: steward.LayerModel, Selector: "gw-100"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateConfigVersion(ctx, model.ID, client.ConfigVersionRequest{Document: json.RawMessage(`{"interval": 15}`), Message: "gateways report faster"}); err != nil {
		t.Fatal(err)
	}
	tw, err := n.admin.GetTwin(ctx, id)
	if err != nil || tw.DesiredVersion != 0 {
		t.Fatalf("twin before any change: %+v %v", tw, err)
	}

	// Desired → applied → reported.
	zero := int64(0)
	tw, err = n.admin.PatchTwin(ctx, id, json.RawMessage(`{"log": "debug"}`), &zero)
	if err != nil {
		t.Fatal(err)
	}
	if tw.DesiredVersion != 1 || !steward.JSONEqual(tw.Desired, json.RawMessage(`{"interval": 15, "log": "debug"}`)) {
		t.Fatalf("desired %+v %s", tw, tw.Desired)
	}
	eventually(t, "the device to report the desired state", func() bool {
		tw, err = n.admin.GetTwin(ctx, id)
		return err == nil && tw.ReportedVersion == 1 && tw.InSync()
	})
	if dev.get("interval") != "15" || dev.get("log") != `"debug"` {
		t.Fatalf("handlers applied %v", dev.values)
	}

	// The change is in the audit log, with the desired state after it.
	recs, _, err := n.admin.SearchAudit(ctx, client.AuditQuery{Action: "twin.update", Target: "device:" + id})
	if err != nil || len(recs) != 1 || !strings.Contains(string(recs[0].After), `"desired_version":1`) || recs[0].Actor == "" {
		t.Fatalf("audit of the change: %+v %v", recs, err)
	}

	// A change against a stale version is refused (412), and so is one
	// that breaks the schema (400, with the path); neither changes the twin.
	_, err = n.admin.PatchTwin(ctx, id, json.RawMessage(`{"log": "warn"}`), &zero)
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != 412 || ce.Code != steward.CodeFailedPrecondition {
		t.Fatalf("stale change: %v", err)
	}
	_, err = n.admin.PatchTwin(ctx, id, json.RawMessage(`{"interval": "often"}`), nil)
	if !errors.As(err, &ce) || ce.Status != 400 || !strings.Contains(ce.Detail, "/interval") {
		t.Fatalf("schema-invalid change: %v", err)
	}
	if tw, _ := n.admin.GetTwin(ctx, id); tw.DesiredVersion != 1 {
		t.Fatalf("a refused change was written: %+v", tw)
	}

	// A key the device has no handler for: reported with its error, out of
	// sync, flagged once the grace period is over.
	one := int64(1)
	if _, err := n.admin.PatchTwin(ctx, id, json.RawMessage(`{"ntp": {"servers": ["pool.ntp.org"]}}`), &one); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the device to report the key it cannot apply", func() bool {
		tw, err = n.admin.GetTwin(ctx, id)
		return err == nil && tw.ReportedVersion == 2 && tw.ReportErrors["ntp"] != ""
	})
	if tw.InSync() || tw.DriftSince == nil {
		t.Fatalf("a partly applied state is in sync: %+v", tw)
	}
	if ch, err := n.Twins.CheckDrift(ctx); err != nil || len(ch) != 0 {
		t.Fatalf("flagged inside the grace period: %+v %v", ch, err)
	}
	n.clock.Add(2 * time.Minute)
	eventually(t, "the drift check to flag the device", func() bool {
		_, err := n.Twins.CheckDrift(ctx)
		d, derr := n.admin.Drift(ctx, "", 0)
		return err == nil && derr == nil && d.Count == 1 && len(d.Items) == 1 && d.Items[0].DeviceID == id && d.Items[0].Drifted
	})
	evs, err := n.admin.ListDeviceEvents(ctx, id, steward.DeviceEventFilter{Type: twin.EventDrift})
	if err != nil || len(evs) != 1 {
		t.Fatalf("drift event: %+v %v", evs, err)
	}

	// Fixed: the key is removed, the device is in sync, the drift clears.
	two := int64(2)
	if _, err := n.admin.PatchTwin(ctx, id, json.RawMessage(`{"ntp": null}`), &two); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the drift to clear", func() bool {
		_, err := n.Twins.CheckDrift(ctx)
		tw, terr := n.admin.GetTwin(ctx, id)
		d, derr := n.admin.Drift(ctx, "", 0)
		return err == nil && terr == nil && derr == nil && tw.ReportedVersion == 3 && tw.InSync() && !tw.Drifted && d.Count == 0
	})

	// A diff between the model layer's versions reads as paths.
	v2, err := n.admin.CreateConfigVersion(ctx, base.ID, client.ConfigVersionRequest{Document: json.RawMessage(`{"interval": 30, "log": "warn", "mqtt": {"keepalive": 60}}`), Message: "quieter"})
	if err != nil {
		t.Fatal(err)
	}
	diff, err := n.admin.DiffConfigVersion(ctx, v2.ID, "")
	if err != nil || len(diff) != 2 || diff[0].Path != "/log" || diff[1].Path != "/mqtt" {
		t.Fatalf("diff %+v %v", diff, err)
	}

	// The applied state survives a restart of the agent.
	stop()
	a, _ = n.runTwinAgent(t, factory, dir, &settings{values: map[string]string{}})
	eventually(t, "the restarted agent to read its applied state", func() bool {
		st, ok := a.ConfigState()
		return ok && st.Version == 3 && string(st.Values["log"]) == `"debug"`
	})
}

// TestTwinDevicePlane checks the twin topics on the device plane with a
// plain MQTT client: a device may subscribe only to its own desired state
// and publish only its own reported state; a malformed or oversized report
// is refused with a security event and changes nothing.
func TestTwinDevicePlane(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-P1"))
	id := op.Leaf.Subject.CommonName
	other := n.enroll(t, mfr.Factory(t, "SN-P2")).Leaf.Subject.CommonName

	c, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(topic string, payload []byte) {
		t.Helper()
		tok := c.Publish(topic, 1, false, payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish on %s: %v", topic, tok.Error())
		}
	}
	pub(steward.Topic(id, steward.ChannelAttributes), []byte(`{"model":"gw-100","firmware":"1.0.0"}`))
	eventually(t, "active", func() bool { d, err := n.admin.GetDevice(ctx, id); return err == nil && d.State == steward.StateActive })

	// Subscriptions: its own desired state only.
	got := make(chan paho.Message, 4)
	sub := func(topic string) byte {
		tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) { got <- m })
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("no SUBACK")
		}
		return tok.(*paho.SubscribeToken).Result()[topic]
	}
	for _, topic := range []string{steward.Topic(other, steward.ChannelTwinDesired), steward.Topic(id, steward.ChannelTwinReported), "dev/+/twin/desired"} {
		if code := sub(topic); code != 0x80 {
			t.Errorf("subscription to %s granted (%#x)", topic, code)
		}
	}
	eventually(t, "three acl_denied events", func() bool { return len(securityEvents(t, n, id, steward.SecACLDenied)) == 3 })
	if code := sub(steward.Topic(id, steward.ChannelTwinDesired)); code != 1 {
		t.Fatalf("own desired state refused (%#x)", code)
	}
	// Its desired state arrives, retained.
	tw, err := n.admin.PatchTwin(ctx, id, json.RawMessage(`{"interval": 10}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		var msg steward.TwinDesiredMessage
		if err := json.Unmarshal(m.Payload(), &msg); err != nil || msg.Version != tw.DesiredVersion || !steward.JSONEqual(msg.State, json.RawMessage(`{"interval": 10}`)) {
			t.Fatalf("desired message %s: %v", m.Payload(), err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("desired state not delivered")
	}

	// Publishing: its own reported state only. Another device's twin, and
	// its own desired state (server to device), are refused.
	pub(steward.Topic(other, steward.ChannelTwinReported), []byte(`{"version": 0, "state": {}}`))
	pub(steward.Topic(id, steward.ChannelTwinDesired), []byte(`{"version": 9, "state": {}}`))
	eventually(t, "two more acl_denied events", func() bool { return len(securityEvents(t, n, id, steward.SecACLDenied)) == 5 })
	if _, err := n.admin.GetTwin(ctx, other); err != nil {
		t.Fatal(err)
	}
	if tw2, _ := n.Store.GetTwin(ctx, steward.DefaultTenant, other); tw2.Rev != 0 {
		t.Fatalf("another device's twin was written: %+v", tw2)
	}

	// Malformed and oversized reports: refused, recorded, nothing written.
	rev := mustTwin(t, n, id).Rev
	pub(steward.Topic(id, steward.ChannelTwinReported), []byte(`{"version": 1, "state": "not an object"}`))
	pub(steward.Topic(id, steward.ChannelTwinReported), []byte(`{"version": 1, "state": {"blob": "`+strings.Repeat("x", 100<<10)+`"}}`))
	eventually(t, "malformed and oversized reports recorded", func() bool {
		return len(securityEvents(t, n, id, steward.SecMalformedPayload)) == 1 && len(securityEvents(t, n, id, steward.SecPayloadTooLarge)) == 1
	})
	if got := mustTwin(t, n, id); got.Rev != rev || got.ReportedVersion != 0 {
		t.Fatalf("a refused report changed the twin: %+v", got)
	}
	// A good report is taken.
	pub(steward.Topic(id, steward.ChannelTwinReported), []byte(`{"version": 1, "state": {"interval": 10}}`))
	eventually(t, "the report stored", func() bool { got := mustTwin(t, n, id); return got.ReportedVersion == 1 && got.InSync() })
}

func mustTwin(t *testing.T, n *node, id string) steward.Twin {
	t.Helper()
	tw, err := n.Store.GetTwin(context.Background(), steward.DefaultTenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return tw
}

func securityEvents(t *testing.T, n *node, id string, kind steward.SecurityEventKind) []steward.SecurityEvent {
	t.Helper()
	evs, err := n.admin.ListSecurityEvents(context.Background(), steward.SecurityEventFilter{DeviceID: id, Kind: kind})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}
