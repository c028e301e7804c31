package server

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// latestMetrics is the sorted names of a device's latest values.
func (n *node) latestMetrics(t *testing.T, id string) []string {
	t.Helper()
	s, err := n.admin.LatestTelemetry(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, x := range s {
		out = append(out, x.Metric)
	}
	slices.Sort(out)
	return out
}

// TestTelemetrySchemaEndToEnd sets a telemetry schema through the API and
// sends telemetry over MQTT with a paho client and with the real agent:
// what the schema does not allow is not stored and is counted on /metrics,
// the rest of each message is; deleting the schema lifts it at once.
func TestTelemetrySchemaEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	if v, ok := sample(n.scrapeMetrics(t), `steward_telemetry_samples_dropped_total{reason="schema"}`); !ok || v != 0 {
		t.Fatalf("before any device: schema drops %v (present %v), want 0", v, ok)
	}
	if _, err := n.admin.PutTelemetrySchema(ctx, "gw-100", []string{steward.MetricCPU, "biz.*"}); err != nil {
		t.Fatal(err)
	}

	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName
	c, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	pub := func(channel steward.Channel, payload string) {
		t.Helper()
		tok := c.Publish(steward.Topic(id, channel), 1, false, []byte(payload))
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s: %v", channel, tok.Error())
		}
	}
	pub(steward.ChannelAttributes, `{"model":"gw-100","firmware":"1.0.0"}`)
	eventually(t, "active", func() bool { d, err := n.admin.GetDevice(ctx, id); return err == nil && d.State == steward.StateActive })

	// The PUBACK comes after the commit, so what is stored is there now.
	pub(steward.ChannelTelemetry, `{"metrics":{"cpu":0.5,"temperature":40,"biz.orders":3,"net.rssi":-70}}`)
	if got := n.latestMetrics(t, id); !slices.Equal(got, []string{"biz.orders", "cpu"}) {
		t.Fatalf("stored %v, want [biz.orders cpu]", got)
	}
	if v, _ := sample(n.scrapeMetrics(t), `steward_telemetry_samples_dropped_total{reason="schema"}`); v != 2 {
		t.Fatalf("schema drops %v, want 2", v)
	}

	// The real agent sends the standard health metrics; under the schema
	// only cpu is kept.
	a := n.runAgent(t, mfr.Factory(t, "SN-2"), "gw-100", "1.1.0")
	d := n.waitState(t, a, steward.StateActive)
	eventually(t, "agent telemetry", func() bool { return slices.Equal(n.latestMetrics(t, d.ID), []string{"cpu"}) })
	if v, _ := sample(n.scrapeMetrics(t), `steward_telemetry_samples_dropped_total{reason="schema"}`); v < 3 {
		t.Fatalf("schema drops %v after the agent's telemetry, want at least 3", v)
	}

	// Deleted through this node: lifted at once, not after the cache TTL.
	if err := n.admin.DeleteTelemetrySchema(ctx, "gw-100"); err != nil {
		t.Fatal(err)
	}
	pub(steward.ChannelTelemetry, `{"metrics":{"net.rssi":-71}}`)
	if got := n.latestMetrics(t, id); !slices.Contains(got, "net.rssi") {
		t.Fatalf("after deleting the schema stored %v, want net.rssi too", got)
	}
	eventually(t, "agent temperature", func() bool { return slices.Contains(n.latestMetrics(t, d.ID), "temperature") })
}
