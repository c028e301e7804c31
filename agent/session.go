package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
)

// Timeouts of one MQTT connection.
const (
	connectTimeout = 30 * time.Second
	ackTimeout     = 30 * time.Second // a SUBACK or PUBACK
	quiesce        = 250              // milliseconds paho may take to say goodbye
	// firstResubscribe is the wait before the first retry of a refused
	// subscription; later ones wait ResubscribeInterval.
	firstResubscribe = time.Second
)

// conn is one MQTT connection. A new paho client is made for each: the
// agent keeps what must survive a connection (buffered samples, pending
// answers) itself, and the broker keeps the session (clean session off), so
// nothing depends on a client's state machine after a drop.
type conn struct {
	deviceID string
	client   mqtt.Client
	lost     chan struct{} // closed when the connection drops
	lostOnce sync.Once
	lostErr  error
}

func (c *conn) markLost(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lost)
	})
}

// wait waits for a paho token, the connection's loss, ctx or the timeout.
func (c *conn) wait(ctx context.Context, t mqtt.Token) error {
	timer := time.NewTimer(ackTimeout)
	defer timer.Stop()
	select {
	case <-t.Done():
		return t.Error()
	case <-c.lost:
		return fmt.Errorf("connection lost: %w", c.lostErr)
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return errors.New("no acknowledgement in time")
	}
}

// publish sends a QoS 1 message on a device channel and waits for its
// PUBACK.
func (c *conn) publish(ctx context.Context, ch steward.Channel, payload []byte) error {
	if err := c.wait(ctx, c.client.Publish(steward.Topic(c.deviceID, ch), 1, false, payload)); err != nil {
		return fmt.Errorf("publish on %s: %w", ch, err)
	}
	return nil
}

// inbound is a message from the server, tagged with its channel.
type inbound struct {
	ch      steward.Channel
	payload []byte
}

// sessionLoop keeps one MQTT connection up: connect, subscribe, report
// attributes, wait for the connection to drop, back off, again. The wait
// after a drop grows exponentially with full jitter and starts over once a
// connection has held for StableAfter.
func (a *Agent) sessionLoop(ctx context.Context, inbox chan<- inbound) {
	bo := a.newBackoff()
	for ctx.Err() == nil {
		// This connection uses the newest certificate: a renewal that
		// happened while disconnected needs no second reconnect.
		select {
		case <-a.reconnect:
		default:
		}
		id := a.identity()
		c, err := a.connect(ctx, id, inbox)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := bo.next()
			a.log.Warn("MQTT connect failed; will retry", "err", err, "attempt", bo.attempt, "retry_in", wait.Round(time.Millisecond))
			sleep(ctx, wait)
			continue
		}
		since := a.cfg.Clock.Now()
		a.connects.Add(1)
		a.log.Info("connected", "device", id.DeviceID, "broker", a.cfg.MQTTAddr)
		if err := a.onConnect(ctx, c); err != nil {
			c.markLost(err)
		} else {
			a.setConn(c)
		}

		renewed := a.hold(ctx, c)
		a.clearConn(c)
		c.client.Disconnect(quiesce)
		c.markLost(errors.New("disconnected"))
		switch {
		case ctx.Err() != nil:
			return
		case renewed:
			bo.reset()
			continue
		case a.cfg.Clock.Now().Sub(since) >= a.cfg.StableAfter:
			bo.reset()
		}
		wait := bo.next()
		a.log.Info("reconnecting", "attempt", bo.attempt, "in", wait.Round(time.Millisecond))
		sleep(ctx, wait)
	}
}

// hold waits for the end of a connection: its loss, a renewed certificate
// (then it reports true) or ctx. Meanwhile, every ResubscribeInterval, it
// asks again for the subscriptions the broker refused, which it grants
// once the device is out of quarantine; when none was refused it asks for
// the commands channel alone, to learn of a quarantine imposed during the
// session (MQTT 3.1.1 has no other way to say that a publish was refused).
// After a refusal the first retry comes soon: a refusal can also be
// passing (mochi refuses a SUBSCRIBE whose packet ID is in use by a message
// it is still redelivering from the persistent session).
func (a *Agent) hold(ctx context.Context, c *conn) (renewed bool) {
	first := a.cfg.ResubscribeInterval
	if len(a.refusedChannels()) > 0 {
		first = min(first, firstResubscribe)
	}
	retry := time.NewTimer(first)
	defer retry.Stop()
	for {
		select {
		case <-c.lost:
			a.log.Warn("connection lost", "err", c.lostErr)
			return false
		case <-a.reconnect:
			a.log.Info("reconnecting with the renewed certificate")
			return true
		case <-ctx.Done():
			return false
		case <-retry.C:
			channels := a.refusedChannels()
			if len(channels) == 0 {
				// No retained messages on this channel, so asking again
				// replays nothing.
				channels = []steward.Channel{steward.ChannelCmdReq}
			}
			if err := a.subscribe(ctx, c, channels); err != nil {
				c.markLost(err)
			}
			retry.Reset(a.cfg.ResubscribeInterval)
		}
	}
}

// connect opens an MQTT 3.1.1 connection over TLS with the operational
// certificate, client ID = device ID, clean session off.
func (a *Agent) connect(ctx context.Context, id *Identity, inbox chan<- inbound) (*conn, error) {
	c := &conn{deviceID: id.DeviceID, lost: make(chan struct{})}
	cert := id.TLS()
	prefix := "dev/" + id.DeviceID + "/"
	opts := mqtt.NewClientOptions().
		AddBroker("tls://" + a.cfg.MQTTAddr).
		SetClientID(id.DeviceID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(a.cfg.KeepAlive).
		SetConnectTimeout(connectTimeout).
		SetWriteTimeout(ackTimeout).
		SetTLSConfig(&tls.Config{
			RootCAs:              a.cfg.ServerCA,
			MinVersion:           tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		}).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) { c.markLost(err) }).
		// One handler for every topic: with a persistent session the broker
		// may deliver before this connection has subscribed anything.
		SetDefaultPublishHandler(func(_ mqtt.Client, m mqtt.Message) {
			ch, ok := strings.CutPrefix(m.Topic(), prefix)
			if !ok {
				a.log.Warn("message on a foreign topic ignored", "topic", m.Topic())
				return
			}
			// Blocking here holds paho's acknowledgement until the agent has
			// taken the message.
			select {
			case inbox <- inbound{ch: steward.Channel(ch), payload: m.Payload()}:
			case <-c.lost:
			case <-ctx.Done():
			}
		})
	c.client = mqtt.NewClient(opts)
	t := c.client.Connect()
	select {
	case <-t.Done():
	case <-ctx.Done():
		go func() { <-t.Done(); c.client.Disconnect(0) }()
		return nil, ctx.Err()
	}
	if err := t.Error(); err != nil {
		return nil, fmt.Errorf("connect to %s: %w", a.cfg.MQTTAddr, err)
	}
	return c, nil
}

// onConnect subscribes the device's server-to-device channels and reports
// its attributes.
func (a *Agent) onConnect(ctx context.Context, c *conn) error {
	if err := a.subscribe(ctx, c, steward.ServerToDevice); err != nil {
		return err
	}
	payload, err := json.Marshal(a.attributes())
	if err != nil {
		return fmt.Errorf("encode attributes: %w", err)
	}
	return c.publish(ctx, steward.ChannelAttributes, payload)
}

// subscribe subscribes channels and records which the broker refused. A
// refusal is logged and not retried at once: a quarantined device may not
// receive commands, and asking again straight away would only loop.
func (a *Agent) subscribe(ctx context.Context, c *conn, channels []steward.Channel) error {
	filters := map[string]byte{}
	for _, ch := range channels {
		filters[steward.Topic(c.deviceID, ch)] = 1
	}
	t := c.client.SubscribeMultiple(filters, nil)
	if err := c.wait(ctx, t); err != nil {
		return fmt.Errorf("subscribe: %w", err)
	}
	granted := t.(*mqtt.SubscribeToken).Result()
	var refused []steward.Channel
	for _, ch := range channels {
		// A granted QoS is 0, 1 or 2; 3.1.1 brokers refuse with 0x80, some
		// send an MQTT 5 reason code (0x87 not authorised) instead.
		if code, ok := granted[steward.Topic(c.deviceID, ch)]; !ok || code > 2 {
			refused = append(refused, ch)
		}
	}
	a.mu.Lock()
	before := len(a.refused)
	a.refused = refused
	a.mu.Unlock()
	switch {
	case len(refused) > 0:
		a.log.Warn("broker refused subscriptions; the device may be quarantined", "channels", refused)
	case before > 0:
		a.log.Info("subscriptions granted")
	}
	return nil
}

// restricted reports whether the broker refused the device its commands,
// as it does to a quarantined device, whose telemetry it does not take.
func (a *Agent) restricted() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.refused, steward.ChannelCmdReq)
}

// refusedChannels returns the channels refused on the current connection.
func (a *Agent) refusedChannels() []steward.Channel {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.refused)
}

// attributes returns the inventory report: Config.Attributes with the
// configured model, serial, firmware and hardware on top.
func (a *Agent) attributes() map[string]any {
	attrs := map[string]any{}
	maps.Copy(attrs, a.cfg.Attributes())
	for k, v := range map[string]string{
		steward.AttrModel:    a.cfg.Model,
		steward.AttrSerial:   a.cfg.Serial,
		steward.AttrFirmware: a.cfg.Firmware,
		steward.AttrHardware: a.cfg.Hardware,
	} {
		if v != "" {
			attrs[k] = v
		}
	}
	return attrs
}

func (a *Agent) setConn(c *conn) {
	a.mu.Lock()
	a.conn = c
	close(a.connUp)
	a.mu.Unlock()
	select {
	case a.flush <- struct{}{}:
	default:
	}
}

// clearConn forgets c if it is the live connection.
func (a *Agent) clearConn(c *conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conn == c {
		a.conn = nil
		a.connUp = make(chan struct{})
	}
}
