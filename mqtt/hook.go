package mqtt

import (
	"bytes"
	"fmt"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward"
)

// hook is Steward's mochi hook: identity, ACL, limits, presence and the
// hand-over of device messages to the Bus.
type hook struct {
	mochi.HookBase
	b *Broker
}

func (h *hook) ID() string { return "steward" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{
		mochi.OnConnect,
		mochi.OnConnectAuthenticate,
		mochi.OnSessionEstablish,
		mochi.OnSessionEstablished,
		mochi.OnACLCheck,
		mochi.OnSubscribe,
		mochi.OnPacketRead,
		mochi.OnPublish,
		mochi.OnPacketEncode,
		mochi.OnWill,
	}, []byte{b})
}

// sessionOf returns the session of a device connection, nil for mochi's
// inline client (which has no connection).
func sessionOf(cl *mochi.Client) *session {
	if dc, ok := cl.Net.Conn.(*deviceConn); ok {
		return &dc.sess
	}
	return nil
}

// OnConnect checks the CONNECT against the certificate: the client ID must be
// the device ID, and a will must be something the device may publish.
func (h *hook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	s := sessionOf(cl)
	if s == nil || s.DeviceID == "" {
		h.b.metrics.ConnectRefused(RefusedCertificate)
		return h.refuseConnect(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized)
	}
	s.v5 = cl.Properties.ProtocolVersion == 5
	if cl.ID != s.DeviceID {
		h.b.metrics.ConnectRefused(RefusedClientID)
		h.b.securityEvent(s, steward.SecClientIDMismatch, fmt.Sprintf("client id %q, certificate %q", steward.Truncate(cl.ID, 200), s.DeviceID))
		return h.refuseConnect(cl, packets.ErrClientIdentifierNotValid, packets.Err3ClientIdentifierNotValid)
	}
	if pk.Connect.WillFlag {
		if _, kind := s.mayPublish(pk.Connect.WillTopic); kind != "" {
			h.b.metrics.ConnectRefused(RefusedWill)
			h.b.securityEvent(s, kind, fmt.Sprintf("will on topic %q refused", steward.Truncate(pk.Connect.WillTopic, 200)))
			return h.refuseConnect(cl, packets.ErrNotAuthorized, packets.Err3NotAuthorized)
		}
		if len(pk.Connect.WillPayload) > h.b.maxPayload {
			h.b.metrics.ConnectRefused(RefusedWill)
			h.b.securityEvent(s, steward.SecPayloadTooLarge, fmt.Sprintf("will payload of %d bytes, limit %d", len(pk.Connect.WillPayload), h.b.maxPayload))
			return h.refuseConnect(cl, packets.ErrPacketTooLarge, packets.Err3NotAuthorized)
		}
	}
	s.cl.Store(cl)
	return nil
}

// refuseConnect answers CONNACK with the reason (mochi's OnConnect error path
// closes the connection without one) and returns the error that makes mochi
// drop the connection.
func (h *hook) refuseConnect(cl *mochi.Client, v5, v3 packets.Code) error {
	code := v5
	if cl.Properties.ProtocolVersion < 5 {
		code = v3
	}
	_ = h.b.server.SendConnack(cl, code, false, nil)
	return v5
}

// OnConnectAuthenticate lets in the connections whose certificate the gate
// accepted during the handshake; usernames and passwords play no part.
func (h *hook) OnConnectAuthenticate(cl *mochi.Client, _ packets.Packet) bool {
	s := sessionOf(cl)
	return s != nil && s.client() == cl
}

// OnSessionEstablish runs before mochi takes over an older session with the
// same client ID.
func (h *hook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if s := sessionOf(cl); s != nil {
		h.b.register(s)
	}
}

// OnSessionEstablished runs once CONNACK is written.
func (h *hook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if s := sessionOf(cl); s != nil {
		h.b.metrics.Connected()
		h.b.online(s)
	}
}

// OnACLCheck answers mochi's checks. Publishes are decided in OnPublish
// (where the refusal can be acknowledged in order), so writes pass here.
// Reads are subscriptions (events recorded in OnSubscribe) and deliveries,
// which follow the device's current state.
func (h *hook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	s := sessionOf(cl)
	if s == nil {
		return false
	}
	if write {
		return true
	}
	_, kind := s.maySubscribe(topic)
	return kind == ""
}

// OnSubscribe records a security event for every filter the ACL will refuse
// (mochi then answers SUBACK with "not authorized", 0x80 for MQTT 3.1.1).
func (h *hook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	s := sessionOf(cl)
	if s == nil {
		return pk
	}
	for _, f := range pk.Filters {
		if _, kind := s.maySubscribe(f.Filter); kind != "" {
			h.b.securityEvent(s, kind, fmt.Sprintf("subscribe to %q refused", steward.Truncate(f.Filter, 200)))
		}
	}
	return pk
}

// sysMarker prefixes a $SYS topic name in OnPacketRead; see there.
const sysMarker = "\x00"

// OnPacketRead sees a PUBLISH before mochi validates it. mochi drops a
// PUBLISH to a $SYS topic without a word (no PUBACK, no hook), so its name
// is marked here to reach OnPublish, which refuses it like any other topic
// outside the device's own. A topic name with a wildcard is a protocol
// violation that mochi answers by closing the connection; it is recorded
// here, as it never reaches OnPublish.
func (h *hook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish || cl.Net.Inline {
		return pk, nil
	}
	s := sessionOf(cl)
	if s == nil {
		return pk, nil
	}
	switch {
	case strings.ContainsAny(pk.TopicName, "+#"):
		h.b.metrics.MessageRefused(RefusedACL)
		h.b.securityEvent(s, steward.SecACLDenied, fmt.Sprintf("publish to %q refused: wildcard in a topic name", steward.Truncate(pk.TopicName, 200)))
	case len(pk.TopicName) >= len(mochi.SysPrefix) && strings.EqualFold(pk.TopicName[:len(mochi.SysPrefix)], mochi.SysPrefix):
		pk.TopicName = sysMarker + pk.TopicName
	}
	return pk, nil
}

// OnPublish takes every device PUBLISH out of mochi's flow (ErrRejectPacket:
// no PUBACK, no retain, no routing to subscribers) and hands it to the Bus;
// the acknowledgement is written when the handler acknowledges.
//
// A refused QoS 1/2 PUBLISH is answered in order with the other
// acknowledgements: MQTT 5 gets "not authorized" (0x87). MQTT 3.1.1 has no
// negative acknowledgement and lets the server either acknowledge and
// discard or close the connection [MQTT-3.3.5-2]; Steward acknowledges and
// discards. Closing would make a client with a persistent session send the
// same refused message again after every reconnect, a loop of full mTLS
// handshakes, while the refusal is recorded as a security event either way.
func (h *hook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // Send: mochi retains and routes it
	}
	s := sessionOf(cl)
	if s == nil || s.isClosed() {
		return pk, packets.ErrRejectPacket
	}
	b := h.b
	qos := pk.FixedHeader.Qos
	if len(pk.Payload) > b.maxPayload {
		// Packets over the hard limit never get here: mochi drops the
		// connection while reading them (see Broker.ended).
		b.metrics.MessageRefused(RefusedTooLarge)
		b.securityEvent(s, steward.SecPayloadTooLarge, fmt.Sprintf("payload of %d bytes on %q, limit %d", len(pk.Payload), steward.Truncate(pk.TopicName, 200), b.maxPayload))
		b.disconnect(s, packets.ErrPacketTooLarge)
		return pk, packets.ErrRejectPacket
	}
	ch, kind := s.mayPublish(pk.TopicName)
	if kind != "" {
		b.metrics.MessageRefused(refusedReason(kind))
		b.securityEvent(s, kind, fmt.Sprintf("publish to %q refused", steward.Truncate(strings.TrimPrefix(pk.TopicName, sysMarker), 200)))
		if qos == 0 {
			return pk, packets.ErrRejectPacket
		}
		if p := s.enqueue(pk.PacketID, qos); p != nil {
			if s.v5 {
				p.settle(true, packets.ErrNotAuthorized.Code, packets.ErrNotAuthorized.Reason)
			} else {
				p.settle(true, packets.CodeSuccess.Code, "")
			}
			s.hookDone()
		}
		return pk, packets.ErrRejectPacket
	}
	m := steward.DeviceMessage{
		TenantID: s.TenantID,
		DeviceID: s.DeviceID,
		Channel:  ch,
		Payload:  pk.Payload, // mochi decodes every packet from a fresh buffer
		QoS:      qos,
		Received: b.clock.Now(),
	}
	b.metrics.MessageReceived(ch)
	if qos == 0 {
		b.bus.PublishInbound(b.ctx, m, b.qos0Ack)
		return pk, packets.ErrRejectPacket
	}
	p := s.enqueue(pk.PacketID, qos)
	if p == nil {
		return pk, packets.ErrRejectPacket
	}
	b.bus.PublishInbound(b.ctx, m, p.ack)
	s.hookDone()
	return pk, packets.ErrRejectPacket
}

// settleQoS0 settles a QoS 0 message: there is nothing to acknowledge,
// only a refusal to count.
func (b *Broker) settleQoS0(err error) {
	if err != nil && permanent(err) {
		b.metrics.MessageRefused(handlerRefusal(err))
	}
}

// OnPacketEncode completes mochi's MQTT 5 CONNACK with the limits it
// enforces but does not announce.
func (h *hook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Connack || cl.Properties.ProtocolVersion != 5 || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	pk.Properties.MaximumPacketSize = h.b.server.Options.Capabilities.MaximumPacketSize
	pk.Properties.WildcardSubAvailable, pk.Properties.WildcardSubAvailableFlag = 0, true
	pk.Properties.SharedSubAvailable, pk.Properties.SharedSubAvailableFlag = 0, true
	return pk
}

// OnWill hands a device's will (checked at CONNECT) to the Bus as a message
// of its channel, and keeps mochi from retaining it.
func (h *hook) OnWill(cl *mochi.Client, will mochi.Will) (mochi.Will, error) {
	s := sessionOf(cl)
	if s == nil {
		return will, nil
	}
	if ch, kind := s.mayPublish(will.TopicName); kind == "" {
		h.b.metrics.MessageReceived(ch)
		h.b.bus.PublishInbound(h.b.ctx, steward.DeviceMessage{
			TenantID: s.TenantID, DeviceID: s.DeviceID, Channel: ch,
			Payload: will.Payload, QoS: will.Qos, Received: h.b.clock.Now(),
		}, h.b.qos0Ack)
	}
	will.Retain = false
	return will, nil
}
