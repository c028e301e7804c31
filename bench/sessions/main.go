// Command sessions measures the server memory of idle MQTT sessions on a
// full Steward node, with the real device gate: every session is a device
// that enrolled through EST and connects with its own operational
// certificate.
//
//	go run ./bench/sessions -n 10000
//
// The node runs in a child process. Setup (not part of the figure):
// factory identities are made, and all n devices enroll over EST, c at a
// time. Then the server's memory is read (after garbage collection), n
// mTLS sessions are opened (CONNECT, clean session, keep-alive 600 s)
// from 127.0.1.x source addresses, the command waits until the registry
// shows every device online, and reads the memory again. It prints the
// difference per session: Go heap in use + goroutine stacks
// (runtime.MemStats of the server), and the resident set size of the
// server process (VmRSS). With -warm each device also subscribes to its
// command topic and sends its attributes report (and becomes active)
// before idling, as the agent does.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/bench/internal/mqttraw"
	"github.com/steward-iot/steward/bench/internal/node"
)

// maxSessions keeps both processes under the machine's 20,000 open files.
const maxSessions = 19000

func main() {
	node.RunChildIfAsked()
	n := flag.Int("n", 10000, "sessions (devices)")
	c := flag.Int("c", 32, "concurrent enrollments and connection attempts")
	warm := flag.Bool("warm", false, "each device subscribes to dev/{id}/cmd/req and sends its attributes before idling")
	memprofile := flag.String("memprofile", "", "write a heap profile of the server with the sessions open to this file")
	hold := flag.Duration("hold", 0, "keep the sessions open this long after measuring (to inspect the server: its pprof address is printed)")
	keep := flag.Bool("keep", false, "keep the server's data directory")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if *n < 1 || *n > maxSessions || *c < 1 || *c > 1000 {
		fmt.Fprintf(os.Stderr, "sessions: want 1 ≤ n ≤ %d (open-file limit), 1 ≤ c ≤ 1000\n", maxSessions)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, *n, *c, *warm, *memprofile, *hold, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "sessions:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, n, c int, warm bool, memprofile string, hold time.Duration, keep bool) error {
	fmt.Println(machine.Describe())
	fmt.Printf("command: sessions -n %d -c %d -warm=%t\n", n, c, warm)
	nd, err := node.Start(ctx, node.Options{Keep: keep})
	if err != nil {
		return err
	}
	defer func() {
		if err := nd.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "sessions: stop server:", err)
		}
		if keep {
			fmt.Println("data directory kept:", nd.DataDir)
		}
	}()
	fmt.Printf("server: pid %d, MQTT %s, data %s, pprof %s/debug/pprof/\n", nd.PID, nd.MQTTAddr, nd.DataDir, nd.DebugURL)
	f, err := fleet.New(ctx, nd, "Bench Devices")
	if err != nil {
		return err
	}

	// Setup: enroll every device through EST.
	t0 := time.Now()
	ids, err := f.Identities(n, "SN")
	if err != nil {
		return err
	}
	fmt.Printf("setup: %d factory identities, keys and CSRs made in %s\n", n, time.Since(t0).Round(time.Millisecond))
	last, lastT := 0, time.Now()
	r := f.EnrollAll(ctx, ids, c, func(i int) net.IP { return mqttraw.Source(2, i) }, func(done int) {
		now := time.Now()
		fmt.Printf("  … %d/%d enrolled (%.0f/s over the last %.0f s)\n", done, n, float64(done-last)/now.Sub(lastT).Seconds(), now.Sub(lastT).Seconds())
		last, lastT = done, now
	})
	if r.Errors > 0 {
		return fmt.Errorf("enrollment: %d errors, first: %w", r.Errors, r.FirstErr)
	}
	fmt.Printf("setup: %d devices enrolled through EST in %s (%.0f/s, p50 %s, p99 %s)\n", n, r.Elapsed.Round(time.Millisecond), r.Rate(),
		r.Percentile(50).Round(100*time.Microsecond), r.Percentile(99).Round(100*time.Microsecond))

	before, err := nd.Mem(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("server before the sessions: heap in use %.0f MiB, stacks %.1f MiB, goroutines %d (starting stack %d KiB), RSS %.0f MiB (%.0f MiB after FreeOSMemory)\n",
		mib(before.HeapInuse), mib(before.StackInuse), before.Goroutines, before.StartStack>>10, mib(before.RSS), mib(before.RSSReleased))

	// The sessions.
	conns := make([]*mqttraw.Conn, n)
	defer func() {
		for _, cn := range conns {
			if cn != nil {
				_ = cn.Close()
			}
		}
	}()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	var wg sync.WaitGroup
	t0 = time.Now()
	for range c {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				d := r.Devices[i]
				cn, err := mqttraw.Dial(ctx, nd.MQTTAddr, f.TLS(d.Cert), mqttraw.Source(1, i), d.ID, 600)
				if err == nil && warm {
					err = warmUp(ctx, cn)
				}
				if err != nil {
					errOnce.Do(func() { firstErr = err })
					if cn != nil {
						_ = cn.Close()
					}
					return
				}
				conns[i] = cn
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return fmt.Errorf("connect: %w", firstErr)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	el := time.Since(t0)
	fmt.Printf("sessions: %d mTLS sessions connected in %s (%.0f connects/s, %d at a time)\n", n, el.Round(time.Millisecond), float64(n)/el.Seconds(), c)

	// Wait until the registry shows them all online (presence is written
	// behind the sessions), and with -warm active.
	query := "online = true"
	if warm {
		query += " AND state = active"
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		ds, err := nd.Admin.AllDevices(ctx, query)
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		if len(ds) == n {
			fmt.Printf("check: the registry shows %d devices matching %q\n", n, query)
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d devices match %q after 5 minutes", len(ds), n, query)
		}
		time.Sleep(time.Second)
	}

	after, err := nd.Mem(ctx)
	if err != nil {
		return err
	}
	if memprofile != "" {
		if err := nd.WriteProfile(ctx, "heap", memprofile); err != nil {
			return err
		}
		fmt.Println("server heap profile:", memprofile)
	}
	per := func(a, b uint64) float64 { return (float64(a) - float64(b)) / float64(n) / 1024 }
	fmt.Printf("server with %d sessions: heap in use %.0f MiB, stacks %.0f MiB, goroutines %d (starting stack %d KiB), RSS %.0f MiB (%.0f MiB after FreeOSMemory)\n",
		n, mib(after.HeapInuse), mib(after.StackInuse), after.Goroutines, after.StartStack>>10, mib(after.RSS), mib(after.RSSReleased))
	fmt.Printf("per session: heap in use %.1f KiB + stacks %.1f KiB = %.1f KiB; live heap (HeapAlloc) %.1f KiB; RSS %.1f KiB (%.1f KiB after FreeOSMemory); goroutines %.2f\n",
		per(after.HeapInuse, before.HeapInuse), per(after.StackInuse, before.StackInuse),
		per(after.HeapInuse+after.StackInuse, before.HeapInuse+before.StackInuse),
		per(after.HeapAlloc, before.HeapAlloc), per(after.RSS, before.RSS), per(after.RSSReleased, before.RSSReleased),
		float64(after.Goroutines-before.Goroutines)/float64(n))
	if hold > 0 {
		fmt.Printf("holding the sessions for %s\n", hold)
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
	return nil
}

// warmUp does what the agent does after connecting: subscribe to its
// commands and report its attributes.
func warmUp(ctx context.Context, cn *mqttraw.Conn) error {
	granted, err := cn.Subscribe(ctx, steward.Topic(cn.ClientID, steward.ChannelCmdReq))
	if err != nil {
		return err
	}
	if granted != 1 {
		return fmt.Errorf("subscribe: granted %#x", granted)
	}
	return cn.PublishWait(ctx, steward.Topic(cn.ClientID, steward.ChannelAttributes), fleet.Attributes)
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
