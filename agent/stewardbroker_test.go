package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/mqtt"
)

// stewardGate is a DeviceGate over one device CA with settable device
// states: the registry's part, which these tests do not need whole.
type stewardGate struct {
	ca     *x509.Certificate
	mu     sync.Mutex
	states map[string]steward.State
	events []steward.SecurityEvent
}

func (g *stewardGate) AuthenticateDevice(_ context.Context, cert *x509.Certificate, _ string) (steward.DeviceSession, error) {
	roots := x509.NewCertPool()
	roots.AddCert(g.ca)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "unknown certificate")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	state, ok := g.states[cert.Subject.CommonName]
	if !ok {
		state = steward.StateActive
	}
	return steward.DeviceSession{TenantID: "t1", DeviceID: cert.Subject.CommonName, State: state, CertSerial: cert.SerialNumber.Text(16), NotAfter: cert.NotAfter}, nil
}

func (g *stewardGate) RecordSecurityEvent(_ context.Context, e steward.SecurityEvent) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.events = append(g.events, e)
}

// telemetryRefusals counts the telemetry publishes the broker refused.
func (g *stewardGate) telemetryRefusals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, e := range g.events {
		if strings.Contains(e.Detail, "publish to") && strings.Contains(e.Detail, "/telemetry") {
			n++
		}
	}
	return n
}

func (g *stewardGate) eventCount() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.events)
}

// stewardPlane is Steward's MQTT broker adapter (package mqtt) on the
// in-process bus, recording what reaches the services.
type stewardPlane struct {
	gate *stewardGate
	bus  *inproc.Bus
	addr string
	mu   sync.Mutex
	msgs []steward.DeviceMessage
}

func newStewardPlane(t *testing.T, serverCert tls.Certificate, deviceCA *testpki.CA) *stewardPlane {
	t.Helper()
	p := &stewardPlane{gate: &stewardGate{ca: deviceCA.Cert, states: map[string]steward.State{}}, bus: inproc.New(nil)}
	for _, ch := range steward.DeviceToServer {
		p.bus.HandleInbound(ch, func(_ context.Context, m steward.DeviceMessage, ack steward.Ack) {
			p.mu.Lock()
			p.msgs = append(p.msgs, m)
			p.mu.Unlock()
			ack(nil)
		})
	}
	b, err := mqtt.New(mqtt.Config{
		Addr: "127.0.0.1:0", TLS: &tls.Config{Certificates: []tls.Certificate{serverCert}},
		Gate: p.gate, Bus: p.bus, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	p.addr = b.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	p.waitFor(t, "broker on the bus", func() bool {
		return steward.ErrorCode(p.bus.Send(context.Background(), steward.OutboundMessage{})) != steward.CodeUnavailable
	})
	return p
}

func (p *stewardPlane) messages(ch steward.Channel) [][]byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out [][]byte
	for _, m := range p.msgs {
		if m.Channel == ch {
			out = append(out, m.Payload)
		}
	}
	return out
}

func (p *stewardPlane) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAgentWithStewardBroker runs the agent against Steward's own broker
// adapter: ACL, quarantine and command delivery as the server does them.
func TestAgentWithStewardBroker(t *testing.T) {
	t.Parallel()
	serverCA, deviceCA, factoryCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "device CA"), testpki.NewCA(t, "factory CA")
	p := newStewardPlane(t, serverCA.ServerCert(t), deviceCA)
	dir := t.TempDir()
	id := deviceIdentity(t, deviceCA, testDeviceID, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err := stateDir(dir).saveIdentity(id); err != nil {
		t.Fatal(err)
	}
	// Quarantined from the start, as after a failed validation.
	p.gate.states[testDeviceID] = steward.StateQuarantined
	a, err := New(Config{
		ESTURL: "https://127.0.0.1:1", MQTTAddr: p.addr, ServerCA: serverCA.Pool(),
		FactoryCert: factoryCert(t, factoryCA, "SN-Q"), StateDir: dir, Model: "gw-100", Firmware: "0.9.0",
		Attributes:          func() map[string]any { return map[string]any{} },
		Telemetry:           func() map[string]float64 { return map[string]float64{"cpu": 0.5} },
		TelemetryInterval:   20 * time.Millisecond,
		ResubscribeInterval: 50 * time.Millisecond,
		BackoffMin:          5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		Rand: rand.New(rand.NewPCG(3, 3)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	p.waitFor(t, "attributes from the quarantined device", func() bool { return len(p.messages(steward.ChannelAttributes)) == 1 })
	p.waitFor(t, "refused subscriptions", func() bool { return len(a.Status().Refused) > 0 })
	if got, want := a.Status().Refused, []steward.Channel{steward.ChannelTwinDesired, steward.ChannelCmdReq}; !slices.Equal(got, want) {
		t.Fatalf("refused %v, want %v", got, want)
	}
	// A few retries, each a security event on the server; the connection
	// holds and no telemetry is offered.
	p.waitFor(t, "retries", func() bool { return p.gate.eventCount() >= 6 })
	if st := a.Status(); st.Connects != 1 || len(p.messages(steward.ChannelTelemetry)) != 0 {
		t.Fatalf("status %+v, %d telemetry messages", st, len(p.messages(steward.ChannelTelemetry)))
	}

	// Released: the broker is told the new state; the next retry is
	// granted and the device is fully back without reconnecting.
	p.gate.mu.Lock()
	p.gate.states[testDeviceID] = steward.StateActive
	p.gate.mu.Unlock()
	if err := p.bus.Control(context.Background(), steward.SessionControl{TenantID: "t1", DeviceID: testDeviceID, State: steward.StateActive}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "subscriptions granted", func() bool { return len(a.Status().Refused) == 0 })
	p.waitFor(t, "telemetry", func() bool { return len(p.messages(steward.ChannelTelemetry)) >= 2 })
	cmd, _ := json.Marshal(steward.Command{ID: "c-1", Name: "ping", SentAt: time.Now()})
	if err := p.bus.Send(context.Background(), steward.OutboundMessage{TenantID: "t1", DeviceID: testDeviceID, Channel: steward.ChannelCmdReq, Payload: cmd, QoS: 1}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "command result", func() bool { return len(p.messages(steward.ChannelCmdRes)) == 1 })
	var res steward.CommandResult
	if err := json.Unmarshal(p.messages(steward.ChannelCmdRes)[0], &res); err != nil || res.ID != "c-1" || res.Status != steward.CommandOK {
		t.Fatalf("result %+v (%v)", res, err)
	}
	if st := a.Status(); st.Connects != 1 {
		t.Fatalf("release cost the connection: %+v", st)
	}

	// Quarantined during the session, without a reconnection: the broker
	// refuses the next commands probe and the device stops offering
	// telemetry.
	p.gate.mu.Lock()
	p.gate.states[testDeviceID] = steward.StateQuarantined
	p.gate.mu.Unlock()
	if err := p.bus.Control(context.Background(), steward.SessionControl{TenantID: "t1", DeviceID: testDeviceID, State: steward.StateQuarantined}); err != nil {
		t.Fatal(err)
	}
	p.waitFor(t, "quarantine noticed", func() bool { return slices.Contains(a.Status().Refused, steward.ChannelCmdReq) })
	// A publish in flight when the probe was refused may still land; after
	// one more probe none may.
	events := p.gate.eventCount()
	p.waitFor(t, "one more probe", func() bool { return p.gate.eventCount() >= events+1 })
	refused := p.gate.telemetryRefusals()
	events = p.gate.eventCount()
	p.waitFor(t, "two more probes", func() bool { return p.gate.eventCount() >= events+2 })
	if n := p.gate.telemetryRefusals(); n != refused {
		t.Fatalf("%d telemetry messages offered while quarantined", n-refused)
	}
	if st := a.Status(); st.Connects != 1 {
		t.Fatalf("quarantine cost the connection: %+v", st)
	}
}
