package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// benchPayload is the 43-byte JSON sample of FIGURES.md's load.
var benchPayload = []byte(`{"ts":1764237600000,"metrics":{"cpu":0.31}}`)

// BenchmarkPublishQoS1 measures QoS 1 publishes from MQTT 3.1.1 clients over
// mTLS through the broker into a Bus handler that acknowledges at once
// (64 messages in flight per client, as in FIGURES.md).
func BenchmarkPublishQoS1(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			h := newHarness(b, nil)
			h.bus.HandleInbound(steward.ChannelTelemetry, func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) { ack(nil) })
			conns := make([]io.ReadWriter, clients)
			topics := make([]string, clients)
			for i := range conns {
				id := newDeviceID()
				c, _, err := h.dialRaw(b, h.ca.Device(b, id), id, false)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.conn.SetReadDeadline(time.Time{})
				conns[i], topics[i] = c.conn, topic(id, steward.ChannelTelemetry)
			}
			runPublishers(b, conns, topics)
		})
	}
}

// BenchmarkPublishQoS1MochiBaseline is the same load against a bare mochi
// server (allow-all hook, mochi's own TLS listener, PUBACK at once): the
// yardstick for what Steward's hooks and deferred acknowledgements cost.
func BenchmarkPublishQoS1MochiBaseline(b *testing.B) {
	for _, clients := range []int{1, 16} {
		b.Run(fmt.Sprintf("clients=%d", clients), func(b *testing.B) {
			h := &harness{t: b, ca: testpki.NewCA(b, "device CA")}
			serverCA := testpki.NewCA(b, "server CA")
			h.roots = serverCA.Pool()
			srv := mochi.New(&mochi.Options{Logger: testLogger()})
			if err := srv.AddHook(new(allowAll), nil); err != nil {
				b.Fatal(err)
			}
			tlsCfg := &tls.Config{
				Certificates: []tls.Certificate{serverCA.ServerCert(b)},
				ClientAuth:   tls.RequireAnyClientCert,
			}
			ln := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0", TLSConfig: tlsCfg})
			if err := srv.AddListener(ln); err != nil {
				b.Fatal(err)
			}
			if err := srv.Serve(); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = srv.Close() })
			h.addr = ln.Address()
			conns := make([]io.ReadWriter, clients)
			topics := make([]string, clients)
			for i := range conns {
				id := newDeviceID()
				c, _, err := h.dialRaw(b, h.ca.Device(b, id), id, false)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.conn.SetReadDeadline(time.Time{})
				conns[i], topics[i] = c.conn, topic(id, steward.ChannelTelemetry)
			}
			runPublishers(b, conns, topics)
		})
	}
}

// runPublishers sends b.N QoS 1 publishes spread over the connections, each
// keeping up to 64 unacknowledged, and waits for every PUBACK.
func runPublishers(b *testing.B, conns []io.ReadWriter, topics []string) {
	const inflight = 64
	b.SetBytes(int64(len(benchPayload)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, conn := range conns {
		n := b.N / len(conns)
		if i < b.N%len(conns) {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens := make(chan struct{}, inflight)
			acked := make(chan error, 1)
			go func() {
				br := bufio.NewReader(conn)
				hdr := make([]byte, 4)
				for range n {
					if _, err := io.ReadFull(br, hdr); err != nil {
						acked <- err
						return
					}
					if hdr[0] != 0x40 {
						acked <- fmt.Errorf("got packet %#x, want PUBACK", hdr[0])
						return
					}
					<-tokens
				}
				acked <- nil
			}()
			bw := bufio.NewWriterSize(conn, 16<<10)
			pk := publishPacket3(topics[i], benchPayload)
			idAt := len(pk) - len(benchPayload) - 2
			for j := range n {
				select {
				case tokens <- struct{}{}:
				default:
					_ = bw.Flush()
					tokens <- struct{}{}
				}
				binary.BigEndian.PutUint16(pk[idAt:], uint16(j%65535+1))
				_, _ = bw.Write(pk)
			}
			_ = bw.Flush()
			if err := <-acked; err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msg/s")
}

// publishPacket3 encodes an MQTT 3.1.1 QoS 1 PUBLISH (packet ID zero, to be set).
func publishPacket3(topic string, payload []byte) []byte {
	rem := 2 + len(topic) + 2 + len(payload)
	pk := []byte{0x32}
	for {
		d := byte(rem % 128)
		rem /= 128
		if rem > 0 {
			d |= 0x80
		}
		pk = append(pk, d)
		if rem == 0 {
			break
		}
	}
	pk = binary.BigEndian.AppendUint16(pk, uint16(len(topic)))
	pk = append(pk, topic...)
	pk = append(pk, 0, 0)
	return append(pk, payload...)
}

// allowAll is mochi's allow-all auth hook, without the YAML its package brings.
type allowAll struct{ mochi.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (*allowAll) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mochi.Client, string, bool) bool              { return true }
