// Package mqtt is Steward's device-plane MQTT broker: an embedded mochi-mqtt
// server (MQTT 3.1.1 and 5 over mutual TLS) with Steward's identity, ACL,
// payload limits, presence and acknowledgement rules as hooks. It is the only
// package that knows MQTT: devices' messages leave it through a steward.Bus,
// and services reach devices through the same Bus.
//
// Identity comes from the TLS client certificate only: the gate
// (steward.DeviceGate) authenticates it during the handshake, the MQTT client
// ID must equal the certificate's device ID, usernames and passwords are
// ignored. A device may publish only dev/{own id}/{c} for c in
// steward.DeviceToServer and subscribe only to dev/{own id}/{c} for c in
// steward.ServerToDevice (exact topics, no wildcards); a quarantined device
// only what its tenant's quarantine policy allows (Config.Quarantine; by
// default steward.QuarantineMayPublish and QuarantineMaySubscribe).
//
// A QoS 1 message is acknowledged (PUBACK; PUBREC for QoS 2) only after the
// Bus handler of its channel has acknowledged it, in the order the client sent
// the messages, without holding the client's read loop for the wait.
package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward"
)

// Defaults of Config.
const (
	DefaultMaxPayload       = 256 << 10
	DefaultReceiveMaximum   = 64
	DefaultHandshakeTimeout = 10 * time.Second
)

const (
	// packetOverhead is what an MQTT packet may carry beyond its payload
	// (fixed header, topic, packet ID, v5 properties). MaxPayload plus this is
	// the hard packet limit mochi enforces before it allocates a packet.
	packetOverhead = 8 << 10
	// maxPacket is MQTT's largest encodable packet (remaining length 268,435,455).
	maxPacket = 268435455
	// sessionExpiry bounds how long mochi keeps a disconnected persistent
	// session (and the QoS 1 messages queued for it).
	sessionExpiry = 3600
	// eventQueue bounds the security events waiting to be recorded; beyond
	// it events are dropped and counted, so a flood cannot stall the broker.
	eventQueue = 1024
	// disconnectWriteTimeout bounds the write of a server DISCONNECT to a
	// client that does not read, so a Close takes effect at once.
	disconnectWriteTimeout = time.Second
)

// Config configures a Broker.
type Config struct {
	// Addr is the TCP address of the MQTT over TLS listener, e.g. ":8883".
	Addr string
	// TLS holds the server certificate. The broker uses a clone that requires
	// a client certificate and verifies it with Gate during the handshake.
	TLS *tls.Config
	// Gate authenticates device certificates and records security events.
	Gate steward.DeviceGate
	// Bus carries device messages, outbound messages, session controls and
	// presence.
	Bus steward.Bus
	// MaxPayload is the largest PUBLISH payload accepted, in bytes
	// (default DefaultMaxPayload).
	MaxPayload int
	// ReceiveMaximum bounds the QoS 1 and 2 messages of one client that
	// wait for their acknowledgement (default DefaultReceiveMaximum). MQTT 5
	// clients are told in CONNACK; an MQTT 3.1.1 client that goes beyond it
	// is not read from until acknowledgements free room.
	ReceiveMaximum uint16
	// HandshakeTimeout bounds the TLS handshake and the CONNECT that follows
	// (default DefaultHandshakeTimeout).
	HandshakeTimeout time.Duration
	// Clock stamps received messages, presence and security events
	// (default steward.SystemClock).
	Clock steward.Clock
	// Logger receives the broker's logs (default: discarded).
	Logger *slog.Logger
	// Metrics receives the broker's counts (default: none).
	Metrics Metrics
	// Quarantine tells what a quarantined device of a tenant may still
	// publish and subscribe to (default: steward.QuarantineMayPublish and
	// QuarantineMaySubscribe for every tenant). It is asked at every
	// decision about a quarantined device, on the device's read loop, so it
	// should answer from memory (quarantine.Service caches each tenant's
	// policy and reads the store at most once per CacheTTL).
	Quarantine steward.QuarantineAllowance
}

// Broker is the embedded MQTT broker of the device plane.
type Broker struct {
	// heldBuffers recycles the buffers of held-back writes (see
	// deviceConn.holdWrites), so that an idle session keeps none.
	heldBuffers sync.Pool

	gate       steward.DeviceGate
	bus        steward.Bus
	clock      steward.Clock
	log        *slog.Logger
	maxPayload int
	window     int
	handshake  time.Duration
	tlsConfig  *tls.Config
	metrics    Metrics
	quarantine steward.QuarantineAllowance
	qos0Ack    steward.Ack // settles QoS 0 messages; made once, so that OnPublish does not allocate a closure

	server *mochi.Server
	ln     *listener

	ctx    context.Context // handed to the gate and the Bus; cancelled by Close
	cancel context.CancelFunc

	mu       sync.Mutex
	sessions map[string]*session // live session of each device ID on this node

	verdictMu sync.Mutex
	verdicts  map[*x509.Certificate][]steward.DeviceSession // the gate's verdicts, during handshakes

	events        chan steward.SecurityEvent
	eventsDone    chan struct{}
	eventsDropped atomic.Uint64
	presence      *presenceQueue

	conns     sync.WaitGroup // connection goroutines
	serving   atomic.Bool
	closing   atomic.Bool
	closeOnce sync.Once
	done      chan struct{}
}

// New checks cfg, binds the listener and prepares the broker; Serve starts it.
func New(cfg Config) (*Broker, error) {
	switch {
	case cfg.TLS == nil || (len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil):
		return nil, steward.Errorf(steward.CodeInvalid, "mqtt: a TLS server certificate is required")
	case cfg.Gate == nil:
		return nil, steward.Errorf(steward.CodeInvalid, "mqtt: a device gate is required")
	case cfg.Bus == nil:
		return nil, steward.Errorf(steward.CodeInvalid, "mqtt: a bus is required")
	case cfg.MaxPayload < 0 || cfg.MaxPayload > maxPacket-packetOverhead:
		return nil, steward.Errorf(steward.CodeInvalid, "mqtt: max payload must be between 0 and %d bytes", maxPacket-packetOverhead)
	case cfg.HandshakeTimeout < 0:
		return nil, steward.Errorf(steward.CodeInvalid, "mqtt: handshake timeout must not be negative")
	}
	b := &Broker{
		heldBuffers: sync.Pool{New: func() any { return new(bytes.Buffer) }},
		gate:        cfg.Gate,
		bus:         cfg.Bus,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		maxPayload:  cfg.MaxPayload,
		window:      int(cfg.ReceiveMaximum),
		handshake:   cfg.HandshakeTimeout,
		metrics:     cfg.Metrics,
		quarantine:  cfg.Quarantine,
		sessions:    map[string]*session{},
		verdicts:    map[*x509.Certificate][]steward.DeviceSession{},
		events:      make(chan steward.SecurityEvent, eventQueue),
		eventsDone:  make(chan struct{}),
		done:        make(chan struct{}),
	}
	if b.clock == nil {
		b.clock = steward.SystemClock{}
	}
	if b.metrics == nil {
		b.metrics = noMetrics{}
	}
	b.qos0Ack = b.settleQoS0
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.maxPayload == 0 {
		b.maxPayload = DefaultMaxPayload
	}
	if b.window == 0 {
		b.window = DefaultReceiveMaximum
	}
	if b.handshake == 0 {
		b.handshake = DefaultHandshakeTimeout
	}
	b.tlsConfig = cfg.TLS.Clone()
	b.tlsConfig.ClientAuth = tls.RequireAnyClientCert // the gate verifies, against each tenant's CA
	if b.tlsConfig.MinVersion < tls.VersionTLS12 {
		b.tlsConfig.MinVersion = tls.VersionTLS12
	}
	b.tlsConfig.VerifyConnection = b.verifyConnection
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.presence = newPresenceQueue()

	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumPacketSize = uint32(b.maxPayload + packetOverhead)
	caps.ReceiveMaximum = uint16(b.window)
	caps.MaximumInflight = 256 // outbound QoS 1/2 per client; also caps a client's own receive maximum
	caps.MaximumClientWritesPending = 16
	caps.MaximumSessionExpiryInterval = sessionExpiry
	// 0 keeps retained messages (twin/desired) until replaced; mochi would
	// otherwise delete every retained message a day after it was set.
	caps.MaximumMessageExpiryInterval = 0
	caps.TopicAliasMaximum = 0
	caps.SharedSubAvailable = 0
	caps.WildcardSubAvailable = 0
	caps.MinimumProtocolVersion = 4 // MQTT 3.1.1 and 5
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	b.server = mochi.New(&mochi.Options{
		Capabilities:             caps,
		ClientNetReadBufferSize:  512,
		ClientNetWriteBufferSize: 512,
		Logger:                   b.log.With("component", "mochi"),
		SysTopicResendInterval:   60,
		InlineClient:             true, // Send publishes through it
	})
	if err := b.server.AddHook(&hook{b: b}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add hook: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mqtt: listen on %s: %w", cfg.Addr, err)
	}
	b.ln = &listener{b: b, ln: ln, conns: map[net.Conn]struct{}{}}
	if err := b.server.AddListener(b.ln); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("mqtt: add listener: %w", err)
	}
	go b.recordEvents()
	go b.presence.run(b.ctx, b.bus)
	return b, nil
}

// Addr is the address the broker listens on.
func (b *Broker) Addr() net.Addr { return b.ln.ln.Addr() }

// Serve registers the broker on the Bus (outbound messages and session
// controls), accepts devices, and returns once ctx is done or Close is called.
func (b *Broker) Serve(ctx context.Context) error {
	if b.closing.Load() {
		return steward.Errorf(steward.CodeFailedPrecondition, "mqtt: broker closed")
	}
	if !b.serving.CompareAndSwap(false, true) {
		return steward.Errorf(steward.CodeFailedPrecondition, "mqtt: broker already serving")
	}
	b.bus.HandleSend(b.send)
	b.bus.HandleControl(b.control)
	if err := b.server.Serve(); err != nil {
		return fmt.Errorf("mqtt: serve: %w", err)
	}
	b.log.Info("mqtt broker serving", "addr", b.Addr().String())
	select {
	case <-ctx.Done():
		return b.Close()
	case <-b.done:
		return nil
	}
}

// Close disconnects every device, stops the listener and waits until the
// presence changes and security events of the closed sessions are handed on.
// It is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		b.closing.Store(true)
		b.mu.Lock()
		for _, s := range b.sessions {
			s.markClosed() // wakes read loops waiting for acknowledgement room
			if cl := s.client(); cl != nil && cl.Net.Conn != nil {
				// mochi writes each client a DISCONNECT: do not wait long
				// for one that does not read.
				_ = cl.Net.Conn.SetWriteDeadline(time.Now().Add(disconnectWriteTimeout))
			}
		}
		b.mu.Unlock()
		_ = b.server.Close() // closes the listener and every client, waits for mochi's client loops
		b.ln.closeAll()
		b.conns.Wait()
		b.presence.close()
		close(b.events)
		<-b.eventsDone
		b.cancel()
		close(b.done)
	})
	return nil
}

// send delivers an outbound message: the Bus's HandleSend handler.
func (b *Broker) send(_ context.Context, m steward.OutboundMessage) error {
	switch {
	case b.closing.Load():
		return steward.Errorf(steward.CodeUnavailable, "device plane stopped")
	case !steward.ValidDeviceID(m.DeviceID):
		return steward.Errorf(steward.CodeInvalid, "invalid device id")
	case !slices.Contains(steward.ServerToDevice, m.Channel):
		return steward.Errorf(steward.CodeInvalid, "channel %q is not a server-to-device channel", m.Channel)
	case m.QoS > 2:
		return steward.Errorf(steward.CodeInvalid, "qos must be 0, 1 or 2")
	case len(m.Payload) > b.maxPayload:
		return steward.Errorf(steward.CodeTooLarge, "payload over %d bytes", b.maxPayload)
	}
	s := b.lookup(m.DeviceID)
	if s != nil && s.TenantID != m.TenantID {
		return steward.Errorf(steward.CodeNotFound, "device not connected")
	}
	if (s == nil || s.isClosed()) && !m.Retain {
		return steward.Errorf(steward.CodeNotFound, "device not connected")
	}
	// mochi keeps the payload (retained store, outbound queue): give it its own copy.
	payload := slices.Clone(m.Payload)
	if payload == nil {
		payload = []byte{} // an empty retained message clears the topic
	}
	if err := b.server.Publish(steward.Topic(m.DeviceID, m.Channel), payload, m.Retain, m.QoS); err != nil {
		return steward.WrapError(steward.CodeInternal, err, "publish to device")
	}
	return nil
}

// control applies a session control: the Bus's HandleControl handler.
func (b *Broker) control(_ context.Context, c steward.SessionControl) {
	s := b.lookup(c.DeviceID)
	if s == nil || s.TenantID != c.TenantID {
		return
	}
	if c.Serial != "" && s.CertSerial != c.Serial {
		return // the live session uses another certificate
	}
	if c.State.Valid() {
		s.setState(c.State)
	}
	if c.Close || c.State == steward.StateDecommissioned {
		b.log.Info("closing device session", "tenant", c.TenantID, "device", c.DeviceID, "reason", c.Reason)
		b.disconnect(s, packets.ErrAdministrativeAction)
	}
}

// disconnect ends a live session at once.
func (b *Broker) disconnect(s *session, code packets.Code) {
	s.markClosed()
	cl := s.client()
	if cl == nil {
		return
	}
	if !s.v5 {
		cl.Stop(code) // MQTT 3.1.1 has no server DISCONNECT: close the connection
		return
	}
	if cl.Net.Conn != nil {
		_ = cl.Net.Conn.SetWriteDeadline(time.Now().Add(disconnectWriteTimeout))
	}
	_ = b.server.DisconnectClient(cl, code) // writes DISCONNECT with the reason, then closes
	cl.Stop(code)
}

func (b *Broker) lookup(deviceID string) *session {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.sessions[deviceID]
}

// register makes s the live session of its device, before mochi takes over
// (and disconnects) an older session with the same client ID: from here on
// the older session's end does not mark the device offline.
func (b *Broker) register(s *session) {
	b.mu.Lock()
	old := b.sessions[s.DeviceID]
	b.sessions[s.DeviceID] = s
	b.mu.Unlock()
	if old != nil && old != s {
		old.markClosed()
	}
}

// online announces s unless a newer session has already replaced it. The
// presence queue is filled under b.mu so that its order is the order of the
// registry's decisions.
func (b *Broker) online(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sessions[s.DeviceID] != s {
		return
	}
	b.presence.push(steward.PresenceChange{TenantID: s.TenantID, DeviceID: s.DeviceID, Online: true, At: b.clock.Now(), RemoteAddr: s.remote})
}

// ended is called once the connection of s is over, whatever ended it.
func (b *Broker) ended(s *session, err error) {
	s.markClosed()
	if s.DeviceID == "" {
		return // the handshake failed: no device
	}
	if errors.Is(err, packets.ErrPacketTooLarge) {
		b.metrics.MessageRefused(RefusedTooLarge)
		b.securityEvent(s, steward.SecPayloadTooLarge, fmt.Sprintf("packet over %d bytes", b.maxPayload+packetOverhead))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sessions[s.DeviceID] != s {
		return // never established, or taken over by a newer session
	}
	delete(b.sessions, s.DeviceID)
	b.presence.push(steward.PresenceChange{TenantID: s.TenantID, DeviceID: s.DeviceID, Online: false, At: b.clock.Now(), RemoteAddr: s.remote})
}

// securityEvent queues an event for the gate without ever waiting.
func (b *Broker) securityEvent(s *session, kind steward.SecurityEventKind, detail string) {
	e := steward.SecurityEvent{TenantID: s.TenantID, DeviceID: s.DeviceID, Kind: kind, Detail: detail, Remote: s.remote, At: b.clock.Now()}
	if b.closing.Load() {
		return // the queue is being drained and closed
	}
	select {
	case b.events <- e:
	default:
		if n := b.eventsDropped.Add(1); n&(n-1) == 0 { // log at 1, 2, 4, 8, … drops
			b.log.Warn("security event queue full, events dropped", "dropped", n, "kind", kind, "device", s.DeviceID)
		}
	}
}

// SecurityEventsDropped is how many security events were dropped because
// the gate could not keep up.
func (b *Broker) SecurityEventsDropped() uint64 { return b.eventsDropped.Load() }

func (b *Broker) recordEvents() {
	defer close(b.eventsDone)
	for e := range b.events {
		b.gate.RecordSecurityEvent(b.ctx, e)
	}
}
