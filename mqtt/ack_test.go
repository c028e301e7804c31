package mqtt

import (
	"context"
	"errors"
	"testing"
	"time"

	packets5 "github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward"
)

// TestPubackAfterHandlerInOrder holds the handler's acks and releases them
// out of order, across two channels (two handlers). A PINGREQ is the
// barrier: mochi answers it on the read loop after the PUBLISHes before it,
// so a PUBACK written early would come before the PINGRESP.
func TestPubackAfterHandlerInOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tel, ev := newInbox(true), newInbox(true)
	h.handle(steward.ChannelTelemetry, tel)
	h.handle(steward.ChannelEvents, ev)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			id := newDeviceID() // not parallel: the inboxes are shared
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			t0, e0 := len(tel.snapshot()), len(ev.snapshot())
			c.publish(topic(id, steward.ChannelTelemetry), 1, 1, []byte(`{"n":1}`))
			c.publish(topic(id, steward.ChannelEvents), 1, 2, []byte(`{"n":2}`))
			c.publish(topic(id, steward.ChannelTelemetry), 1, 3, []byte(`{"n":3}`))
			c.publish(topic(id, steward.ChannelEvents), 1, 4, []byte(`{"n":4}`))
			tel.wait(t, 2)
			ev.wait(t, 2)
			c.ping()
			c.expect(packets5.PINGRESP, 0, 0) // no PUBACK before the handlers acked

			ev.ack(e0+1, nil) // message 4
			ev.ack(e0, nil)   // message 2
			c.ping()
			c.expect(packets5.PINGRESP, 0, 0) // message 1 still holds the line

			tel.ack(t0, nil) // message 1: releases 1 and 2
			c.expect(packets5.PUBACK, 1, 0)
			c.expect(packets5.PUBACK, 2, 0)
			c.ping()
			c.expect(packets5.PINGRESP, 0, 0)

			tel.ack(t0+1, nil) // message 3: releases 3 and 4
			c.expect(packets5.PUBACK, 3, 0)
			c.expect(packets5.PUBACK, 4, 0)
		})
	}
}

// TestHandlerErrors: a message refused for good (invalid, not permitted)
// is acknowledged — with its reason code in MQTT 5 — so that the client
// does not resend a poison message forever; a message that could not be
// made durable (unavailable, internal) is not acknowledged in either
// version, and the session ends (server busy in MQTT 5) so that the
// client reconnects and sends it again. The acks settled behind it are
// written first.
func TestHandlerErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		err   error
		acked bool
		v5    byte
	}{
		{"unavailable", steward.Errorf(steward.CodeUnavailable, "store busy"), false, 0},
		{"internal", errors.New("disk on fire"), false, 0},
		{"invalid", steward.Errorf(steward.CodeInvalid, "not JSON"), true, 0x99},
		{"forbidden", steward.Errorf(steward.CodePermissionDenied, "no"), true, 0x87},
		{"too large", steward.Errorf(steward.CodeTooLarge, "big"), true, 0x95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, nil)
			in := newInbox(true)
			h.handle(steward.ChannelTelemetry, in)
			for i, v := range versions {
				id := newDeviceID()
				c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
				if err != nil {
					t.Fatal(err)
				}
				c.publish(topic(id, steward.ChannelTelemetry), 1, 10, []byte(`{}`))
				c.publish(topic(id, steward.ChannelTelemetry), 1, 11, []byte(`{}`))
				in.wait(t, 2)
				// The second first: its ack waits behind the first's.
				in.ack(2*i+1, nil)
				in.ack(2*i, tt.err)
				if tt.acked {
					code := byte(0)
					if v.v5 {
						code = tt.v5
					}
					c.expect(packets5.PUBACK, 10, code)
				}
				c.expect(packets5.PUBACK, 11, 0)
				if !tt.acked {
					code, saw := c.expectClosed()
					if v.v5 && (!saw || code != packets.ErrServerBusy.Code) {
						t.Fatalf("MQTT 5: DISCONNECT %#x (seen %v), want server busy", code, saw)
					}
				}
			}
		})
	}
}

// TestPahoClientsWaitForHandler: a paho publish completes only after the
// handler acknowledged.
func TestPahoClientsWaitForHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(true)
	h.handle(steward.ChannelTelemetry, in)

	id3 := newDeviceID()
	c3, err := h.connect3(t, h.ca.Device(t, id3), id3, nil)
	if err != nil {
		t.Fatal(err)
	}
	tok := c3.Publish(topic(id3, steward.ChannelTelemetry), 1, false, []byte(`{"v":3}`))
	in.wait(t, 1)
	select {
	case <-tok.Done():
		t.Fatal("paho 3.1.1 publish completed before the handler acked")
	default:
	}
	in.ack(0, nil)
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}

	id5 := newDeviceID()
	c5, _, err := h.connect5(t, h.ca.Device(t, id5), id5, paho5.ClientConfig{})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c5.Publish(context.Background(), &paho5.Publish{Topic: topic(id5, steward.ChannelTelemetry), QoS: 1, Payload: []byte(`{"v":5}`)})
		done <- err
	}()
	in.wait(t, 1)
	select {
	case <-done:
		t.Fatal("paho 5 publish completed before the handler acked")
	default:
	}
	in.ack(1, nil)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitLimit):
		t.Fatal("paho 5 publish never completed")
	}
}

// TestReceiveMaximumBackPressure: with 4 acks owed, the broker reads
// nothing more from the client until one is settled.
func TestReceiveMaximumBackPressure(t *testing.T) {
	t.Parallel()
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, func(c *Config) { c.ReceiveMaximum = 4 })
			in := newInbox(true)
			h.handle(steward.ChannelTelemetry, in)
			id := newDeviceID()
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			for i := uint16(1); i <= 6; i++ {
				c.publish(topic(id, steward.ChannelTelemetry), 1, i, []byte(`{}`))
			}
			c.ping()
			in.wait(t, 4)
			in.ack(0, nil)
			// Had the broker read on, the PINGRESP would come first.
			c.expect(packets5.PUBACK, 1, 0)
			in.wait(t, 1) // message 5, read once room was made
			in.ack(1, nil)
			c.expect(packets5.PUBACK, 2, 0)
			in.wait(t, 1) // message 6; then the PINGREQ is read
			c.expect(packets5.PINGRESP, 0, 0)
			for i := 2; i < 6; i++ {
				in.ack(i, nil)
			}
			for i := uint16(3); i <= 6; i++ {
				c.expect(packets5.PUBACK, i, 0)
			}
		})
	}
}

// TestQoS2RecAfterHandler: PUBREC waits for the handler like PUBACK; the
// flow then completes through mochi (PUBREL → PUBCOMP).
func TestQoS2RecAfterHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(true)
	h.handle(steward.ChannelEvents, in)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			id := newDeviceID()
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			c.publish(topic(id, steward.ChannelEvents), 2, 7, []byte(`{"type":"reboot"}`))
			in.wait(t, 1)
			c.ping()
			c.expect(packets5.PINGRESP, 0, 0)
			in.ack(len(in.snapshot())-1, nil)
			c.expect(packets5.PUBREC, 7, 0)
			c.pubrel(7)
			c.expect(packets5.PUBCOMP, 7, 0)
			// The packet ID is free again.
			c.publish(topic(id, steward.ChannelEvents), 1, 7, []byte(`{}`))
			in.wait(t, 1)
			in.ack(len(in.snapshot())-1, nil)
			c.expect(packets5.PUBACK, 7, 0)
		})
	}
	t.Run("paho5", func(t *testing.T) {
		id := newDeviceID()
		c5, _, err := h.connect5(t, h.ca.Device(t, id), id, paho5.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() {
			pr, err := c5.Publish(context.Background(), &paho5.Publish{Topic: topic(id, steward.ChannelEvents), QoS: 2, Payload: []byte(`{}`)})
			if err == nil && pr.ReasonCode != 0 {
				err = errors.New("reason code " + string(rune('0'+pr.ReasonCode)))
			}
			done <- err
		}()
		in.wait(t, 1)
		in.ack(len(in.snapshot())-1, nil)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(waitLimit):
			t.Fatal("QoS 2 publish never completed")
		}
	})
}

func TestTakeoverKeepsDeviceOnline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := newDeviceID()
	cert := h.ca.Device(t, id)
	a, _, err := h.dialRaw(t, cert, id, true)
	if err != nil {
		t.Fatal(err)
	}
	if p := h.waitPresence(t, id); !p.Online || p.RemoteAddr != a.conn.LocalAddr().String() {
		t.Fatalf("presence %+v, want online from A", p)
	}
	b, _, err := h.dialRaw(t, cert, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if code, saw := a.expectClosed(); !saw || code != 0x8E {
		t.Fatalf("A: DISCONNECT %v %#x, want session taken over", saw, code)
	}
	if p := h.waitPresence(t, id); !p.Online || p.RemoteAddr != b.conn.LocalAddr().String() {
		t.Fatalf("presence %+v, want online from B", p)
	}
	// B still works: the old session's end did not touch it.
	b.publish(topic(id, steward.ChannelEvents), 1, 1, []byte(`{}`))
	b.expect(packets5.PUBACK, 1, 0)
	_ = b.conn.Close()
	// The next change is B going offline: A's end was never reported.
	if p := h.waitPresence(t, id); p.Online || p.RemoteAddr != b.conn.LocalAddr().String() {
		t.Fatalf("presence %+v, want offline from B", p)
	}
}

func TestSend(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	send := func(m steward.OutboundMessage) error { return h.bus.Send(context.Background(), m) }

	t.Run("reaches subscribed devices", func(t *testing.T) {
		t.Parallel()
		id3, id5 := newDeviceID(), newDeviceID()
		got3 := make(chan []byte, 1)
		c3, err := h.connect3(t, h.ca.Device(t, id3), id3, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok := c3.Subscribe(topic(id3, steward.ChannelCmdReq), 1, func(_ paho3.Client, m paho3.Message) { got3 <- m.Payload() })
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		got5 := make(chan []byte, 1)
		c5, _, err := h.connect5(t, h.ca.Device(t, id5), id5, paho5.ClientConfig{
			OnPublishReceived: []func(paho5.PublishReceived) (bool, error){func(r paho5.PublishReceived) (bool, error) {
				got5 <- r.Packet.Payload
				return true, nil
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c5.Subscribe(context.Background(), &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topic(id5, steward.ChannelCmdReq), QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		for id, ch := range map[string]chan []byte{id3: got3, id5: got5} {
			if err := send(steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: steward.ChannelCmdReq, Payload: []byte(`{"id":"c1","name":"ping"}`), QoS: 1}); err != nil {
				t.Fatalf("send: %v", err)
			}
			select {
			case p := <-ch:
				if string(p) != `{"id":"c1","name":"ping"}` {
					t.Fatalf("device got %q", p)
				}
			case <-time.After(waitLimit):
				t.Fatalf("device %s got nothing", id)
			}
		}
	})
	t.Run("retained desired twin waits for the device", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		if err := send(steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: steward.ChannelTwinDesired, Payload: []byte(`{"version":3}`), QoS: 1, Retain: true}); err != nil {
			t.Fatalf("send retained to an offline device: %v", err)
		}
		c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, true)
		if err != nil {
			t.Fatal(err)
		}
		c.subscribe(1, topic(id, steward.ChannelTwinDesired))
		if p, err := c.read(); err != nil || p.typ != packets5.SUBACK {
			t.Fatalf("SUBACK %v %v", p, err)
		}
		p, err := c.read()
		if err != nil || p.typ != packets5.PUBLISH || p.topic != topic(id, steward.ChannelTwinDesired) || string(p.body) != `{"version":3}` {
			t.Fatalf("retained message %v %v", p, err)
		}
	})
	t.Run("quarantined device gets no commands", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, true)
		if err != nil {
			t.Fatal(err)
		}
		c.subscribe(1, topic(id, steward.ChannelCmdReq), topic(id, steward.ChannelUpdateJob))
		c.read()
		if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: testTenant, DeviceID: id, State: steward.StateQuarantined}); err != nil {
			t.Fatal(err)
		}
		for _, ch := range []steward.Channel{steward.ChannelCmdReq, steward.ChannelUpdateJob} {
			if err := send(steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: ch, Payload: []byte(string(ch)), QoS: 0}); err != nil {
				t.Fatal(err)
			}
		}
		p, err := c.read()
		if err != nil || p.topic != topic(id, steward.ChannelUpdateJob) {
			t.Fatalf("first delivery %v %v, want the update job only", p, err)
		}
		h.noEvents(t, id) // the server's own deliveries are not the device's doing
	})
	t.Run("refusals", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		if _, err := h.connect3(t, h.ca.Device(t, id), id, nil); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name string
			m    steward.OutboundMessage
			code steward.Code
		}{
			{"not connected", steward.OutboundMessage{TenantID: testTenant, DeviceID: newDeviceID(), Channel: steward.ChannelCmdReq}, steward.CodeNotFound},
			{"other tenant", steward.OutboundMessage{TenantID: "t2", DeviceID: id, Channel: steward.ChannelCmdReq}, steward.CodeNotFound},
			{"device-to-server channel", steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: steward.ChannelTelemetry}, steward.CodeInvalid},
			{"bad device id", steward.OutboundMessage{TenantID: testTenant, DeviceID: "d/+", Channel: steward.ChannelCmdReq}, steward.CodeInvalid},
			{"qos 3", steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: steward.ChannelCmdReq, QoS: 3}, steward.CodeInvalid},
			{"too large", steward.OutboundMessage{TenantID: testTenant, DeviceID: id, Channel: steward.ChannelCmdReq, Payload: make([]byte, DefaultMaxPayload+1)}, steward.CodeTooLarge},
		}
		for _, tt := range tests {
			err := send(tt.m)
			if steward.ErrorCode(err) != tt.code {
				t.Errorf("%s: err = %v, want %s", tt.name, err, tt.code)
			}
		}
		if err := send(steward.OutboundMessage{TenantID: testTenant, DeviceID: newDeviceID(), Channel: steward.ChannelCmdReq}); steward.ErrorMessage(err) != "device not connected" {
			t.Errorf("message %q", steward.ErrorMessage(err))
		}
	})
}

func TestWill(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(false)
	h.handle(steward.ChannelEvents, in)
	t.Run("on another device's topic is refused", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		_, err := h.connect3(t, h.ca.Device(t, id), id, func(o *paho3.ClientOptions) {
			o.SetWill(topic(newDeviceID(), steward.ChannelCmdReq), "boom", 1, true)
		})
		if err == nil {
			t.Fatal("connected with a foreign will")
		}
		h.waitEvent(t, id, steward.SecACLDenied)
	})
	t.Run("on own events reaches the handler", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		lost := make(chan struct{})
		c, err := h.connect3(t, h.ca.Device(t, id), id, func(o *paho3.ClientOptions) {
			o.SetWill(topic(id, steward.ChannelEvents), `{"type":"gone"}`, 1, false)
			o.SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
		})
		if err != nil {
			t.Fatal(err)
		}
		_ = c
		// End the session without a DISCONNECT: the broker closes it.
		if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: testTenant, DeviceID: id, Close: true}); err != nil {
			t.Fatal(err)
		}
		<-lost
		deadline := time.Now().Add(waitLimit)
		for {
			var found bool
			for _, m := range in.snapshot() {
				if m.DeviceID == id && string(m.Payload) == `{"type":"gone"}` {
					found = true
				}
			}
			if found {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("will never reached the handler")
			}
			time.Sleep(2 * time.Millisecond)
		}
	})
}

func TestCloseReportsEveryoneOffline(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(true)
	h.handle(steward.ChannelTelemetry, in)
	var ids []string
	for _, v := range versions {
		id := newDeviceID()
		ids = append(ids, id)
		c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
		if err != nil {
			t.Fatal(err)
		}
		h.waitPresence(t, id)
		// A 3.1.1 client blocked behind a full window must not hold Close up.
		for i := uint16(1); i <= DefaultReceiveMaximum+1; i++ {
			c.publish(topic(id, steward.ChannelTelemetry), 1, i, []byte(`{}`))
		}
	}
	in.wait(t, 2*DefaultReceiveMaximum)
	if err := h.broker.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		p, ok := h.takePresence(id)
		if !ok || p.Online {
			t.Fatalf("after Close: presence %+v %v, want offline", p, ok)
		}
	}
	if err := h.bus.Send(context.Background(), steward.OutboundMessage{TenantID: testTenant, DeviceID: ids[0], Channel: steward.ChannelCmdReq}); steward.ErrorCode(err) != steward.CodeUnavailable {
		t.Fatalf("send after close: %v", err)
	}
	// Late acks of the closed sessions are harmless.
	for i := range in.snapshot() {
		in.ack(i, nil)
	}
}
