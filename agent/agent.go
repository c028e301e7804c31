package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
)

// Agent is one device talking to Steward.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	state stateDir
	rand  *lockedRand

	running atomic.Bool

	mu     sync.Mutex
	id     *Identity
	conn   *conn         // the live MQTT connection, nil when there is none
	connUp chan struct{} // closed when conn is set; replaced when it is cleared
	// refused lists the channels the broker refused at the last
	// subscription (a quarantined device may not receive commands).
	refused []steward.Channel

	reconnect chan struct{} // a renewed certificate wants a new connection
	flush     chan struct{} // a new connection can take the buffered samples

	tele    telemetryBuffer
	updates *updater
	twin    *twinAgent // the device twin (twin.go)

	stop  context.CancelFunc // ends Run (after a wipe); set by Run
	wiped atomic.Bool        // the credentials were erased on command (credentials.go)

	connects, renewals, commands, telemetrySent, telemetryDropped atomic.Int64
}

// New checks cfg and returns an agent; Run starts it.
func New(cfg Config) (*Agent, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg:       cfg,
		log:       cfg.Logger,
		state:     stateDir(cfg.StateDir),
		rand:      &lockedRand{r: cfg.Rand},
		connUp:    make(chan struct{}),
		reconnect: make(chan struct{}, 1),
		flush:     make(chan struct{}, 1),
		tele:      telemetryBuffer{max: cfg.TelemetryBuffer},
	}
	a.updates = newUpdater(a)
	a.twin = newTwinAgent(a)
	return a, nil
}

// Status is a snapshot of an agent's progress.
type Status struct {
	DeviceID     string    `json:"device_id,omitempty"`     // empty before the first enrollment
	Enrolled     bool      `json:"enrolled"`                // holds an operational certificate
	Connected    bool      `json:"connected"`               // connected, subscribed and attributes reported
	CertNotAfter time.Time `json:"cert_not_after,omitzero"` // end of the certificate's validity
	// Refused lists the channels whose subscription the broker refused on
	// the current connection.
	Refused          []steward.Channel `json:"refused,omitempty"`
	Connects         int64             `json:"connects"`          // MQTT connections made
	Renewals         int64             `json:"renewals"`          // certificates renewed (or re-enrolled after expiry)
	Commands         int64             `json:"commands"`          // commands answered
	TelemetrySent    int64             `json:"telemetry_sent"`    // samples the broker acknowledged
	TelemetryDropped int64             `json:"telemetry_dropped"` // samples dropped from a full buffer
	TelemetryPending int               `json:"telemetry_pending"` // samples waiting to be sent
}

// Status returns the agent's progress.
func (a *Agent) Status() Status {
	a.mu.Lock()
	s := Status{Connected: a.conn != nil, Refused: append([]steward.Channel(nil), a.refused...)}
	if a.id != nil {
		s.DeviceID, s.Enrolled, s.CertNotAfter = a.id.DeviceID, true, a.id.Cert.NotAfter
	}
	a.mu.Unlock()
	s.Connects = a.connects.Load()
	s.Renewals = a.renewals.Load()
	s.Commands = a.commands.Load()
	s.TelemetrySent = a.telemetrySent.Load()
	s.TelemetryDropped = a.telemetryDropped.Load()
	s.TelemetryPending = a.tele.len()
	return s
}

// DeviceID returns the device ID, empty before the first enrollment.
func (a *Agent) DeviceID() string {
	if id := a.identity(); id != nil {
		return id.DeviceID
	}
	return ""
}

// Run enrolls if need be, then keeps the device connected, reporting and
// answering, and its certificate renewed, until ctx ends. It returns nil
// when ctx ends, and an error only when it cannot go on at all (a damaged
// identity file). An agent runs once at a time.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent is already running")
	}
	defer a.running.Store(false)
	if err := a.state.ensure(); err != nil {
		return err
	}
	if err := a.checkWiped(); err != nil { // credentials.go
		return err
	}
	id, err := a.startIdentity(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	a.setIdentity(id)
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	a.mu.Lock()
	a.stop = stop
	a.mu.Unlock()

	// Room for bursts: a full inbox holds up paho (and so its acknowledgements)
	// until the command in hand is answered or times out.
	inbox := make(chan inbound, 64)
	var wg sync.WaitGroup
	wg.Go(func() { a.sessionLoop(ctx, inbox) })
	wg.Go(func() { a.renewLoop(ctx) })
	wg.Go(func() { a.telemetryLoop(ctx) })
	wg.Go(func() { a.inboxLoop(ctx, inbox) })
	wg.Go(func() { a.updates.run(ctx) })
	wg.Go(func() { a.twin.run(ctx) })
	wg.Wait()
	a.log.Info("agent stopped", "device", id.DeviceID)
	return nil
}

func (a *Agent) identity() *Identity {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.id
}

func (a *Agent) setIdentity(id *Identity) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.id = id
}

func (a *Agent) newBackoff() *backoff {
	return &backoff{min: a.cfg.BackoffMin, max: a.cfg.BackoffMax, rand: a.rand}
}

// requestReconnect asks the session loop for a new connection.
func (a *Agent) requestReconnect() {
	select {
	case a.reconnect <- struct{}{}:
	default:
	}
}

// waitConn returns the live connection, waiting for one until ctx ends.
func (a *Agent) waitConn(ctx context.Context) (*conn, error) {
	for {
		a.mu.Lock()
		c, up := a.conn, a.connUp
		a.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func (a *Agent) currentConn() *conn {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.conn
}

// errNotConnected is returned by publishes while there is no connection.
var errNotConnected = errors.New("not connected")

// publish sends a QoS 1 message on one of the device's channels over the
// live connection and waits for the broker's acknowledgement.
func (a *Agent) publish(ctx context.Context, ch steward.Channel, payload []byte) error {
	c := a.currentConn()
	if c == nil {
		return errNotConnected
	}
	return c.publish(ctx, ch, payload)
}

// publishEventually publishes, waiting for a connection and trying again
// on the next one when a connection drops before the acknowledgement, up to
// tries times.
func (a *Agent) publishEventually(ctx context.Context, ch steward.Channel, payload []byte, tries int) error {
	var err error
	for range tries {
		var c *conn
		c, err = a.waitConn(ctx)
		if err != nil {
			return err
		}
		if err = c.publish(ctx, ch, payload); err == nil {
			return nil
		}
		// Let the session loop see the drop before asking for a
		// connection again, so that the next try is on a new one.
		select {
		case <-c.lost:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("publish on %s: %w", ch, err)
}
