// Command enroll measures EST enrollments per second through a full
// Steward node, as devices on the same machine see them.
//
//	go run ./bench/enroll -n 3000 -c 32
//
// The node (server.New, SQLite in a temporary directory, loopback ports)
// runs in a child process. A test manufacturer CA is registered through the
// REST API; factory identities, device keys and CSRs are made before the
// clock starts. Then c clients enroll n devices, each over a new mTLS
// connection with its factory certificate (a full handshake, no session
// resumption, as a device's first enrollment is), and the command prints
// enrollments/s, latency percentiles, errors, and the CPU time the server
// and the clients used. It checks that the store holds one device per
// successful enrollment.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/bench/internal/mqttraw"
	"github.com/steward-iot/steward/bench/internal/node"
)

func main() {
	node.RunChildIfAsked()
	n := flag.Int("n", 3000, "enrollments to time")
	c := flag.Int("c", 32, "concurrent clients")
	warmup := flag.Int("warmup", 32, "enrollments before the clock starts (caches, prepared statements)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the server process during the timed part to this file")
	classic := flag.Bool("classic", false, "clients offer only X25519 and P-256 key exchange (no post-quantum hybrid), like most embedded TLS stacks")
	keep := flag.Bool("keep", false, "keep the server's data directory")
	logLevel := flag.String("log", "info", "server log level (the log goes to server.log in the data directory)")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()
	if *n < 1 || *c < 1 || *warmup < 0 || *n > 100000 || *c > 1000 {
		fmt.Fprintln(os.Stderr, "enroll: want 1 ≤ n ≤ 100000, 1 ≤ c ≤ 1000, warmup ≥ 0")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *n, *c, *warmup, *classic, *cpuprofile, *keep, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "enroll:", err)
		os.Exit(1)
	}
}

// source spreads the clients over 127.0.2.x: a fresh connection per
// enrollment leaves sockets in TIME_WAIT.
func source(i int) net.IP { return mqttraw.Source(2, i) }

func run(ctx context.Context, n, c, warmup int, classic bool, cpuprofile string, keep bool, logLevel string) error {
	fmt.Println(machine.Describe())
	fmt.Printf("command: enroll -n %d -c %d -warmup %d -classic=%t\n", n, c, warmup, classic)
	nd, err := node.Start(ctx, node.Options{Keep: keep, LogLevel: logLevel})
	if err != nil {
		return err
	}
	defer func() {
		if err := nd.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "enroll: stop server:", err)
		}
		if keep {
			fmt.Println("data directory kept:", nd.DataDir)
		}
	}()
	fmt.Printf("server: pid %d, EST %s, data %s\n", nd.PID, nd.DeviceURL, nd.DataDir)
	f, err := fleet.New(ctx, nd, "Bench Devices")
	if err != nil {
		return err
	}
	if classic {
		f.Curves = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	t0 := time.Now()
	ids, err := f.Identities(warmup+n, "SN")
	if err != nil {
		return err
	}
	fmt.Printf("setup: %d factory identities, keys and CSRs made in %s (not timed)\n", len(ids), time.Since(t0).Round(time.Millisecond))
	if warmup > 0 {
		w := f.EnrollAll(ctx, ids[:warmup], min(c, warmup), source, nil)
		if w.Errors > 0 {
			return fmt.Errorf("warm-up: %d errors, first: %w", w.Errors, w.FirstErr)
		}
	}

	if cpuprofile != "" {
		if err := nd.StartCPUProfile(ctx, cpuprofile); err != nil {
			return err
		}
	}
	meter, err := nd.StartMeter(ctx)
	if err != nil {
		return err
	}
	r := f.EnrollAll(ctx, ids[warmup:], c, source, func(done int) { fmt.Printf("  … %d/%d\n", done, n) })
	split, err := meter.Stop(ctx)
	if err != nil {
		return err
	}
	if cpuprofile != "" {
		if err := nd.StopCPUProfile(ctx); err != nil {
			return err
		}
		fmt.Println("server CPU profile:", cpuprofile)
	}

	ok := len(r.Latencies)
	fmt.Printf("enrollments: %d ok, %d errors, in %s: %.0f enrollments/s with %d concurrent clients\n",
		ok, r.Errors, r.Elapsed.Round(time.Millisecond), r.Rate(), c)
	fmt.Printf("latency: p50 %s, p90 %s, p99 %s, max %s\n",
		ms(r.Percentile(50)), ms(r.Percentile(90)), ms(r.Percentile(99)), ms(r.Percentile(100)))
	fmt.Println(split)
	fmt.Println(split.PerOp(ok, "enrollment"))
	if r.Errors > 0 {
		fmt.Println("first error:", r.FirstErr)
	}

	// Every successful enrollment is a device in the store, provisioned.
	devices, err := nd.Admin.AllDevices(ctx, "")
	if err != nil {
		return fmt.Errorf("list devices: %w", err)
	}
	provisioned := 0
	for _, d := range devices {
		if d.State == steward.StateProvisioned {
			provisioned++
		}
	}
	fmt.Printf("check: the store holds %d devices, %d provisioned (want %d = %d timed + %d warm-up)\n",
		len(devices), provisioned, warmup+ok, ok, warmup)
	if provisioned != warmup+ok || len(devices) != warmup+ok {
		return fmt.Errorf("store holds %d devices (%d provisioned), want %d", len(devices), provisioned, warmup+ok)
	}
	if r.Errors > 0 {
		return fmt.Errorf("%d enrollments failed", r.Errors)
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
