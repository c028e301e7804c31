package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestDeviceEventsAndPresence walks device events and the presence
// history end to end: the real agent reports an event over MQTT and it is
// read back from the API; a raw MQTT client sends a malformed message,
// which is refused and not stored, and a good batch, which is; then it
// disconnects and reconnects, and the API shows both in the presence
// history and its summary.
func TestDeviceEventsAndPresence(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)

	t.Run("the agent's event is stored and listed", func(t *testing.T) {
		a := n.runAgent(t, mfr.Factory(t, "SN-EV-1"), "gw-100", "1.1.0")
		d := n.waitState(t, a, steward.StateActive)
		when := time.Now().UTC().Add(-time.Minute).Truncate(time.Millisecond)
		// PublishEvent returns once the broker acknowledged the message,
		// which it does only once the event is durable.
		eventually(t, "event published", func() bool {
			return a.PublishEvent(ctx, agent.Event{TS: when, Type: "reboot", Severity: "warning", Message: "watchdog"}) == nil
		})
		evs, err := n.admin.ListDeviceEvents(ctx, d.ID, steward.DeviceEventFilter{Type: "reboot"})
		if err != nil || len(evs) != 1 {
			t.Fatalf("events %+v %v", evs, err)
		}
		ev := evs[0]
		if ev.DeviceID != d.ID || ev.TenantID != steward.DefaultTenant || ev.Severity != steward.SeverityWarning || ev.Message != "watchdog" ||
			!ev.At.Equal(when) || ev.Received.Before(when) {
			t.Fatalf("event %+v", ev)
		}
		if evs, err := n.admin.ListDeviceEvents(ctx, d.ID, steward.DeviceEventFilter{MinSeverity: steward.SeverityError}); err != nil || len(evs) != 0 {
			t.Fatalf("severity filter: %+v %v", evs, err)
		}
		// Another tenant sees nothing of it.
		created, err := n.admin.CreateTenant(ctx, "beta", "Beta")
		if err != nil {
			t.Fatal(err)
		}
		beta := client.New(n.APIURL(), created.Token.Secret, nil)
		if _, err := beta.ListDeviceEvents(ctx, d.ID, steward.DeviceEventFilter{}); !steward.IsNotFound(err) {
			t.Fatalf("another tenant's events: %v", err)
		}
		if _, _, err := beta.DevicePresence(ctx, d.ID, time.Time{}, time.Time{}, 0); !steward.IsNotFound(err) {
			t.Fatalf("another tenant's presence: %v", err)
		}
	})

	t.Run("malformed refused, batch stored, presence recorded", func(t *testing.T) {
		op := n.enroll(t, mfr.Factory(t, "SN-EV-2"))
		id := op.Leaf.Subject.CommonName
		c, err := n.mqttClient(t, op, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		pub := func(c paho.Client, payload string) {
			t.Helper()
			tok := c.Publish(steward.Topic(id, steward.ChannelEvents), 1, false, []byte(payload))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %s: %v", payload, tok.Error())
			}
		}
		// MQTT 3.1.1 has no negative PUBACK: a refused message is
		// acknowledged and dropped. The batch after it is acknowledged
		// after it, in order, so once it is, the malformed one was handled.
		pub(c, `{"severity":"error","message":"no type"}`)
		pub(c, `{"type":"ok","message":"kept"} trailing`)
		pub(c, `[{"type":"fw.update","severity":"notice","message":"1.1.0","job":"j-7"},{"type":"crash","severity":"critical","pid":4242}]`)
		evs, err := n.admin.ListDeviceEvents(ctx, id, steward.DeviceEventFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.Type+"/"+string(e.Severity)+"/"+fmt.Sprint(e.Fields))
		}
		if len(evs) != 2 || evs[0].Fields["pid"] == nil || fmt.Sprint(evs[1].Fields["job"]) != "j-7" {
			t.Fatalf("stored events %v, want the batch's two only", got)
		}

		eventually(t, "online", func() bool {
			items, sum, err := n.admin.DevicePresence(ctx, id, time.Time{}, time.Time{}, 0)
			return err == nil && sum.Online && len(items) == 1
		})
		c.Disconnect(250)
		eventually(t, "offline", func() bool {
			items, sum, err := n.admin.DevicePresence(ctx, id, time.Time{}, time.Time{}, 0)
			return err == nil && !sum.Online && len(items) == 2 && !items[0].Online
		})
		if _, err := n.mqttClient(t, op, id, nil); err != nil {
			t.Fatal(err)
		}
		var items []steward.PresenceEvent
		var sum steward.PresenceSummary
		eventually(t, "online again", func() bool {
			items, sum, err = n.admin.DevicePresence(ctx, id, time.Time{}, time.Time{}, 0)
			return err == nil && sum.Online && len(items) == 3
		})
		var seq []string
		for _, p := range items {
			seq = append(seq, fmt.Sprint(p.Online))
			if p.DeviceID != id || p.RemoteAddr == "" || p.At.IsZero() {
				t.Errorf("presence event %+v", p)
			}
		}
		if fmt.Sprint(seq) != "[true false true]" || !items[0].At.After(items[2].At) && !items[0].At.Equal(items[2].At) {
			t.Fatalf("presence history (newest first) %v", items)
		}
		if sum.Connects != 2 || sum.Disconnects != 1 || sum.Reconnects != 1 || sum.ReconnectsPerHour != 1.0/24 {
			t.Fatalf("summary %+v", sum)
		}
	})
}
