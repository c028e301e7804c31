// Package agenttest runs the server side that device-side tests talk to,
// with real parts on loopback TLS: an MQTT broker (mochi) that
// records what devices publish and subscribe, and an EST server (package
// est over esttest's Enroller). For tests of package agent, the agent
// binary and the simulator only; nothing else imports it.
package agenttest

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward/est/esttest"
	"github.com/steward-iot/steward/internal/testpki"
)

// EST is a real EST server (package est over esttest's Enroller) on a
// loopback TLS listener.
type EST struct {
	Enroller *esttest.Enroller // its factory CA makes identities it accepts
	URL      string            // https://127.0.0.1:port
}

// NewEST starts an EST server with a certificate from serverCA, accepting
// requests without a label or with one of labels.
func NewEST(t testing.TB, serverCA *testpki.CA, labels ...string) *EST {
	t.Helper()
	en, err := esttest.New(labels...)
	if err != nil {
		t.Fatal(err)
	}
	return &EST{Enroller: en, URL: NewESTServer(t, serverCA, en)}
}

// DevicePool returns a pool holding the CA of the certificates it issues.
func (e *EST) DevicePool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(e.Enroller.DeviceCA())
	return p
}

// Broker is a real MQTT broker (mochi) on a loopback TLS listener that
// requires a client certificate from the device CAs and a client ID equal
// to the certificate's CN. It records what devices publish (before the
// acknowledgement) and subscribe, and can refuse subscriptions or
// connections.
type Broker struct {
	mochi.HookBase
	t    testing.TB
	srv  *mochi.Server
	addr string

	mu         sync.Mutex
	published  []packets.Packet
	subscribes [][]string
	refuse     map[string]bool
	badIDs     []string
	down       bool
	changed    chan struct{}
}

// NewBroker starts a broker; it stops with the test.
func NewBroker(t testing.TB, serverCert tls.Certificate, deviceCAs *x509.CertPool) *Broker {
	t.Helper()
	b := &Broker{t: t, refuse: map[string]bool{}, changed: make(chan struct{})}
	b.srv = mochi.New(&mochi.Options{
		InlineClient: true,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := b.srv.AddHook(b, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "tls", Address: "127.0.0.1:0", TLSConfig: &tls.Config{
		Certificates: []tls.Certificate{serverCert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    deviceCAs,
		MinVersion:   tls.VersionTLS12,
	}})
	if err := b.srv.AddListener(l); err != nil {
		t.Fatal(err)
	}
	b.addr = l.Address()
	go func() { _ = b.srv.Serve() }()
	t.Cleanup(func() { _ = b.srv.Close() })
	return b
}

// Addr is the broker's host:port.
func (b *Broker) Addr() string { return b.addr }

// ID implements mochi.Hook.
func (b *Broker) ID() string { return "agenttest" }

// Provides implements mochi.Hook.
func (b *Broker) Provides(x byte) bool {
	return bytes.Contains([]byte{mochi.OnConnectAuthenticate, mochi.OnACLCheck, mochi.OnPublish, mochi.OnSubscribe}, []byte{x})
}

// OnConnectAuthenticate lets in a client whose ID is its certificate's CN.
func (b *Broker) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.down {
		return false
	}
	tc, ok := cl.Net.Conn.(*tls.Conn)
	if !ok {
		return false
	}
	peers := tc.ConnectionState().PeerCertificates
	if len(peers) == 0 || peers[0].Subject.CommonName != cl.ID {
		b.badIDs = append(b.badIDs, cl.ID)
		return false
	}
	return true
}

// OnACLCheck refuses the subscriptions set with SetRefused.
func (b *Broker) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write || cl.Net.Inline {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.refuse[topic]
}

// OnSubscribe records each SUBSCRIBE's filters, sorted.
func (b *Broker) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	var filters []string
	for _, f := range pk.Filters {
		filters = append(filters, f.Filter)
	}
	slices.Sort(filters)
	b.mu.Lock()
	b.subscribes = append(b.subscribes, filters)
	b.notifyLocked()
	b.mu.Unlock()
	return pk
}

// OnPublish records a device's message before it is acknowledged.
func (b *Broker) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if !cl.Net.Inline {
		b.mu.Lock()
		b.published = append(b.published, pk.Copy(false))
		b.notifyLocked()
		b.mu.Unlock()
	}
	return pk, nil
}

func (b *Broker) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// SetRefused makes the broker refuse subscriptions to exactly these topics.
func (b *Broker) SetRefused(topics ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refuse = map[string]bool{}
	for _, t := range topics {
		b.refuse[t] = true
	}
}

// SetDown makes the broker refuse (down) or accept connections.
func (b *Broker) SetDown(down bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.down = down
}

// Messages returns the payloads devices published on topic so far.
func (b *Broker) Messages(topic string) [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, pk := range b.published {
		if pk.TopicName == topic {
			out = append(out, pk.Payload)
		}
	}
	return out
}

// Topics returns the distinct topics devices published on so far.
func (b *Broker) Topics() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, pk := range b.published {
		if !slices.Contains(out, pk.TopicName) {
			out = append(out, pk.TopicName)
		}
	}
	return out
}

// Subscribes returns the filters of each SUBSCRIBE so far.
func (b *Broker) Subscribes() [][]string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.subscribes)
}

// BadClientIDs returns the client IDs refused for not matching their
// certificate.
func (b *Broker) BadClientIDs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.badIDs)
}

// WaitFor waits until cond holds and fails the test after a generous
// deadline: a guard against a hang, not a timed assertion.
func (b *Broker) WaitFor(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ch := b.changed
		b.mu.Unlock()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-time.After(20 * time.Millisecond): // state that changes without broker traffic
		case <-deadline.C:
			b.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// Send publishes a QoS 1 message to a device as the server would.
func (b *Broker) Send(topic string, payload []byte) {
	b.t.Helper()
	if err := b.srv.Publish(topic, payload, false, 1); err != nil {
		b.t.Fatal(err)
	}
}

// Kick closes a device's connection from the broker's side.
func (b *Broker) Kick(clientID string) {
	b.t.Helper()
	cl, ok := b.srv.Clients.Get(clientID)
	if !ok {
		b.t.Fatalf("client %s not connected", clientID)
	}
	cl.Stop(packets.ErrAdministrativeAction)
}

// Connected reports whether a client is connected now.
func (b *Broker) Connected(clientID string) bool {
	cl, ok := b.srv.Clients.Get(clientID)
	return ok && !cl.Closed()
}
