package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"strings"
	"testing"
	"time"

	packets5 "github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/testpki"
)

var versions = []struct {
	name string
	v5   bool
}{{"mqtt3.1.1", false}, {"mqtt5", true}}

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "server CA")
	good := func() Config {
		return Config{
			Addr: "127.0.0.1:0",
			TLS:  &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t)}},
			Gate: newTestGate(),
			Bus:  inproc.New(nil),
		}
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no tls", func(c *Config) { c.TLS = nil }},
		{"no certificate", func(c *Config) { c.TLS = &tls.Config{} }},
		{"no gate", func(c *Config) { c.Gate = nil }},
		{"no bus", func(c *Config) { c.Bus = nil }},
		{"negative payload", func(c *Config) { c.MaxPayload = -1 }},
		{"payload over mqtt's limit", func(c *Config) { c.MaxPayload = maxPacket }},
		{"negative handshake timeout", func(c *Config) { c.HandshakeTimeout = -time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good()
			tt.mod(&cfg)
			b, err := New(cfg)
			if err == nil {
				_ = b.Close()
				t.Fatal("New accepted a bad config")
			}
			if steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("err = %v, want CodeInvalid", err)
			}
		})
	}
}

func TestConnectAndPresence(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			id := newDeviceID()
			c, ack, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatalf("connect: %v", err)
			}
			if ack.code != 0 {
				t.Fatalf("CONNACK code %#x", ack.code)
			}
			p := h.waitPresence(t, id)
			if !p.Online || p.TenantID != testTenant || p.RemoteAddr != c.conn.LocalAddr().String() || p.At.IsZero() {
				t.Fatalf("presence = %+v, want online from %s", p, c.conn.LocalAddr())
			}
			_ = c.conn.Close()
			p = h.waitPresence(t, id)
			if p.Online || p.RemoteAddr != c.conn.LocalAddr().String() {
				t.Fatalf("presence after close = %+v, want offline", p)
			}
		})
	}
}

func TestConnectWithPahoClients(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id3, id5 := newDeviceID(), newDeviceID()
	if _, err := h.connect3(t, h.ca.Device(t, id3), id3, nil); err != nil {
		t.Fatalf("paho 3.1.1: %v", err)
	}
	_, ca, err := h.connect5(t, h.ca.Device(t, id5), id5, paho5.ClientConfig{})
	if err != nil {
		t.Fatalf("paho 5: %v", err)
	}
	// The CONNACK announces the limits the broker enforces.
	if ca.Properties == nil || ca.Properties.ReceiveMaximum == nil || *ca.Properties.ReceiveMaximum != DefaultReceiveMaximum ||
		ca.Properties.MaximumPacketSize == nil || *ca.Properties.MaximumPacketSize != DefaultMaxPayload+packetOverhead ||
		ca.Properties.WildcardSubAvailable || ca.Properties.SharedSubAvailable {
		t.Fatalf("CONNACK properties = %+v", ca.Properties)
	}
	for _, id := range []string{id3, id5} {
		if p := h.waitPresence(t, id); !p.Online {
			t.Fatalf("presence %+v", p)
		}
	}
}

// TestHandshakeRefusals shows that a certificate the gate refuses fails the
// TLS handshake itself (a "bad certificate" alert), before any MQTT.
func TestHandshakeRefusals(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	foreign := testpki.NewCA(t, "someone else's CA")
	revoked := h.ca.Device(t, newDeviceID())
	h.gate.revoke(revoked)
	decommissioned := newDeviceID()
	h.gate.setState(decommissioned, steward.StateDecommissioned)
	tests := []struct {
		name string
		cert func(id string) tls.Certificate
		id   string
	}{
		{"unknown CA", func(id string) tls.Certificate { return foreign.Device(t, id) }, newDeviceID()},
		{"expired", func(id string) tls.Certificate {
			return h.ca.Issue(t, id, "", time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour))
		}, newDeviceID()},
		{"not yet valid", func(id string) tls.Certificate {
			return h.ca.Issue(t, id, "", time.Now().Add(time.Hour), time.Now().Add(48*time.Hour))
		}, newDeviceID()},
		{"revoked", func(string) tls.Certificate { return revoked }, revoked.Leaf.Subject.CommonName},
		{"decommissioned", func(id string) tls.Certificate { return h.ca.Device(t, id) }, decommissioned},
	}
	for _, tt := range tests {
		for _, tlsVersion := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			t.Run(tt.name+"/"+tls.VersionName(tlsVersion), func(t *testing.T) {
				t.Parallel()
				cfg := h.clientTLS(tt.cert(tt.id))
				cfg.MaxVersion = tlsVersion
				conn, err := tls.Dial("tcp", h.addr, cfg)
				if err == nil {
					// TLS 1.3: the client finishes first; the server's verdict
					// is the first thing it reads.
					_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
					_, err = conn.Read(make([]byte, 1))
					_ = conn.Close()
				}
				if err == nil || !strings.Contains(err.Error(), "bad certificate") {
					t.Fatalf("err = %v, want a bad certificate alert", err)
				}
			})
		}
		t.Run(tt.name+"/paho", func(t *testing.T) {
			t.Parallel()
			if _, err := h.connect3(t, tt.cert(tt.id), tt.id, nil); err == nil {
				t.Fatal("paho connected")
			}
		})
	}
	t.Run("no client certificate", func(t *testing.T) {
		t.Parallel()
		conn, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.roots, ServerName: "127.0.0.1"})
		if err == nil {
			_ = conn.SetReadDeadline(time.Now().Add(waitLimit))
			_, err = conn.Read(make([]byte, 1))
			_ = conn.Close()
		}
		if err == nil || !containsAny(err.Error(), "certificate required", "bad certificate") {
			t.Fatalf("err = %v, want a certificate alert", err)
		}
	})
}

func TestHandshakeRefusalsReachNoSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	foreign := testpki.NewCA(t, "someone else's CA")
	id := newDeviceID()
	before := h.gate.refused.Load()
	if _, err := h.connect3(t, foreign.Device(t, id), id, nil); err == nil {
		t.Fatal("connected with a foreign certificate")
	}
	if h.gate.refused.Load() != before+1 {
		t.Fatalf("gate refusals = %d, want %d: the gate must decide", h.gate.refused.Load(), before+1)
	}
	// The same device with a good certificate comes online: the refusal
	// left nothing behind, and its presence is the first one recorded.
	if _, err := h.connect3(t, h.ca.Device(t, id), id, nil); err != nil {
		t.Fatal(err)
	}
	if p := h.waitPresence(t, id); !p.Online {
		t.Fatalf("first presence change = %+v, want online", p)
	}
}

func TestClientIDMustBeDeviceID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tests := []struct {
		name     string
		clientID func(id string) string
	}{
		{"other device", func(string) string { return newDeviceID() }},
		{"empty (server assigned)", func(string) string { return "" }},
		{"prefix", func(id string) string { return id[:len(id)-1] }},
		{"mochi inline client", func(string) string { return "inline" }},
	}
	for _, tt := range tests {
		for _, v := range versions {
			t.Run(tt.name+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				id := newDeviceID()
				c, ack, err := h.dialRaw(t, h.ca.Device(t, id), tt.clientID(id), v.v5)
				if err != nil {
					t.Fatalf("connect: %v", err)
				}
				want := byte(0x02) // 3.1.1: identifier rejected
				if v.v5 {
					want = 0x85 // client identifier not valid
				}
				if ack.code != want {
					t.Fatalf("CONNACK code %#x, want %#x", ack.code, want)
				}
				c.expectClosed()
				e := h.waitEvent(t, id, steward.SecClientIDMismatch)
				if !strings.Contains(e.Detail, id) {
					t.Fatalf("detail %q does not name the certificate", e.Detail)
				}
			})
		}
	}
	t.Run("paho", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		_, err := h.connect3(t, h.ca.Device(t, id), newDeviceID(), nil)
		if err == nil || !strings.Contains(err.Error(), "identifier rejected") {
			t.Fatalf("err = %v, want identifier rejected", err)
		}
		h.waitEvent(t, id, steward.SecClientIDMismatch)
		_, ca, err := h.connect5(t, h.ca.Device(t, id), "x"+id, paho5.ClientConfig{})
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Fatalf("paho 5 connack %+v err %v, want 0x85", ca, err)
		}
		h.waitEvent(t, id, steward.SecClientIDMismatch)
	})
}

func TestPublishACL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(false)
	for _, ch := range steward.DeviceToServer {
		h.handle(ch, in)
	}
	tests := []struct {
		name  string
		topic func(id string) string
	}{
		{"other device", func(string) string { return topic(newDeviceID(), steward.ChannelTelemetry) }},
		{"own server-to-device channel", func(id string) string { return topic(id, steward.ChannelTwinDesired) }},
		{"own cmd/req", func(id string) string { return topic(id, steward.ChannelCmdReq) }},
		{"unknown channel", func(id string) string { return "dev/" + id + "/shell" }},
		{"below a channel", func(id string) string { return topic(id, steward.ChannelTelemetry) + "/x" }},
		{"device root", func(id string) string { return "dev/" + id }},
		{"$SYS", func(string) string { return "$SYS/broker/version" }},
		{"outside dev/", func(id string) string { return "devices/" + id + "/telemetry" }},
	}
	for _, tt := range tests {
		for _, v := range versions {
			t.Run(tt.name+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				id := newDeviceID()
				c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
				if err != nil {
					t.Fatal(err)
				}
				c.publish(tt.topic(id), 1, 1, []byte(`{}`))
				if v.v5 {
					c.expect(packets5.PUBACK, 1, 0x87) // not authorized
				} else {
					c.expect(packets5.PUBACK, 1, 0) // 3.1.1: acknowledged and discarded
				}
				h.waitEvent(t, id, steward.SecACLDenied)
				c.publish(tt.topic(id), 0, 0, []byte(`{}`))
				h.waitEvent(t, id, steward.SecACLDenied)
				// A good message afterwards is the only one the handler sees.
				c.publish(topic(id, steward.ChannelEvents), 1, 2, []byte(`{"type":"ok"}`))
				c.expect(packets5.PUBACK, 2, 0)
				for _, m := range in.snapshot() {
					if m.DeviceID == id && m.Channel != steward.ChannelEvents {
						t.Fatalf("refused message reached the handler: %+v", m)
					}
				}
			})
		}
	}
}

func TestPublishReachesHandler(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(false)
	for _, ch := range steward.DeviceToServer {
		h.handle(ch, in)
	}
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			id := newDeviceID()
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			for i, ch := range steward.DeviceToServer {
				c.publish(topic(id, ch), 1, uint16(i+1), []byte(`{"n":`+string(rune('0'+i))+`}`))
				c.expect(packets5.PUBACK, uint16(i+1), 0)
			}
			var got []steward.DeviceMessage
			for _, m := range in.snapshot() {
				if m.DeviceID == id {
					got = append(got, m)
				}
			}
			if len(got) != len(steward.DeviceToServer) {
				t.Fatalf("handler got %d messages, want %d", len(got), len(steward.DeviceToServer))
			}
			for i, m := range got {
				if m.Channel != steward.DeviceToServer[i] || m.TenantID != testTenant || m.QoS != 1 || m.Received.IsZero() ||
					string(m.Payload) != `{"n":`+string(rune('0'+i))+`}` {
					t.Fatalf("message %d = %+v", i, m)
				}
			}
			h.noEvents(t, id)
		})
	}
}

func TestSubscribeACL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	tests := []struct {
		name   string
		filter func(id string) string
	}{
		{"other device", func(string) string { return topic(newDeviceID(), steward.ChannelCmdReq) }},
		{"own device-to-server channel", func(id string) string { return topic(id, steward.ChannelTelemetry) }},
		{"#", func(string) string { return "#" }},
		{"+", func(string) string { return "+/+/+" }},
		{"own #", func(id string) string { return "dev/" + id + "/#" }},
		{"own +", func(id string) string { return "dev/" + id + "/+" }},
		{"own +/+", func(id string) string { return "dev/" + id + "/cmd/+" }},
		{"any device", func(string) string { return "dev/+/cmd/req" }},
		{"$SYS", func(string) string { return "$SYS/#" }},
		{"shared", func(id string) string { return "$share/g/" + topic(id, steward.ChannelCmdReq) }},
	}
	for _, tt := range tests {
		for _, v := range versions {
			t.Run(tt.name+"/"+v.name, func(t *testing.T) {
				t.Parallel()
				id := newDeviceID()
				c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
				if err != nil {
					t.Fatal(err)
				}
				c.subscribe(1, tt.filter(id), topic(id, steward.ChannelCmdReq))
				p, err := c.read()
				if err != nil || p.typ != packets5.SUBACK || len(p.codes) != 2 {
					t.Fatalf("SUBACK %v, %v", p, err)
				}
				refused := p.codes[0]
				if (v.v5 && refused != 0x87) || (!v.v5 && refused != 0x80) {
					t.Fatalf("SUBACK code %#x for %q", refused, tt.filter(id))
				}
				if p.codes[1] != 1 {
					t.Fatalf("own cmd/req granted %#x, want QoS 1", p.codes[1])
				}
				h.waitEvent(t, id, steward.SecACLDenied)
			})
		}
	}
	t.Run("paho", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		c3, err := h.connect3(t, h.ca.Device(t, id), id, nil)
		if err != nil {
			t.Fatal(err)
		}
		tok := c3.SubscribeMultiple(map[string]byte{"#": 1, "dev/+/cmd/req": 1, topic(id, steward.ChannelUpdateJob): 1}, nil)
		if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		res := tok.(*paho3.SubscribeToken).Result()
		if res["#"] != 0x80 || res["dev/+/cmd/req"] != 0x80 || res[topic(id, steward.ChannelUpdateJob)] != 1 {
			t.Fatalf("SUBACK %v", res)
		}
		h.waitEvent(t, id, steward.SecACLDenied)
		h.waitEvent(t, id, steward.SecACLDenied)

		// A paho MQTT 5 client reads in CONNACK that wildcards are not
		// available and does not even ask.
		id5 := newDeviceID()
		c5, _, err := h.connect5(t, h.ca.Device(t, id5), id5, paho5.ClientConfig{})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c5.Subscribe(context.Background(), &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: "dev/" + id5 + "/#", QoS: 1}}})
		if err == nil || !strings.Contains(err.Error(), "wildcard") {
			t.Fatalf("paho 5 wildcard subscribe: %v", err)
		}
		sa, err := c5.Subscribe(context.Background(), &paho5.Subscribe{Subscriptions: []paho5.SubscribeOptions{{Topic: topic(newDeviceID(), steward.ChannelCmdReq), QoS: 1}}})
		if sa == nil || len(sa.Reasons) != 1 || sa.Reasons[0] != 0x87 {
			t.Fatalf("paho 5 SUBACK %+v, %v", sa, err)
		}
		h.waitEvent(t, id5, steward.SecACLDenied)
	})
}

func TestQuarantine(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	in := newInbox(false)
	for _, ch := range steward.DeviceToServer {
		h.handle(ch, in)
	}
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			id := newDeviceID()
			h.gate.setState(id, steward.StateQuarantined)
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			refusedCode := byte(0)
			if v.v5 {
				refusedCode = 0x87
			}
			var pid uint16
			for _, ch := range steward.DeviceToServer {
				pid++
				c.publish(topic(id, ch), 1, pid, []byte(`{}`))
				if slicesContains(steward.QuarantineMayPublish, ch) {
					c.expect(packets5.PUBACK, pid, 0)
				} else {
					c.expect(packets5.PUBACK, pid, refusedCode)
					h.waitEvent(t, id, steward.SecQuarantineRefused)
				}
			}
			for _, m := range in.snapshot() {
				if m.DeviceID == id && !slicesContains(steward.QuarantineMayPublish, m.Channel) {
					t.Fatalf("quarantined device's %s reached the handler", m.Channel)
				}
			}
			c.subscribe(100, topic(id, steward.ChannelUpdateJob), topic(id, steward.ChannelCmdReq), topic(id, steward.ChannelTwinDesired))
			p, err := c.read()
			if err != nil || p.typ != packets5.SUBACK || len(p.codes) != 3 || p.codes[0] != 1 || p.codes[1] < 0x80 || p.codes[2] < 0x80 {
				t.Fatalf("SUBACK %v, %v; want update/job only", p, err)
			}
			h.waitEvent(t, id, steward.SecQuarantineRefused)
			h.waitEvent(t, id, steward.SecQuarantineRefused)
		})
	}
}

func TestControlStateChangeUpdatesACL(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	id := newDeviceID()
	c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, true)
	if err != nil {
		t.Fatal(err)
	}
	tel := topic(id, steward.ChannelTelemetry)
	c.publish(tel, 1, 1, []byte(`{}`))
	c.expect(packets5.PUBACK, 1, 0)

	ctl := func(s steward.State, tenant string) {
		t.Helper()
		if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: tenant, DeviceID: id, State: s, Reason: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	ctl(steward.StateQuarantined, "another tenant") // not this device: ignored
	c.publish(tel, 1, 2, []byte(`{}`))
	c.expect(packets5.PUBACK, 2, 0)

	ctl(steward.StateQuarantined, testTenant)
	c.publish(tel, 1, 3, []byte(`{}`))
	c.expect(packets5.PUBACK, 3, 0x87)
	h.waitEvent(t, id, steward.SecQuarantineRefused)

	ctl(steward.StateActive, testTenant)
	c.publish(tel, 1, 4, []byte(`{}`))
	c.expect(packets5.PUBACK, 4, 0)
}

func TestControlCloseDropsSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	for _, v := range versions {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			id := newDeviceID()
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, v.v5)
			if err != nil {
				t.Fatal(err)
			}
			h.waitPresence(t, id)
			if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: testTenant, DeviceID: id, Close: true, Reason: "revoked"}); err != nil {
				t.Fatal(err)
			}
			code, saw := c.expectClosed()
			if v.v5 && (!saw || code != 0x98) {
				t.Fatalf("DISCONNECT %v code %#x, want administrative action 0x98", saw, code)
			}
			if !v.v5 && saw {
				t.Fatal("MQTT 3.1.1 client got a DISCONNECT")
			}
			if p := h.waitPresence(t, id); p.Online {
				t.Fatalf("presence %+v, want offline", p)
			}
		})
	}
	t.Run("paho", func(t *testing.T) {
		t.Parallel()
		id3, id5 := newDeviceID(), newDeviceID()
		lost := make(chan error, 1)
		if _, err := h.connect3(t, h.ca.Device(t, id3), id3, func(o *paho3.ClientOptions) {
			o.SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
		}); err != nil {
			t.Fatal(err)
		}
		disc := make(chan *paho5.Disconnect, 1)
		if _, _, err := h.connect5(t, h.ca.Device(t, id5), id5, paho5.ClientConfig{OnServerDisconnect: func(d *paho5.Disconnect) { disc <- d }}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{id3, id5} {
			if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: testTenant, DeviceID: id, Close: true}); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case <-lost:
		case <-time.After(waitLimit):
			t.Fatal("paho 3.1.1 client still connected")
		}
		select {
		case d := <-disc:
			if d.ReasonCode != 0x98 {
				t.Fatalf("DISCONNECT reason %#x", d.ReasonCode)
			}
		case <-time.After(waitLimit):
			t.Fatal("paho 5 client got no DISCONNECT")
		}
	})
	t.Run("decommissioned state closes", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, true)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.bus.Control(context.Background(), steward.SessionControl{TenantID: testTenant, DeviceID: id, State: steward.StateDecommissioned}); err != nil {
			t.Fatal(err)
		}
		if code, saw := c.expectClosed(); !saw || code != 0x98 {
			t.Fatalf("DISCONNECT %v %#x", saw, code)
		}
	})
}

func TestPayloadLimit(t *testing.T) {
	t.Parallel()
	const limit = 1024
	h := newHarness(t, func(c *Config) { c.MaxPayload = limit })
	in := newInbox(false)
	h.handle(steward.ChannelTelemetry, in)
	tests := []struct {
		name    string
		size    int
		v5      bool
		refused bool
	}{
		{"at the limit/mqtt3.1.1", limit, false, false},
		{"at the limit/mqtt5", limit, true, false},
		{"one over/mqtt3.1.1", limit + 1, false, true},
		{"one over/mqtt5", limit + 1, true, true},
		{"over the packet limit/mqtt3.1.1", limit + packetOverhead + 1, false, true},
		{"over the packet limit/mqtt5", limit + packetOverhead + 1, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id := newDeviceID()
			c, _, err := h.dialRaw(t, h.ca.Device(t, id), id, tt.v5)
			if err != nil {
				t.Fatal(err)
			}
			err = c.tryPublish(topic(id, steward.ChannelTelemetry), 1, 1, bytes.Repeat([]byte("x"), tt.size))
			if err != nil && !tt.refused {
				t.Fatalf("publish: %v", err)
			}
			if !tt.refused {
				c.expect(packets5.PUBACK, 1, 0)
				return
			}
			code, saw := c.expectClosed()
			if tt.v5 && tt.size <= limit+packetOverhead && (!saw || code != 0x95) {
				t.Fatalf("DISCONNECT %v %#x, want packet too large 0x95", saw, code)
			}
			h.waitEvent(t, id, steward.SecPayloadTooLarge)
			for _, m := range in.snapshot() {
				if m.DeviceID == id {
					t.Fatal("oversized message reached the handler")
				}
			}
		})
	}
	t.Run("paho", func(t *testing.T) {
		t.Parallel()
		id := newDeviceID()
		lost := make(chan error, 1)
		c, err := h.connect3(t, h.ca.Device(t, id), id, func(o *paho3.ClientOptions) {
			o.SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Publish(topic(id, steward.ChannelTelemetry), 1, false, bytes.Repeat([]byte("x"), limit+1))
		select {
		case <-lost:
		case <-time.After(waitLimit):
			t.Fatal("connection not closed")
		}
		h.waitEvent(t, id, steward.SecPayloadTooLarge)
	})
}

func slicesContains(s []steward.Channel, c steward.Channel) bool {
	for _, x := range s {
		if x == c {
			return true
		}
	}
	return false
}

func (in *inbox) snapshot() []steward.DeviceMessage {
	in.mu.Lock()
	defer in.mu.Unlock()
	return append([]steward.DeviceMessage(nil), in.msgs...)
}
