// Command deployments measures the deployment engine's control-plane
// throughput: a deployment to -devices device records, with the devices
// simulated at the store and bus level (no MQTT, no TLS): each job the
// engine sends on the in-process bus is answered by a simulated device
// that reports downloading, installing and succeeded on update/status,
// through the real status intake (decoded, batched, written, acknowledged).
// It prints how long the engine took to write the per-device rows, and
// how many devices it moved through their states per minute.
//
//	go run ./bench/deployments -devices 100000
//	go run ./bench/deployments -devices 100000 -canary 1000 -concurrency 20000
//
// SQLite (synchronous=FULL, as Steward opens it) in a temporary
// directory. Seeding the devices is not timed. The figures are checked:
// every device must end succeeded, with four states in its history.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/deploy"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/sqlite"
)

func main() {
	devices := flag.Int("devices", 100000, "device records")
	canary := flag.Int("canary", 1000, "devices in the canary phase (the rest follow in one wave)")
	concurrency := flag.Int("concurrency", 20000, "devices in progress at once")
	workers := flag.Int("workers", 64, "goroutines simulating devices")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `FILE`")
	flag.Parse()
	if err := run(*devices, *canary, *concurrency, *workers, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "deployments:", err)
		os.Exit(1)
	}
}

func run(n, canary, concurrency, workers int, cpuprofile string) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fmt.Println(machine.Describe())
	dir, err := os.MkdirTemp("", "steward-bench-deployments-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	store, err := sqlite.Open(ctx, filepath.Join(dir, "steward.db"), nil)
	if err != nil {
		return err
	}
	defer store.Close()
	const tenant = "bench"
	now := time.Now().UTC()
	if err := store.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "bench", CreatedAt: now}); err != nil {
		return err
	}
	seedStart := time.Now()
	for start := 0; start < n; start += 5000 {
		err := store.InTx(ctx, func(tx steward.Store) error {
			for i := start; i < min(start+5000, n); i++ {
				if err := tx.CreateDevice(ctx, steward.Device{ID: fmt.Sprintf("d-%07d", i), TenantID: tenant, Model: "gw-100",
					Firmware: "1.4.1", State: steward.StateActive, StateChangedAt: now, CreatedAt: now, UpdatedAt: now}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	fmt.Printf("setup: %d device records seeded in %s (not timed)\n", n, time.Since(seedStart).Round(time.Millisecond))

	bus := inproc.New(nil)
	jobs := make(chan string, n)
	bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		var j steward.UpdateJob
		if err := json.Unmarshal(m.Payload, &j); err != nil {
			return err
		}
		if j.Action == steward.JobInstall {
			jobs <- m.DeviceID + " " + j.DeploymentID
		}
		return nil
	})
	intake := deploy.NewIntake(deploy.IntakeConfig{Store: store, MaxBatch: 2000}, bus)
	go func() { _ = intake.Run(ctx) }()
	var acked, refused atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for job := range jobs {
				var dev, dep string
				fmt.Sscan(job, &dev, &dep)
				for _, st := range []string{`"downloading", "progress": 0.5`, `"installing"`, `"succeeded", "version": "1.5.0"`} {
					payload := fmt.Sprintf(`{"deployment_id": %q, "attempt": 1, "state": %s}`, dep, st)
					bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: tenant, DeviceID: dev, Channel: steward.ChannelUpdateStatus,
						Payload: []byte(payload), QoS: 1, Received: time.Now().UTC()}, func(err error) {
						if err != nil {
							refused.Add(1)
							return
						}
						acked.Add(1)
					})
				}
			}
		})
	}

	engine := deploy.New(deploy.Config{Store: store, Bus: bus, Logger: slog.New(slog.DiscardHandler), StartBatch: concurrency})
	d, err := engine.Create(ctx, tenant, "user:bench", deploy.CreateRequest{Name: "bench", DeploymentSpec: steward.DeploymentSpec{
		Target:      steward.DeploymentTarget{Kind: steward.KindArtifact, Name: "gw-firmware", Version: "1.5.0"},
		Concurrency: concurrency,
		Phases:      []steward.Phase{{Name: "canary", Count: canary}, {Name: "rest", Percent: 100}}}})
	if err != nil {
		return err
	}
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	cpu0 := cpuTime()
	if _, err := engine.Tick(ctx); err != nil { // evaluates the target, writes the rows
		return err
	}
	rows := time.Since(start)
	fmt.Printf("start: %d per-device rows written in %s (%.0f rows/s)\n", n, rows.Round(time.Millisecond), float64(n)/rows.Seconds())
	ticks := 0
	for {
		ticks++
		if _, err := engine.Tick(ctx); err != nil {
			return err
		}
		cur, err := store.GetDeployment(ctx, tenant, d.ID)
		if err != nil {
			return err
		}
		if cur.State.Final() || cur.State == steward.DeploymentPaused {
			if cur.State != steward.DeploymentCompleted {
				return fmt.Errorf("deployment ended %s: %s", cur.State, cur.StateReason)
			}
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	total := time.Since(start)
	cpu := cpuTime() - cpu0
	run := total - rows
	close(jobs)
	wg.Wait()
	pr, err := engine.Progress(ctx, d)
	if err != nil {
		return err
	}
	if pr.States[steward.UpdateSucceeded] != n {
		return fmt.Errorf("%d of %d devices succeeded: %v", pr.States[steward.UpdateSucceeded], n, pr.States)
	}
	hist, err := store.ListDeploymentDeviceEvents(ctx, tenant, d.ID, fmt.Sprintf("d-%07d", n-1))
	if err != nil {
		return err
	}
	if len(hist) != 4 {
		return fmt.Errorf("the last device's history has %d steps, want 4", len(hist))
	}
	transitions := 4 * n // notified, downloading, installing, succeeded
	fmt.Printf("run: %d devices through notified → downloading → installing → succeeded in %s, %d ticks; %d status messages acknowledged, %d refused\n",
		n, run.Round(time.Millisecond), ticks, acked.Load(), refused.Load())
	fmt.Printf("throughput: %.0f devices/min moved to succeeded (%.0f state changes/min); with the row writing: %.0f devices/min\n",
		float64(n)/run.Minutes(), float64(transitions)/run.Minutes(), float64(n)/total.Minutes())
	// On a shared machine the wall clock says as much about the other
	// work as about this one; the CPU time the process used does not.
	fmt.Printf("cpu: %s of CPU time (user+system) for the whole deployment, rows included: %.0f devices per CPU-minute (%.0f%% of %d cores used)\n",
		cpu.Round(time.Millisecond), float64(n)/cpu.Minutes(), 100*cpu.Seconds()/total.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU())
	return nil
}

// cpuTime is the CPU time this process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
