// Package mqttraw is a minimal MQTT 3.1.1 client for load generation:
// CONNECT, SUBSCRIBE, and a pipelined QoS 1 publisher that keeps a fixed
// number of messages in flight and checks every PUBACK.
//
// It is hand-written rather than a paho client on purpose. The load
// generator shares two cores with the server it measures, so its hot path
// must not allocate or take locks per message: a PUBLISH is one packet
// encoded once, patched in place (packet ID, timestamp) and written through
// a buffer; a PUBACK is four bytes read into a fixed array. paho.golang's
// packets package encodes MQTT 5 only and allocates per packet; the device
// agent speaks MQTT 3.1.1, as this does.
package mqttraw

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Conn is a connected MQTT 3.1.1 session.
type Conn struct {
	net.Conn
	ClientID string
	br       *bufio.Reader
	nextID   uint16

	// Payload is what Publish sends (default Telemetry); it must begin
	// with {"ts": and a 13-digit timestamp, as Telemetry and TelemetryN do,
	// or be an array of Readings such objects, as TelemetryReadings makes.
	Payload string
	// Readings is how many timestamped objects Payload holds (default 1).
	Readings int
	// Latencies, when RecordLatency is set, receives each acknowledged
	// message's time from its write into the send buffer to its PUBACK.
	Latencies     []time.Duration
	RecordLatency bool
	// RealTime stamps each message, when it is written, with the clock's
	// time in milliseconds (its readings the milliseconds after), one
	// millisecond or more after the previous message's last reading: a
	// device's samples then fall in the minutes they are sent in, as a
	// fleet's do, rather than all in the minute of firstTS. Stamps
	// receives each message's first timestamp.
	RealTime bool
	Stamps   []int64
}

// Source returns the local address to dial from for client i: loopback
// addresses 127.<net>.x.1…, so that many connections do not run out of
// the ~28,000 ephemeral ports of one source address.
func Source(net3 byte, i int) net.IP {
	return net.IPv4(127, net3, byte(1+i/250%250), byte(1+i%250))
}

// Dial opens a TCP connection from src (nil: any), does the TLS handshake
// when tc is not nil, and sends CONNECT with a clean session and keepAlive
// seconds; it returns once the CONNACK accepted the session.
func Dial(ctx context.Context, addr string, tc *tls.Config, src net.IP, clientID string, keepAlive uint16) (*Conn, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var nc net.Conn
	var err error
	if tc != nil {
		nc, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", addr)
	} else {
		nc, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c := &Conn{Conn: nc, ClientID: clientID, br: bufio.NewReaderSize(nc, 512)}
	if err := c.connect(ctx, keepAlive); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("mqtt connect %s: %w", clientID, err)
	}
	return c, nil
}

func (c *Conn) connect(ctx context.Context, keepAlive uint16) error {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02} // MQTT 3.1.1, clean session
	body = binary.BigEndian.AppendUint16(body, keepAlive)
	body = binary.BigEndian.AppendUint16(body, uint16(len(c.ClientID)))
	body = append(body, c.ClientID...)
	if _, err := c.Write(packet(0x10, body)); err != nil {
		return err
	}
	typ, b, err := c.readPacket(ctx)
	if err != nil {
		return err
	}
	if typ != 0x20 || len(b) != 2 {
		return fmt.Errorf("want CONNACK, got packet type %#x", typ)
	}
	if b[1] != 0 {
		return fmt.Errorf("CONNACK return code %d", b[1])
	}
	return nil
}

// packet frames a control packet: fixed header byte, remaining length, body.
func packet(header byte, body []byte) []byte {
	pk := []byte{header}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pk = append(pk, b)
		if n == 0 {
			break
		}
	}
	return append(pk, body...)
}

// readPacket reads one whole packet (setup packets only: it allocates).
func (c *Conn) readPacket(ctx context.Context) (byte, []byte, error) {
	deadline := time.Now().Add(30 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.SetReadDeadline(deadline)
	defer c.SetReadDeadline(time.Time{})
	h, err := c.br.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := c.br.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if mul *= 128; i == 3 {
			return 0, nil, errors.New("malformed remaining length")
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.br, body); err != nil {
		return 0, nil, err
	}
	return h & 0xf0, body, nil
}

func (c *Conn) packetID() uint16 {
	c.nextID++
	if c.nextID == 0 {
		c.nextID = 1
	}
	return c.nextID
}

// Subscribe subscribes to topic at QoS 1 and returns the granted QoS
// (0x80: refused).
func (c *Conn) Subscribe(ctx context.Context, topic string) (byte, error) {
	id := c.packetID()
	body := binary.BigEndian.AppendUint16(nil, id)
	body = binary.BigEndian.AppendUint16(body, uint16(len(topic)))
	body = append(append(body, topic...), 1)
	if _, err := c.Write(packet(0x82, body)); err != nil {
		return 0, err
	}
	typ, b, err := c.readPacket(ctx)
	if err != nil {
		return 0, err
	}
	if typ != 0x90 || len(b) != 3 || binary.BigEndian.Uint16(b) != id {
		return 0, fmt.Errorf("want SUBACK %d, got packet type %#x % x", id, typ, b)
	}
	return b[2], nil
}

// PublishWait publishes one QoS 1 message and waits for its PUBACK. Use it
// only while nothing else is in flight.
func (c *Conn) PublishWait(ctx context.Context, topic string, payload []byte) error {
	id := c.packetID()
	if _, err := c.Write(publishPacket(topic, payload, id)); err != nil {
		return err
	}
	typ, b, err := c.readPacket(ctx)
	if err != nil {
		return err
	}
	if typ != 0x40 || len(b) != 2 || binary.BigEndian.Uint16(b) != id {
		return fmt.Errorf("want PUBACK %d, got packet type %#x % x", id, typ, b)
	}
	return nil
}

// publishPacket encodes a QoS 1 PUBLISH.
func publishPacket(topic string, payload []byte, id uint16) []byte {
	body := binary.BigEndian.AppendUint16(nil, uint16(len(topic)))
	body = append(body, topic...)
	body = binary.BigEndian.AppendUint16(body, id)
	return packet(0x32, append(body, payload...))
}

// Telemetry is the payload the pipelined publisher sends: 43 bytes of JSON
// with one metric, as bench/mqttload and the reference figures use. Its ts
// (Unix milliseconds, 13 digits) is set per message so that every message
// is a distinct sample in the store.
const Telemetry = `{"ts":1764237600000,"metrics":{"cpu":0.31}}`

const tsDigits = 13

// TelemetryN is a telemetry payload with n metrics: cpu, then m1 … m(n-1).
func TelemetryN(n int) string {
	var b []byte
	b = append(b, `{"ts":1764237600000,"metrics":{"cpu":0.31`...)
	for i := 1; i < n; i++ {
		b = append(b, `,"m`...)
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, `":0.31`...)
	}
	return string(append(b, "}}"...))
}

// TelemetryReadings is TelemetryN(n) for each of r times, in one JSON
// array: a device sending r buffered readings at once.
func TelemetryReadings(n, r int) string {
	one := TelemetryN(n)
	if r <= 1 {
		return one
	}
	return "[" + strings.Repeat(one+",", r-1) + one + "]"
}

// Publish sends n QoS 1 PUBLISH packets of Telemetry to topic, the k-th
// (from 0) with ts = firstTS+k (with Readings r > 1, its i-th reading
// firstTS+k×r+i), or at real time (see RealTime), keeping at most
// inflight unacknowledged.
// Every PUBACK must name the packet IDs in the order they were sent (the
// broker acknowledges in order). acked counts PUBACKs as they arrive; the
// return is the number acknowledged and the first error. It stops at
// ctx's end. Setup calls (Subscribe, PublishWait) must not run alongside.
func (c *Conn) Publish(ctx context.Context, topic string, n, inflight int, firstTS int64, acked *atomic.Int64) (int, error) {
	readings := max(c.Readings, 1)
	if firstTS < 1e12 || firstTS+int64(n*readings) >= 1e13 {
		return 0, errors.New("timestamps must have 13 digits")
	}
	payload := c.Payload
	if payload == "" {
		payload = Telemetry
	}
	pk := publishPacket(topic, []byte(payload), 0)
	payloadAt := len(pk) - len(payload)
	idAt := payloadAt - 2
	// Where each reading's timestamp goes.
	var tsAt []int
	for i := 0; ; {
		j := strings.Index(payload[i:], `{"ts":`)
		if j < 0 {
			break
		}
		tsAt = append(tsAt, payloadAt+i+j+len(`{"ts":`))
		i += j + 1
	}
	if len(tsAt) != readings {
		return 0, fmt.Errorf("payload has %d timestamps, want %d (Readings)", len(tsAt), readings)
	}

	tokens := make(chan struct{}, inflight)
	readErr := make(chan error, 1)
	readDone := make(chan struct{})
	var got atomic.Int64
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	want := c.nextID
	// Send times in a ring: at most inflight are outstanding and PUBACKs
	// come in order, so message k's slot is k mod inflight.
	var sent []atomic.Int64
	if c.RecordLatency {
		sent = make([]atomic.Int64, inflight)
		if c.Latencies == nil {
			c.Latencies = make([]time.Duration, 0, n)
		}
	}
	base := time.Now()
	go func() {
		defer close(readDone)
		fail := func(err error) {
			_ = c.SetDeadline(time.Now()) // unblock the writer
			readErr <- err
		}
		var hdr [4]byte
		for j := range n {
			if _, err := io.ReadFull(c.br, hdr[:]); err != nil {
				fail(fmt.Errorf("read PUBACK: %w", err))
				return
			}
			if want++; want == 0 {
				want = 1
			}
			if hdr[0] != 0x40 || hdr[1] != 2 || binary.BigEndian.Uint16(hdr[2:]) != want {
				fail(fmt.Errorf("want PUBACK %d, got % x", want, hdr))
				return
			}
			if sent != nil {
				c.Latencies = append(c.Latencies, time.Since(base)-time.Duration(sent[j%inflight].Load()))
			}
			got.Add(1)
			if acked != nil {
				acked.Add(1)
			}
			<-tokens
		}
		readErr <- nil
	}()
	bw := bufio.NewWriterSize(c.Conn, 16<<10)
	var writeErr error
	var digits [20]byte
	next := firstTS // RealTime: the earliest the next message may carry
	if c.RealTime {
		c.Stamps = make([]int64, 0, n)
	}
send:
	for k := range n {
		select {
		case tokens <- struct{}{}:
		default:
			// The window is full: send what is buffered, then wait.
			if writeErr = bw.Flush(); writeErr != nil {
				break send
			}
			select {
			case tokens <- struct{}{}:
			case <-readDone:
				break send
			}
		}
		binary.BigEndian.PutUint16(pk[idAt:], c.packetID())
		first := firstTS + int64(k*readings)
		if c.RealTime {
			first = max(time.Now().UnixMilli(), next)
			next = first + int64(readings)
			c.Stamps = append(c.Stamps, first)
		}
		for i, at := range tsAt {
			copy(pk[at:at+tsDigits], strconv.AppendInt(digits[:0], first+int64(i), 10))
		}
		if sent != nil {
			sent[k%inflight].Store(int64(time.Since(base)))
		}
		if _, writeErr = bw.Write(pk); writeErr != nil {
			break
		}
	}
	if writeErr == nil {
		writeErr = bw.Flush()
	}
	if writeErr != nil {
		_ = c.SetReadDeadline(time.Now()) // unblock the reader
	}
	err := <-readErr
	if err == nil && writeErr != nil {
		err = fmt.Errorf("write PUBLISH: %w", writeErr)
	}
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return int(got.Load()), err
}
