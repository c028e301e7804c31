package mqtt

import (
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward"
)

// session is one device connection as the broker sees it: who the
// certificate says it is, its lifecycle state (which the ACL reads), and the
// acknowledgements it is owed.
type session struct {
	steward.DeviceSession // State is not read from here after the handshake: see state

	b      *Broker
	conn   *deviceConn // the connection, to batch the writes of a flush
	remote string
	state  atomic.Value // steward.State; changed by SessionControl
	cl     atomic.Pointer[mochi.Client]
	v5     bool // set in OnConnect, before the session is shared
	dead   atomic.Bool

	mu       sync.Mutex
	room     sync.Cond // signalled when inflight drops or the session closes
	queue    []*pendingAck
	head     int  // queue[head:] are waiting, in arrival order
	inflight int  // acknowledgements owed, including the one being written
	flushing bool // a goroutine is writing acknowledgements
	inHook   bool // the read loop is inside OnPublish and will flush itself
	closed   bool
}

// pendingAck is one QoS 1 or 2 PUBLISH waiting for its acknowledgement.
type pendingAck struct {
	s       *session
	id      uint16
	qos     byte
	once    atomic.Bool
	settled bool   // guarded by s.mu
	send    bool   // write an acknowledgement (false: MQTT 3.1.1 after an error)
	code    byte   // reason code of the acknowledgement
	reason  string // v5 reason string for an error code
}

func (s *session) init(b *Broker, remote string) {
	s.b = b
	s.remote = remote
	s.room.L = &s.mu
}

func (s *session) authenticated(ds steward.DeviceSession) {
	s.DeviceSession = ds
	s.state.Store(ds.State)
}

func (s *session) currentState() steward.State {
	st, _ := s.state.Load().(steward.State)
	return st
}

func (s *session) setState(st steward.State) { s.state.Store(st) }

func (s *session) client() *mochi.Client { return s.cl.Load() }

func (s *session) isClosed() bool { return s.dead.Load() }

// markClosed stops taking messages and wakes a read loop waiting for room.
func (s *session) markClosed() {
	s.dead.Store(true)
	s.mu.Lock()
	s.closed = true
	s.room.Broadcast()
	s.mu.Unlock()
}

// enqueue reserves the acknowledgement of a QoS 1 or 2 message, in arrival
// order. While ReceiveMaximum acknowledgements are owed it waits, which
// stops the client's read loop: TCP back-pressure for MQTT 3.1.1 clients,
// which know nothing of a receive maximum (MQTT 5 clients respect the one
// CONNACK gave them and never get here). It returns nil once the session is
// closed. The caller must call hookDone afterwards.
func (s *session) enqueue(id uint16, qos byte) *pendingAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.inflight >= s.b.window && !s.closed {
		s.room.Wait()
	}
	if s.closed {
		return nil
	}
	p := &pendingAck{s: s, id: id, qos: qos}
	if s.head > 0 && len(s.queue) == cap(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.head = 0
	}
	s.queue = append(s.queue, p)
	s.inflight++
	s.inHook = true
	return p
}

// ack is the steward.Ack of a message: it settles the acknowledgement with
// the handler's verdict.
func (p *pendingAck) ack(err error) {
	if !p.once.CompareAndSwap(false, true) {
		p.s.b.log.Error("bus handler acknowledged a message twice", "device", p.s.DeviceID, "packet_id", p.id)
		return
	}
	if err == nil {
		p.settle(true, packets.CodeSuccess.Code, "")
		return
	}
	if !permanent(err) {
		// Not durable, try again: leave the message unacknowledged, in
		// both versions, and end the session (flush), so that the client
		// reconnects and sends it again. (An MQTT 5 PUBACK with an error
		// code would end the flow, and the message would be lost.)
		p.settle(false, 0, "")
		return
	}
	p.s.b.metrics.MessageRefused(handlerRefusal(err))
	if !p.s.v5 {
		// Refused for good: MQTT 3.1.1 has no negative acknowledgement, and
		// withholding it would make the client resend a poison message
		// after every reconnect; acknowledge and drop it.
		p.settle(true, packets.CodeSuccess.Code, "")
		return
	}
	code := reasonFor(err)
	p.settle(true, code.Code, steward.ErrorMessage(err))
}

// permanent reports whether a handler's error refuses the message for good
// (it will never be taken, however often it is sent) rather than failing
// to make it durable this time.
func permanent(err error) bool {
	switch steward.ErrorCode(err) {
	case steward.CodeInvalid, steward.CodePermissionDenied, steward.CodeUnauthenticated,
		steward.CodeFailedPrecondition, steward.CodeTooLarge, steward.CodeNotFound:
		return true
	}
	return false
}

// settle records the verdict and starts writing acknowledgements when this
// one is at the head of the queue.
func (p *pendingAck) settle(send bool, code byte, reason string) {
	s := p.s
	s.mu.Lock()
	p.settled, p.send, p.code, p.reason = true, send, code, reason
	run := s.startFlushLocked()
	s.mu.Unlock()
	if run {
		go s.flush()
	}
}

// hookDone ends OnPublish's hold on the queue; acknowledgements settled
// meanwhile (for example by a handler that acknowledged at once) are
// written right here, on the read loop, as mochi itself would.
func (s *session) hookDone() {
	s.mu.Lock()
	s.inHook = false
	run := s.startFlushLocked()
	s.mu.Unlock()
	if run {
		s.flush()
	}
}

func (s *session) startFlushLocked() bool {
	if s.flushing || s.inHook || s.head == len(s.queue) || !s.queue[s.head].settled {
		return false
	}
	s.flushing = true
	return true
}

// flush writes the settled acknowledgements at the head of the queue, in
// order, and stops at the first one still waiting for its handler. Only one
// flush runs at a time (s.flushing).
//
// When it passes a message that could not be made durable (left
// unacknowledged), it ends the session once it has written what was
// settled: the client resends unacknowledged messages only when it
// reconnects, and a client whose window is full of them would otherwise
// wait on a live connection for acknowledgements that never come.
func (s *session) flush() {
	wrote, failed := false, false
	// Deferred first, so it runs after releaseWrites has sent the acks.
	defer func() {
		if failed {
			s.b.log.Warn("mqtt session closed: a message could not be stored; the device sends it again when it reconnects", "device", s.DeviceID)
			go s.b.disconnect(s, packets.ErrServerBusy)
		}
	}()
	if s.conn != nil {
		s.conn.holdWrites()
		defer s.conn.releaseWrites()
	}
	for {
		s.mu.Lock()
		if wrote {
			s.inflight--
			s.room.Signal()
		}
		if s.head == len(s.queue) || !s.queue[s.head].settled {
			if s.head == len(s.queue) {
				clear(s.queue)
				s.queue, s.head = s.queue[:0], 0
			}
			s.flushing = false
			s.mu.Unlock()
			return
		}
		p := s.queue[s.head]
		s.queue[s.head] = nil
		s.head++
		s.mu.Unlock()
		failed = failed || !p.send
		s.write(p)
		wrote = true
	}
}

// write sends one acknowledgement. mochi's processPublish, when OnPublish
// returns packets.ErrRejectPacket, returns before it takes receive quota,
// stores the packet ID in the client's inflight map, or writes an ack, so
// all of that is the broker's business for the messages it took:
//   - QoS 1: PUBACK with the packet ID; nothing to store.
//   - QoS 2: PUBREC, stored in the client's inflight map as mochi does on
//     its own path, because mochi's processPubrel answers PUBCOMP (and
//     deletes the entry) only for a packet ID it finds there.
//   - the receive quota is left alone: mochi checks it for every PUBLISH,
//     QoS 0 included, before any hook, and would disconnect an MQTT 5 client
//     whose QoS 0 message arrives while its QoS 1 acks are still owed. The
//     window is enforced by enqueue instead.
func (s *session) write(p *pendingAck) {
	if !p.send {
		return
	}
	cl := s.client()
	if cl == nil {
		return
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Puback},
		PacketID:    p.id,
		ReasonCode:  p.code,
	}
	if p.qos == 2 {
		ack.FixedHeader.Type = packets.Pubrec
	}
	if p.code >= packets.ErrUnspecifiedError.Code {
		ack.Properties.ReasonString = p.reason
	} else if p.qos == 2 {
		ack.Created = time.Now().Unix()
		if cl.State.Inflight.Set(ack) {
			atomic.AddInt64(&s.b.server.Info.Inflight, 1) // processPubrel takes it off again
		}
	}
	if err := cl.WritePacket(ack); err != nil {
		s.b.log.Debug("mqtt ack not written", "device", s.DeviceID, "packet_id", p.id, "error", err)
	}
}

// reasonFor maps a handler's error to an MQTT 5 PUBACK/PUBREC reason code.
func reasonFor(err error) packets.Code {
	switch steward.ErrorCode(err) {
	case steward.CodeInvalid:
		return packets.ErrPayloadFormatInvalid
	case steward.CodePermissionDenied, steward.CodeUnauthenticated, steward.CodeFailedPrecondition:
		return packets.ErrNotAuthorized
	case steward.CodeTooLarge:
		return packets.ErrPacketTooLarge
	default:
		return packets.ErrUnspecifiedError
	}
}
