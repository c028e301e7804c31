package mqtt

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/steward-iot/steward"
)

// listenerID names the broker's one listener inside mochi.
const listenerID = "steward-mqtts"

// listener is a mochi listener that does the TLS handshake itself. mochi's
// own TCP listener hands the connection over before the handshake, with no
// deadline (a silent client holds a goroutine forever), and cannot tell the
// hooks who the certificate authenticated. Here the handshake runs on a
// short-lived goroutine under HandshakeTimeout, the gate is asked inside it
// (tls.Config.VerifyConnection, so a refused certificate fails the
// handshake), and mochi gets a connection that carries the session.
type listener struct {
	b  *Broker
	ln net.Listener

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // every open connection, from accept to the end of its session
	closed bool
}

// deviceConn is the connection mochi reads from: the TLS connection plus the
// session the handshake authenticated.
type deviceConn struct {
	*tls.Conn
	sess session

	wmu  sync.Mutex
	held *bytes.Buffer // non-nil while writes are held back (holdWrites)
}

// Write sends b, or appends it to the held-back writes. Every write of
// mochi and of the broker goes through here, so order is kept.
func (dc *deviceConn) Write(b []byte) (int, error) {
	dc.wmu.Lock()
	defer dc.wmu.Unlock()
	if dc.held != nil {
		return dc.held.Write(b)
	}
	return dc.Conn.Write(b)
}

// holdWrites makes writes collect in memory until releaseWrites sends them
// at once: the acknowledgements of a committed batch then leave in one TLS
// record and one system call instead of one each (16% of the server's CPU
// under telemetry load, docs/benchmarks.md).
func (dc *deviceConn) holdWrites() {
	dc.wmu.Lock()
	if dc.held == nil {
		dc.held = dc.sess.b.heldBuffers.Get().(*bytes.Buffer)
	}
	dc.wmu.Unlock()
}

// releaseWrites sends what was held back. A write error is mochi's to see
// on its next write or read; the acknowledgements lost with the connection
// were never received, so the client sends those messages again.
func (dc *deviceConn) releaseWrites() {
	dc.wmu.Lock()
	defer dc.wmu.Unlock()
	held := dc.held
	if held == nil {
		return
	}
	dc.held = nil
	if held.Len() > 0 {
		_, _ = dc.Conn.Write(held.Bytes())
	}
	held.Reset()
	dc.sess.b.heldBuffers.Put(held)
}

var _ listeners.Listener = (*listener)(nil)

func (l *listener) ID() string              { return listenerID }
func (l *listener) Address() string         { return l.ln.Addr().String() }
func (l *listener) Protocol() string        { return "mqtts" }
func (l *listener) Init(*slog.Logger) error { return nil } // bound in New

// Serve accepts connections until the listener is closed.
func (l *listener) Serve(establish listeners.EstablishFn) {
	var delay time.Duration
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and go on, as
			// net/http does, rather than give up the listener.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			l.b.log.Warn("mqtt accept failed", "error", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !l.track(conn) {
			_ = conn.Close()
			return
		}
		go l.handshake(conn, establish)
	}
}

// handshake authenticates conn and hands it to mochi on a new goroutine, so
// that the long-lived read loop does not keep the deep stack of the
// handshake.
func (l *listener) handshake(conn net.Conn, establish listeners.EstablishFn) {
	b := l.b
	dc := &deviceConn{}
	dc.sess.init(b, conn.RemoteAddr().String())
	dc.sess.conn = dc
	deadline := time.Now().Add(b.handshake)
	ctx, cancel := context.WithDeadline(b.ctx, deadline)
	tc := tls.Server(conn, b.tlsConfig)
	_ = conn.SetDeadline(deadline) // covers the handshake and the CONNECT; mochi sets its own after CONNECT
	err := tc.HandshakeContext(ctx)
	cancel()
	// The gate's verdict was filed under the peer certificate during the
	// handshake (see verifyConnection); take it whatever the outcome, so
	// that nothing is left behind.
	ds, verified := b.takeVerdict(tc.ConnectionState().PeerCertificates)
	if err != nil || !verified {
		if err == nil {
			err = errors.New("no verdict for the client certificate")
		}
		level, reason := slog.LevelDebug, RefusedHandshake // scanners, timeouts, clients that do not trust us
		var refused *steward.Error
		if errors.As(err, &refused) {
			level, reason = slog.LevelInfo, RefusedCertificate // the gate refused the certificate
		}
		b.metrics.ConnectRefused(reason)
		b.log.Log(b.ctx, level, "mqtt tls handshake failed", "remote", dc.sess.remote, "error", err)
		_ = tc.Close()
		l.untrack(conn)
		return
	}
	dc.sess.authenticated(ds)
	dc.Conn = tc
	go func() {
		defer l.untrack(conn)
		err := establish(listenerID, dc)
		b.log.Debug("mqtt session ended", "device", dc.sess.DeviceID, "remote", dc.sess.remote, "error", err)
		b.ended(&dc.sess, err)
	}()
}

// verifyConnection is the TLS configuration's VerifyConnection: it asks the
// gate about the client certificate, so that a certificate the gate refuses
// (unknown CA, expired, revoked, device decommissioned) fails the handshake
// with a bad_certificate alert. tls.Config.VerifyConnection sees no
// connection, and one shared tls.Config (rather than a clone per connection
// with a closure) saves ~0.5 KiB per session and keeps TLS session tickets
// valid across connections, so the verdict is filed under the leaf
// certificate (the same *x509.Certificate the connection's state holds
// afterwards) for the handshake goroutine to take. A resumed handshake may
// share that pointer with another one (crypto/tls interns certificates
// restored from tickets), hence a list per certificate. The price: the gate
// is not told the remote address; refused handshakes are logged with it.
func (b *Broker) verifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("no client certificate")
	}
	leaf := cs.PeerCertificates[0]
	ctx, cancel := context.WithTimeout(b.ctx, b.handshake)
	defer cancel()
	ds, err := b.gate.AuthenticateDevice(ctx, leaf, "")
	if err != nil {
		b.log.Debug("gate refused a device certificate", "subject", steward.Truncate(leaf.Subject.CommonName, 200), "error", err)
		return err
	}
	if !steward.ValidDeviceID(ds.DeviceID) {
		b.log.Warn("gate returned an invalid device id", "device", steward.Truncate(ds.DeviceID, 200))
		return errors.New("invalid device id")
	}
	b.verdictMu.Lock()
	b.verdicts[leaf] = append(b.verdicts[leaf], ds)
	b.verdictMu.Unlock()
	return nil
}

// takeVerdict removes and returns the gate's verdict on a handshake's leaf.
func (b *Broker) takeVerdict(peer []*x509.Certificate) (steward.DeviceSession, bool) {
	if len(peer) == 0 {
		return steward.DeviceSession{}, false
	}
	b.verdictMu.Lock()
	defer b.verdictMu.Unlock()
	vs := b.verdicts[peer[0]]
	if len(vs) == 0 {
		return steward.DeviceSession{}, false
	}
	ds := vs[len(vs)-1]
	if len(vs) == 1 {
		delete(b.verdicts, peer[0])
	} else {
		b.verdicts[peer[0]] = vs[:len(vs)-1]
	}
	return ds, true
}

func (l *listener) track(conn net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[conn] = struct{}{}
	l.b.conns.Add(1)
	return true
}

func (l *listener) untrack(conn net.Conn) {
	l.mu.Lock()
	delete(l.conns, conn)
	l.mu.Unlock()
	l.b.conns.Done()
}

// Close stops accepting and lets mochi disconnect its clients.
func (l *listener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	_ = l.ln.Close()
	closeClients(listenerID)
	l.closeAll()
}

// closeAll closes the connections mochi does not know yet (in the handshake
// or before CONNECT) and any it has not closed.
func (l *listener) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for c := range l.conns {
		_ = c.Close()
	}
}
