package mqtt

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	packets5 "github.com/eclipse/paho.golang/packets"
)

// rawClient speaks MQTT packet by packet, so that a test can see exactly
// what the broker writes and in which order. MQTT 5 packets are encoded by
// paho.golang's packets package; MQTT 3.1.1 ones (which it does not speak)
// by the few lines below.
type rawClient struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	v5   bool
}

// rawPacket is a packet read from the broker.
type rawPacket struct {
	typ   byte // packets5.PUBACK etc.
	id    uint16
	code  byte   // reason code (v5), return code (v3 CONNACK)
	codes []byte // SUBACK
	topic string
	body  []byte // PUBLISH payload
}

func (p rawPacket) String() string {
	return fmt.Sprintf("type %d id %d code %#x codes %v topic %q", p.typ, p.id, p.code, p.codes, p.topic)
}

// dialRaw connects and sends CONNECT; it returns the CONNACK's code.
func (h *harness) dialRaw(t testing.TB, cert tls.Certificate, clientID string, v5 bool) (*rawClient, rawPacket, error) {
	t.Helper()
	conn, err := tls.Dial("tcp", h.addr, h.clientTLS(cert))
	if err != nil {
		return nil, rawPacket{}, err
	}
	c := &rawClient{t: t, conn: conn, br: bufio.NewReader(conn), v5: v5}
	t.Cleanup(func() { _ = conn.Close() })
	if v5 {
		cp := &packets5.Connect{ProtocolName: "MQTT", ProtocolVersion: 5, ClientID: clientID, CleanStart: true, KeepAlive: 30, Properties: &packets5.Properties{}}
		if _, err := cp.WriteTo(conn); err != nil {
			return nil, rawPacket{}, err
		}
	} else {
		var body bytes.Buffer
		writeString3(&body, "MQTT")
		body.WriteByte(4)    // protocol level 3.1.1
		body.WriteByte(0x02) // clean session
		body.Write([]byte{0, 30})
		writeString3(&body, clientID)
		if err := c.write3(0x10, body.Bytes()); err != nil {
			return nil, rawPacket{}, err
		}
	}
	p, err := c.read()
	if err != nil {
		return nil, rawPacket{}, err
	}
	if p.typ != packets5.CONNACK {
		return nil, p, fmt.Errorf("got %v, want CONNACK", p)
	}
	return c, p, nil
}

func writeString3(b *bytes.Buffer, s string) {
	_ = binary.Write(b, binary.BigEndian, uint16(len(s)))
	b.WriteString(s)
}

func (c *rawClient) write3(header byte, body []byte) error {
	var b bytes.Buffer
	b.WriteByte(header)
	n := len(body)
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b.WriteByte(d)
		if n == 0 {
			break
		}
	}
	b.Write(body)
	_, err := c.conn.Write(b.Bytes())
	return err
}

func (c *rawClient) publish(topic string, qos byte, id uint16, payload []byte) {
	c.t.Helper()
	if err := c.tryPublish(topic, qos, id, payload); err != nil {
		c.t.Fatalf("publish: %v", err)
	}
}

// tryPublish writes a PUBLISH and returns the write error: a server that
// refuses an oversized packet may close the connection while it is still
// being written.
func (c *rawClient) tryPublish(topic string, qos byte, id uint16, payload []byte) error {
	var err error
	if c.v5 {
		_, err = (&packets5.Publish{Topic: topic, QoS: qos, PacketID: id, Payload: payload, Properties: &packets5.Properties{}}).WriteTo(c.conn)
	} else {
		var body bytes.Buffer
		writeString3(&body, topic)
		if qos > 0 {
			_ = binary.Write(&body, binary.BigEndian, id)
		}
		body.Write(payload)
		err = c.write3(0x30|qos<<1, body.Bytes())
	}
	return err
}

func (c *rawClient) pubrel(id uint16) {
	c.t.Helper()
	var err error
	if c.v5 {
		_, err = (&packets5.Pubrel{PacketID: id, Properties: &packets5.Properties{}}).WriteTo(c.conn)
	} else {
		err = c.write3(0x62, binary.BigEndian.AppendUint16(nil, id))
	}
	if err != nil {
		c.t.Fatalf("pubrel: %v", err)
	}
}

func (c *rawClient) subscribe(id uint16, filters ...string) {
	c.t.Helper()
	var err error
	if c.v5 {
		s := &packets5.Subscribe{PacketID: id, Properties: &packets5.Properties{}}
		for _, f := range filters {
			s.Subscriptions = append(s.Subscriptions, packets5.SubOptions{Topic: f, QoS: 1})
		}
		_, err = s.WriteTo(c.conn)
	} else {
		body := binary.BigEndian.AppendUint16(nil, id)
		for _, f := range filters {
			body = binary.BigEndian.AppendUint16(body, uint16(len(f)))
			body = append(body, f...)
			body = append(body, 1)
		}
		err = c.write3(0x82, body)
	}
	if err != nil {
		c.t.Fatalf("subscribe: %v", err)
	}
}

func (c *rawClient) ping() {
	c.t.Helper()
	if err := c.write3(0xC0, nil); err != nil { // same bytes in both versions
		c.t.Fatalf("pingreq: %v", err)
	}
}

// read reads the next packet from the broker.
func (c *rawClient) read() (rawPacket, error) {
	_ = c.conn.SetReadDeadline(time.Now().Add(waitLimit))
	if c.v5 {
		cp, err := packets5.ReadPacket(c.br)
		if err != nil {
			return rawPacket{}, err
		}
		p := rawPacket{typ: cp.Type}
		switch v := cp.Content.(type) {
		case *packets5.Connack:
			p.code = v.ReasonCode
		case *packets5.Puback:
			p.id, p.code = v.PacketID, v.ReasonCode
		case *packets5.Pubrec:
			p.id, p.code = v.PacketID, v.ReasonCode
		case *packets5.Pubcomp:
			p.id, p.code = v.PacketID, v.ReasonCode
		case *packets5.Suback:
			p.id, p.codes = v.PacketID, v.Reasons
		case *packets5.Disconnect:
			p.code = v.ReasonCode
		case *packets5.Publish:
			p.id, p.topic, p.body = v.PacketID, v.Topic, v.Payload
		}
		return p, nil
	}
	first, err := c.br.ReadByte()
	if err != nil {
		return rawPacket{}, err
	}
	n, mult := 0, 1
	for {
		d, err := c.br.ReadByte()
		if err != nil {
			return rawPacket{}, err
		}
		n += int(d&0x7f) * mult
		mult *= 128
		if d&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return rawPacket{}, err
	}
	p := rawPacket{typ: first >> 4}
	switch p.typ {
	case packets5.CONNACK:
		p.code = body[1]
	case packets5.PUBACK, packets5.PUBREC, packets5.PUBCOMP:
		p.id = binary.BigEndian.Uint16(body)
	case packets5.SUBACK:
		p.id, p.codes = binary.BigEndian.Uint16(body), body[2:]
	case packets5.PUBLISH:
		tl := int(binary.BigEndian.Uint16(body))
		p.topic = string(body[2 : 2+tl])
		rest := body[2+tl:]
		if (first>>1)&3 > 0 {
			p.id, rest = binary.BigEndian.Uint16(rest), rest[2:]
		}
		p.body = rest
	}
	return p, nil
}

// expect reads the next packet and checks its type, packet ID and code.
func (c *rawClient) expect(typ byte, id uint16, code byte) rawPacket {
	c.t.Helper()
	p, err := c.read()
	if err != nil {
		c.t.Fatalf("want packet type %d id %d: %v", typ, id, err)
	}
	if p.typ != typ || p.id != id || p.code != code {
		c.t.Fatalf("got %v, want type %d id %d code %#x", p, typ, id, code)
	}
	return p
}

// expectClosed reads until the broker closes the connection; it returns the
// DISCONNECT reason code when one came first (0 if none).
func (c *rawClient) expectClosed() (disconnect byte, sawDisconnect bool) {
	c.t.Helper()
	for {
		p, err := c.read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatal("connection still open")
			}
			return disconnect, sawDisconnect
		}
		if p.typ == packets5.DISCONNECT {
			disconnect, sawDisconnect = p.code, true
		}
	}
}
