package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestBadTelemetryCounted sends, over MQTT with a paho client, bad
// telemetry between good messages: malformed JSON, a metric the model's
// schema does not allow, absurd timestamps, NaN and Inf, an oversized
// batch. Each is refused or dropped and counted on /metrics under its
// reason; every good message around them is stored.
func TestBadTelemetryCounted(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	if _, err := n.admin.PutTelemetrySchema(ctx, "gw-100", []string{"good.*"}); err != nil {
		t.Fatal(err)
	}
	op := n.enroll(t, mfr.Factory(t, "SN-BAD"))
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

	var batch strings.Builder
	batch.WriteString(`{"metrics":{`)
	for i := range 1001 {
		if i > 0 {
			batch.WriteByte(',')
		}
		fmt.Fprintf(&batch, `"good.m%d":%d`, i, i)
	}
	batch.WriteString(`}}`)
	farFuture := time.Now().AddDate(100, 0, 0).UnixMilli()

	series := map[string]string{
		"invalid":  `steward_mqtt_messages_refused_total{reason="invalid"}`,
		"tooLarge": `steward_mqtt_messages_refused_total{reason="too_large"}`,
		"window":   `steward_telemetry_samples_dropped_total{reason="window"}`,
		"schema":   `steward_telemetry_samples_dropped_total{reason="schema"}`,
	}
	before := map[string]float64{}
	text := n.scrapeMetrics(t)
	for k, s := range series {
		before[k], _ = sample(text, s)
	}

	bad := []struct {
		name    string
		payload string
	}{
		{"malformed JSON", `{"metrics":{"good.x":1`},
		{"not JSON at all", `hello`},
		{"NaN", `{"metrics":{"good.x":"NaN"}}`},
		{"Inf", `{"metrics":{"good.x":1e999}}`},
		{"negative timestamp", `{"ts":-5,"metrics":{"good.x":1}}`},
		{"timestamp a century ahead", fmt.Sprintf(`{"ts":%d,"metrics":{"good.x":1}}`, farFuture)},
		{"timestamp in 1970", `{"ts":1000,"metrics":{"good.x":1}}`},
		{"unknown metric for the model", `{"metrics":{"secret.rpm":1}}`},
		{"oversized batch", batch.String()},
	}
	var want []string
	for i, b := range bad {
		good := fmt.Sprintf("good.before%d", i)
		pub(steward.ChannelTelemetry, fmt.Sprintf(`{"metrics":{%q:%d}}`, good, i))
		want = append(want, good)
		pub(steward.ChannelTelemetry, b.payload) // MQTT 3.1.1: acknowledged and discarded
	}
	pub(steward.ChannelTelemetry, `{"metrics":{"good.last":1}}`)
	want = append(want, "good.last")
	slices.Sort(want)

	// The PUBACK of the last good message comes after its commit, and
	// acknowledgements go out in order: everything before it is settled.
	if got := n.latestMetrics(t, id); !slices.Equal(got, want) {
		t.Fatalf("stored %v, want exactly the good messages %v", got, want)
	}
	text = n.scrapeMetrics(t)
	for _, tc := range []struct {
		key  string
		want float64
	}{
		{"invalid", 5},  // malformed, not JSON, NaN, Inf, negative ts
		{"tooLarge", 1}, // the oversized batch
		{"window", 2},   // a century ahead, 1970
		{"schema", 1},   // secret.rpm
	} {
		got, ok := sample(text, series[tc.key])
		if !ok || got-before[tc.key] != tc.want {
			t.Errorf("%s went from %v to %v (present %v), want +%v", series[tc.key], before[tc.key], got, ok, tc.want)
		}
	}
	d, err := n.admin.GetDevice(ctx, id)
	if err != nil || d.State != steward.StateActive {
		t.Fatalf("device after bad input: %+v, %v; want still active", d, err)
	}
}
