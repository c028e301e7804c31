// Command mqttload measures Steward's MQTT broker under load: the memory of
// idle mTLS sessions, and QoS 1 publish throughput. The broker runs in this
// process; the clients run in a child process (this same binary with
// -child), so that their memory and CPU are not counted as the broker's.
// Every address is on loopback.
//
//	go run ./bench/mqttload -mode memory -sessions 10000
//	go run ./bench/mqttload -mode throughput -sessions 16 -messages 200000
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/mqtt"
)

func main() {
	mode := flag.String("mode", "memory", "memory or throughput")
	sessions := flag.Int("sessions", 10000, "client sessions (memory) or publishers (throughput)")
	messages := flag.Int("messages", 200000, "throughput: QoS 1 messages in all")
	parallel := flag.Int("parallel", 32, "concurrent connection attempts")
	warm := flag.Bool("warm", false, "memory: each client subscribes and publishes once before idling")
	classic := flag.Bool("classic", false, "clients offer only X25519 and P-256 (no post-quantum key share), like most embedded TLS stacks")
	memprofile := flag.String("memprofile", "", "memory: write a heap profile of the broker here")
	child := flag.Bool("child", false, "internal: run the clients")
	addr := flag.String("addr", "", "internal: broker address")
	dir := flag.String("dir", "", "internal: directory with the PKI")
	flag.Parse()
	var err error
	if *child {
		err = runClients(*mode, *addr, *dir, *sessions, *messages, *parallel, *warm, *classic)
	} else {
		if *memprofile != "" {
			runtime.MemProfileRate = 1
		}
		err = runBroker(*mode, *sessions, *messages, *parallel, *memprofile, *warm, *classic)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mqttload:", err)
		os.Exit(1)
	}
}

// gate trusts one device CA: the load tool's stand-in for provisioning.
type gate struct {
	roots *x509.CertPool
}

func (g gate) AuthenticateDevice(_ context.Context, cert *x509.Certificate, _ string) (steward.DeviceSession, error) {
	if _, err := cert.Verify(x509.VerifyOptions{Roots: g.roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return steward.DeviceSession{}, steward.WrapError(steward.CodeUnauthenticated, err, "unknown certificate")
	}
	return steward.DeviceSession{TenantID: "load", DeviceID: cert.Subject.CommonName, State: steward.StateActive, NotAfter: cert.NotAfter}, nil
}

func (gate) RecordSecurityEvent(context.Context, steward.SecurityEvent) {}

func runBroker(mode string, sessions, messages, parallel int, memprofile string, warm, classic bool) error {
	dir, err := os.MkdirTemp("", "mqttload")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	serverCA, serverKey, err := newCA("load server CA")
	if err != nil {
		return err
	}
	deviceCA, deviceKey, err := newCA("load device CA")
	if err != nil {
		return err
	}
	serverCert, err := issue(serverCA, serverKey, "steward", true, nil)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "server-ca.pem"), "CERTIFICATE", serverCA.Raw); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "device-ca.pem"), "CERTIFICATE", deviceCA.Raw); err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(deviceKey)
	if err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, "device-ca-key.pem"), "EC PRIVATE KEY", keyDER); err != nil {
		return err
	}

	bus := inproc.New(nil)
	var online atomic.Int64
	bus.HandlePresence(func(_ context.Context, p steward.PresenceChange) {
		if p.Online {
			online.Add(1)
		} else {
			online.Add(-1)
		}
	})
	var received atomic.Int64
	bus.HandleInbound(steward.ChannelTelemetry, func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) {
		received.Add(1)
		ack(nil)
	})
	roots := x509.NewCertPool()
	roots.AddCert(deviceCA)
	b, err := mqtt.New(mqtt.Config{
		Addr:   "127.0.0.1:0",
		TLS:    &tls.Config{Certificates: []tls.Certificate{serverCert}},
		Gate:   gate{roots: roots},
		Bus:    bus,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = b.Serve(ctx) }()

	before := memSnapshot()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "-child", "-mode", mode, "-addr", b.Addr().String(), "-dir", dir,
		"-sessions", strconv.Itoa(sessions), "-messages", strconv.Itoa(messages), "-parallel", strconv.Itoa(parallel), "-warm="+strconv.FormatBool(warm), "-classic="+strconv.FormatBool(classic))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	lines := bufio.NewScanner(stdout)
	defer func() {
		_ = stdin.Close()
		_ = cmd.Wait()
		_ = b.Close()
	}()
	if !lines.Scan() {
		return errors.New("client process ended early")
	}
	fmt.Println("clients:", lines.Text())
	switch mode {
	case "memory":
		deadline := time.Now().Add(time.Minute)
		for online.Load() < int64(sessions) {
			if time.Now().After(deadline) {
				return fmt.Errorf("only %d of %d sessions online", online.Load(), sessions)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Let a few GC cycles shrink the stacks the handshakes grew, as
		// they would in a broker that has been up for a while.
		for range 5 {
			runtime.GC()
			time.Sleep(100 * time.Millisecond)
		}
		after := memSnapshot()
		if memprofile != "" {
			f, err := os.Create(memprofile)
			if err != nil {
				return err
			}
			if err := pprof.WriteHeapProfile(f); err != nil {
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
		n := float64(sessions)
		ms := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
		metrics.Read(ms)
		fmt.Printf("sessions online: %d, goroutines: %d, goroutine starting stack: %d bytes\n", online.Load(), runtime.NumGoroutine(), ms[0].Value.Uint64())
		fmt.Printf("heap alloc:  %7.1f KiB/session (%.0f MiB)\n", float64(after.HeapAlloc-before.HeapAlloc)/n/1024, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20))
		fmt.Printf("heap in use: %7.1f KiB/session (%.0f MiB)\n", float64(after.HeapInuse-before.HeapInuse)/n/1024, float64(after.HeapInuse-before.HeapInuse)/(1<<20))
		fmt.Printf("stacks:      %7.1f KiB/session (%.0f MiB)\n", float64(after.StackInuse-before.StackInuse)/n/1024, float64(after.StackInuse-before.StackInuse)/(1<<20))
		fmt.Printf("heap alloc + stacks: %.1f KiB/session; heap in use + stacks: %.1f KiB/session\n",
			float64(after.HeapAlloc+after.StackInuse-before.HeapAlloc-before.StackInuse)/n/1024,
			float64(after.HeapInuse+after.StackInuse-before.HeapInuse-before.StackInuse)/n/1024)
	case "throughput":
		if !lines.Scan() {
			return errors.New("client process ended early")
		}
		fmt.Println("result:", lines.Text(), "| broker handler received", received.Load())
	}
	return nil
}

func memSnapshot() runtime.MemStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m
}

func runClients(mode, addr, dir string, sessions, messages, parallel int, warm, classic bool) error {
	caCert, err := readCert(filepath.Join(dir, "device-ca.pem"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, "device-ca-key.pem"))
	if err != nil {
		return err
	}
	blk, _ := pem.Decode(keyPEM)
	if blk == nil {
		return errors.New("no CA key")
	}
	caKey, err := x509.ParseECPrivateKey(blk.Bytes)
	if err != nil {
		return err
	}
	serverCA, err := readCert(filepath.Join(dir, "server-ca.pem"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	roots.AddCert(serverCA)
	// One key for every device keeps setup fast; each still has its own
	// certificate and so its own device ID.
	devKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	conns := make([]net.Conn, sessions)
	ids := make([]string, sessions)
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	errs := make(chan error, sessions)
	for i := range sessions {
		ids[i] = fmt.Sprintf("d-%020x", i+1)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cert, err := issue(caCert, caKey, ids[i], false, devKey)
			if err != nil {
				errs <- err
				return
			}
			// Spread over source addresses: one gives ~28,000 ports.
			d := &net.Dialer{Timeout: 30 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(1+i%8))}}
			cfg := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}
			if classic {
				cfg.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
			}
			conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
			if err != nil {
				errs <- err
				return
			}
			if err := connect3(conn, ids[i]); err != nil {
				_ = conn.Close()
				errs <- err
				return
			}
			if warm {
				if err := warmUp(conn, ids[i]); err != nil {
					_ = conn.Close()
					errs <- err
					return
				}
			}
			conns[i] = conn
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("%d sessions connected in %s (%.0f connects/s)\n", sessions, elapsed.Round(time.Millisecond), float64(sessions)/elapsed.Seconds())
	if mode == "throughput" {
		rate, err := publish(conns, ids, messages)
		if err != nil {
			return err
		}
		fmt.Printf("%d QoS 1 messages from %d clients: %.0f msg/s\n", messages, sessions, rate)
	}
	// Hold the sessions until the broker has measured.
	_, _ = io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		_ = c.Close()
	}
	return nil
}

// connect3 sends an MQTT 3.1.1 CONNECT and checks the CONNACK.
func connect3(conn net.Conn, id string) error {
	body := []byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0x02, 0x58} // clean session, keepalive 600 s
	body = binary.BigEndian.AppendUint16(body, uint16(len(id)))
	body = append(body, id...)
	pk := append([]byte{0x10, byte(len(body))}, body...)
	if _, err := conn.Write(pk); err != nil {
		return err
	}
	ack := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(conn, ack); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Time{})
	if ack[0] != 0x20 || ack[3] != 0 {
		return fmt.Errorf("CONNACK % x", ack)
	}
	return nil
}

// warmUp subscribes to the device's commands and publishes one QoS 1
// sample, as a device does after connecting.
func warmUp(conn net.Conn, id string) error {
	sub := steward.Topic(id, steward.ChannelCmdReq)
	body := binary.BigEndian.AppendUint16(nil, 1)
	body = binary.BigEndian.AppendUint16(body, uint16(len(sub)))
	body = append(append(body, sub...), 1)
	pk := append([]byte{0x82, byte(len(body))}, body...)
	tel := steward.Topic(id, steward.ChannelTelemetry)
	payload := `{"metrics":{"cpu":0.31}}`
	body = binary.BigEndian.AppendUint16(nil, uint16(len(tel)))
	body = append(body, tel...)
	body = binary.BigEndian.AppendUint16(body, 2)
	body = append(body, payload...)
	pk = append(pk, 0x32, byte(len(body)))
	pk = append(pk, body...)
	if _, err := conn.Write(pk); err != nil {
		return err
	}
	_ = conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer conn.SetReadDeadline(time.Time{})
	acks := make([]byte, 5+4) // SUBACK (5 bytes) and PUBACK (4)
	if _, err := io.ReadFull(conn, acks); err != nil {
		return err
	}
	if acks[0] != 0x90 || acks[4] != 1 || acks[5] != 0x40 {
		return fmt.Errorf("warm-up answers % x", acks)
	}
	return nil
}

// publish sends messages QoS 1 publishes spread over conns, 64 in flight
// per connection, and returns the rate at which they were acknowledged.
func publish(conns []net.Conn, ids []string, messages int) (float64, error) {
	payload := []byte(`{"ts":1764237600000,"metrics":{"cpu":0.31}}`)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(conns))
	for i, conn := range conns {
		n := messages / len(conns)
		if i < messages%len(conns) {
			n++
		}
		topic := steward.Topic(ids[i], steward.ChannelTelemetry)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tokens := make(chan struct{}, 64)
			done := make(chan error, 1)
			go func() {
				br := bufio.NewReader(conn)
				hdr := make([]byte, 4)
				for range n {
					if _, err := io.ReadFull(br, hdr); err != nil {
						done <- err
						return
					}
					<-tokens
				}
				done <- nil
			}()
			rem := 2 + len(topic) + 2 + len(payload)
			pk := []byte{0x32, byte(rem)}
			pk = binary.BigEndian.AppendUint16(pk, uint16(len(topic)))
			pk = append(pk, topic...)
			idAt := len(pk)
			pk = append(append(pk, 0, 0), payload...)
			bw := bufio.NewWriterSize(conn, 16<<10)
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
			errs <- <-done
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return 0, err
		}
	}
	return float64(messages) / time.Since(start).Seconds(), nil
}

func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issue signs a server certificate for 127.0.0.1 or a device certificate;
// key is the leaf's key (nil: a new one).
func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool, key *ecdsa.PrivateKey) (tls.Certificate, error) {
	if key == nil {
		var err error
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return tls.Certificate{}, err
		}
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || !strings.Contains(blk.Type, "CERTIFICATE") {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	return x509.ParseCertificate(blk.Bytes)
}
