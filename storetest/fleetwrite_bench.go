package storetest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// The fleet of BenchmarkWriteSamplesFleet: 10,000 devices × 10 metrics,
// 100,000 series, the fleet of docs/benchmarks.md "Monitoring".
const (
	FleetDevices = 10000
	FleetMetrics = 10
)

// FleetStart is the time of the first sample BenchmarkWriteSamplesFleet
// writes; a store's seed must hold only samples before it.
var FleetStart = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// fleetDevice and fleetMetric name the fleet's series: device d is
// printf('d-%020x', d*7919) and metric m is 'metric' || m, so that a
// store's seed can make the same names in SQL.
func fleetDevice(d int) string { return fmt.Sprintf("d-%020x", d*7919) }
func fleetMetric(m int) string { return fmt.Sprintf("metric%d", m) }

// BenchmarkWriteSamplesFleet measures WriteSamples as the telemetry writer
// meets it with 10,000 devices connected: open returns a store whose
// samples table already holds millions of rows over the fleet's 100,000
// series (device and metric names as fleetDevice and fleetMetric make
// them, times before FleetStart), and each batch is the intake's shape —
// messages of one device's 10 metrics at one time, from many devices, the
// devices taking turns as they do when all of them send at the same rate.
// Each batch is its own transaction. The sub-benchmarks are the batch size
// in messages: 200 (the intake's default of 2,000 samples) and 2,000. With
// readings > 1 each message carries that many times per metric, as a device
// sending buffered samples does.
//
// Besides samples/s it reports the process's CPU time per sample
// (cpu-µs/sample, user + system from getrusage) and its read and write
// system calls per sample (from /proc/self/io): on a shared machine these
// move far less than wall time. With SQLite the store runs in the
// benchmark's process, so they are the store's; with PostgreSQL they are
// only the client's. After the timed writes, rollup-first-ms is one
// RollupSamples over everything the case wrote (the rollup job's
// transaction once the minutes have closed: it holds the writer too), and
// rollup-ms the next one, over one more message of every device.
func BenchmarkWriteSamplesFleet(b *testing.B, open func(b *testing.B) steward.Store) {
	for _, sh := range []struct{ messages, readings int }{{200, 1}, {2000, 1}, {200, 6}} {
		b.Run(fmt.Sprintf("messages=%d/readings=%d", sh.messages, sh.readings), func(b *testing.B) {
			s := open(b)
			per := FleetMetrics * sh.readings
			batch := make([]steward.Sample, 0, sh.messages*per)
			next := 0 // the next device to send
			round := 0
			samples := 0
			var last time.Time // the newest sample written
			// write makes the next batch and writes it.
			write := func() {
				batch = batch[:0]
				for range sh.messages {
					for r := range sh.readings {
						when := FleetStart.Add(time.Duration(round*sh.readings+r)*10*time.Second + time.Duration(next)*time.Microsecond)
						if when.After(last) {
							last = when
						}
						for m := range FleetMetrics {
							batch = append(batch, steward.Sample{TenantID: "default", DeviceID: fleetDevice(next), Metric: fleetMetric(m),
								Value: float64(round + m), At: when})
						}
					}
					if next++; next == FleetDevices {
						next, round = 0, round+1
					}
				}
				if err := s.WriteSamples(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			// Untimed, one message of every device first, so that the
			// store's cache is in the steady state of a running node.
			for range FleetDevices / sh.messages {
				write()
			}
			before := readUsage(b)
			for b.Loop() {
				write()
				samples += len(batch)
			}
			after := readUsage(b)
			b.ReportMetric(float64(samples)/b.Elapsed().Seconds(), "samples/s")
			b.ReportMetric(float64(after.cpu-before.cpu)/float64(time.Microsecond)/float64(samples), "cpu-µs/sample")
			b.ReportMetric(float64(after.reads-before.reads)/float64(samples), "reads/sample")
			b.ReportMetric(float64(after.writes-before.writes)/float64(samples), "writes/sample")

			// Untimed by the loop: the rollup job's transaction, timed on
			// its own since it holds the writer too (minutes rolled up,
			// hours, and the samples moved to where they are read by
			// device). rollup-first-ms is over all that was written, the
			// first after the seed; rollup-ms over one more message of
			// every device, a minute later, as the job's next run meets
			// it.
			rollup := func(from time.Time) float64 {
				end := last.Truncate(time.Minute).Add(time.Minute)
				start := time.Now()
				if err := s.RollupSamples(b.Context(), from, end); err != nil {
					b.Fatal(err)
				}
				return float64(time.Since(start)) / float64(time.Millisecond)
			}
			b.ReportMetric(rollup(FleetStart), "rollup-first-ms")
			from := last.Truncate(time.Minute).Add(time.Minute)
			round, next = int(from.Sub(FleetStart)/(10*time.Second))/sh.readings, 0
			for range FleetDevices / sh.messages {
				write()
			}
			b.ReportMetric(rollup(from), "rollup-ms")
		})
	}
}

// usage is the process's CPU time and read/write system calls so far.
type usage struct {
	cpu           time.Duration
	reads, writes int64
}

// readUsage reads the process's usage; the system call counts are zero
// where /proc/self/io cannot be read.
func readUsage(b *testing.B) usage {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	u := usage{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	u.reads, u.writes = procIO()
	return u
}

// procIO returns the process's read and write system calls so far
// (syscr and syscw of /proc/self/io), or zeros.
func procIO() (reads, writes int64) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(strings.TrimSpace(line), ": ")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			continue
		}
		switch name {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}
