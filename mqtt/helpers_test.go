package mqtt

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	packets5 "github.com/eclipse/paho.golang/packets"
	paho5 "github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/testpki"
)

const waitLimit = 10 * time.Second

// testGate is the DeviceGate of the tests: it trusts the device CA of each
// tenant, refuses revoked serials and decommissioned devices, and keeps the
// security events it is given.
type testGate struct {
	clock   steward.Clock
	mu      sync.Mutex
	tenants map[string]*x509.Certificate
	revoked map[string]bool
	states  map[string]steward.State
	events  []steward.SecurityEvent
	taken   map[int]bool
	auths   atomic.Int64
	refused atomic.Int64
}

func newTestGate() *testGate {
	return &testGate{
		clock:   steward.SystemClock{},
		tenants: map[string]*x509.Certificate{},
		revoked: map[string]bool{},
		states:  map[string]steward.State{},
		taken:   map[int]bool{},
	}
}

func (g *testGate) AuthenticateDevice(_ context.Context, cert *x509.Certificate, _ string) (steward.DeviceSession, error) {
	g.auths.Add(1)
	g.mu.Lock()
	defer g.mu.Unlock()
	for tenant, ca := range g.tenants {
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: g.clock.Now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			continue
		}
		serial := cert.SerialNumber.Text(16)
		if g.revoked[serial] {
			g.refused.Add(1)
			return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "certificate revoked")
		}
		state, ok := g.states[cert.Subject.CommonName]
		if !ok {
			state = steward.StateActive
		}
		if state == steward.StateDecommissioned {
			g.refused.Add(1)
			return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "device decommissioned")
		}
		return steward.DeviceSession{TenantID: tenant, DeviceID: cert.Subject.CommonName, State: state, CertSerial: serial, NotAfter: cert.NotAfter}, nil
	}
	g.refused.Add(1)
	return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "certificate not issued by a known CA, or not valid now")
}

func (g *testGate) RecordSecurityEvent(_ context.Context, e steward.SecurityEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, e)
}

// takeEvent takes the oldest event of device not taken yet.
func (g *testGate) takeEvent(device string) (steward.SecurityEvent, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, e := range g.events {
		if !g.taken[i] && e.DeviceID == device {
			g.taken[i] = true
			return e, true
		}
	}
	return steward.SecurityEvent{}, false
}

func (g *testGate) revoke(cert tls.Certificate) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revoked[cert.Leaf.SerialNumber.Text(16)] = true
}

func (g *testGate) setState(id string, s steward.State) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.states[id] = s
}

// harness is a broker on loopback with an in-process bus, the test gate and
// the PKI behind them.
type harness struct {
	t        testing.TB
	broker   *Broker
	bus      *inproc.Bus
	gate     *testGate
	ca       *testpki.CA // device CA of tenant "t1"
	roots    *x509.CertPool
	addr     string
	presMu   sync.Mutex
	presence []steward.PresenceChange
	presSeen map[int]bool
}

const testTenant = "t1"

func newHarness(t testing.TB, mod func(*Config)) *harness {
	t.Helper()
	serverCA := testpki.NewCA(t, "server CA")
	serverCert := serverCA.ServerCert(t)
	h := &harness{
		t:        t,
		bus:      inproc.New(nil),
		gate:     newTestGate(),
		ca:       testpki.NewCA(t, "tenant t1 device CA"),
		roots:    x509.NewCertPool(),
		presSeen: map[int]bool{},
	}
	h.roots.AddCert(serverCA.Cert)
	h.gate.tenants[testTenant] = h.ca.Cert
	h.bus.HandlePresence(func(_ context.Context, p steward.PresenceChange) {
		h.presMu.Lock()
		h.presence = append(h.presence, p)
		h.presMu.Unlock()
	})
	cfg := Config{
		Addr:   "127.0.0.1:0",
		TLS:    &tls.Config{Certificates: []tls.Certificate{serverCert}},
		Gate:   h.gate,
		Bus:    h.bus,
		Logger: testLogger(),
	}
	if mod != nil {
		mod(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatalf("new broker: %v", err)
	}
	h.broker = b
	h.addr = b.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	// Serve registers the broker on the bus; wait for it.
	deadline := time.Now().Add(waitLimit)
	for steward.ErrorCode(h.bus.Send(context.Background(), steward.OutboundMessage{})) == steward.CodeUnavailable {
		if time.Now().After(deadline) {
			t.Fatal("broker did not register on the bus")
		}
		time.Sleep(time.Millisecond)
	}
	return h
}

func testLogger() *slog.Logger {
	if os.Getenv("STEWARD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

var idCounter atomic.Int64

// newDeviceID returns a fresh device ID in Steward's format.
func newDeviceID() string {
	return fmt.Sprintf("d-%020x", uint64(time.Now().UnixNano())+uint64(idCounter.Add(1)))
}

func (h *harness) clientTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: h.roots, Certificates: []tls.Certificate{cert}, ServerName: "127.0.0.1"}
}

// connect3 connects an MQTT 3.1.1 paho client.
func (h *harness) connect3(t testing.TB, cert tls.Certificate, clientID string, mod func(*paho3.ClientOptions)) (paho3.Client, error) {
	t.Helper()
	opts := paho3.NewClientOptions().
		AddBroker("ssl://" + h.addr).
		SetClientID(clientID).
		SetTLSConfig(h.clientTLS(cert)).
		SetProtocolVersion(4).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(waitLimit).
		SetKeepAlive(30 * time.Second).
		SetCleanSession(true).
		SetOrderMatters(false)
	if mod != nil {
		mod(opts)
	}
	c := paho3.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(waitLimit) {
		return nil, fmt.Errorf("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

// connect5 connects an MQTT 5 paho client.
func (h *harness) connect5(t testing.TB, cert tls.Certificate, clientID string, cfg paho5.ClientConfig) (*paho5.Client, *paho5.Connack, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", h.addr, h.clientTLS(cert))
	if err != nil {
		return nil, nil, err
	}
	cfg.Conn = packets5.NewThreadSafeConn(conn)
	if cfg.PacketTimeout == 0 {
		cfg.PacketTimeout = waitLimit
	}
	c := paho5.NewClient(cfg)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{ClientID: clientID, KeepAlive: 30, CleanStart: true})
	if err != nil {
		_ = conn.Close()
		return nil, ca, err
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	return c, ca, nil
}

// waitEvent waits for the next security event of device and checks its kind.
func (h *harness) waitEvent(t testing.TB, device string, kind steward.SecurityEventKind) steward.SecurityEvent {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if e, ok := h.gate.takeEvent(device); ok {
			if e.Kind != kind || e.TenantID != testTenant || e.Remote == "" || e.At.IsZero() {
				t.Fatalf("security event = %+v, want kind %s for tenant %s with remote and time", e, kind, testTenant)
			}
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s security event for %s", kind, device)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// noEvents checks that no security event of device was recorded so far.
func (h *harness) noEvents(t testing.TB, device string) {
	t.Helper()
	if e, ok := h.gate.takeEvent(device); ok {
		t.Fatalf("unexpected security event %+v", e)
	}
}

// takePresence takes the oldest presence change of device not taken yet.
func (h *harness) takePresence(device string) (steward.PresenceChange, bool) {
	h.presMu.Lock()
	defer h.presMu.Unlock()
	for i, p := range h.presence {
		if !h.presSeen[i] && p.DeviceID == device {
			h.presSeen[i] = true
			return p, true
		}
	}
	return steward.PresenceChange{}, false
}

// waitPresence waits for the next presence change of device.
func (h *harness) waitPresence(t testing.TB, device string) steward.PresenceChange {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		if p, ok := h.takePresence(device); ok {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("no presence change for %s", device)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// inbox records the messages of a channel handler and holds or settles
// their acks as a test decides.
type inbox struct {
	mu   sync.Mutex
	msgs []steward.DeviceMessage
	acks []steward.Ack
	got  chan steward.DeviceMessage
	hold bool
	err  error // the verdict when not holding
}

func newInbox(hold bool) *inbox {
	return &inbox{got: make(chan steward.DeviceMessage, 1000), hold: hold}
}

func (in *inbox) handle(_ context.Context, m steward.DeviceMessage, ack steward.Ack) {
	in.mu.Lock()
	in.msgs = append(in.msgs, m)
	in.acks = append(in.acks, ack)
	hold, err := in.hold, in.err
	in.mu.Unlock()
	in.got <- m
	if !hold {
		ack(err)
	}
}

func (in *inbox) wait(t testing.TB, n int) []steward.DeviceMessage {
	t.Helper()
	var out []steward.DeviceMessage
	timeout := time.After(waitLimit)
	for len(out) < n {
		select {
		case m := <-in.got:
			out = append(out, m)
		case <-timeout:
			t.Fatalf("handler got %d messages, want %d", len(out), n)
		}
	}
	return out
}

func (in *inbox) ack(i int, err error) {
	in.mu.Lock()
	a := in.acks[i]
	in.mu.Unlock()
	a(err)
}

func (h *harness) handle(ch steward.Channel, in *inbox) { h.bus.HandleInbound(ch, in.handle) }

// topic is shorthand for steward.Topic.
func topic(id string, ch steward.Channel) string { return steward.Topic(id, ch) }

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
