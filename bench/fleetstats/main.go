// Command fleetstats measures fleet analytics over a long range: it seeds
// a store with -devices devices and -days days of one metric at one
// sample per device every -every (plus reboot events), then times the
// analytics service's Stats and Outliers grouped by firmware over the
// whole range, -runs times each.
//
//	go run ./bench/fleetstats -devices 10000 -days 30 -every 1h
//	go run ./bench/fleetstats -store 'postgres://postgres@127.0.0.1:5432/test?sslmode=disable'
//
// The queries are first timed -raw-runs times on raw samples only (as
// they ran before day rollups), then the samples are rolled up (minute,
// hour, day) as the rollup job keeps them, the rollup transaction of one
// run of the job is timed, and the queries are timed -runs times again,
// now reading rollups; the two answers must agree.
//
// SQLite (synchronous=FULL, as Steward opens it) in a temporary directory
// by default; with -store a PostgreSQL URL, the command creates a fresh
// schema, points the store at it with search_path, and drops it at the
// end. Seeding is not timed. The figures are checked: every device must
// come back with all its samples and the cohort seeded as an outlier must
// be found.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for the schema

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/analytics"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/postgres"
	"github.com/steward-iot/steward/sqlite"
)

type config struct {
	devices, days, runs int
	every               time.Duration
	store, cpuprofile   string
	keep                bool
	rawRuns             int
	schema, to          string
}

func main() {
	var cfg config
	flag.IntVar(&cfg.devices, "devices", 10000, "devices")
	flag.IntVar(&cfg.days, "days", 30, "days of samples")
	flag.DurationVar(&cfg.every, "every", time.Hour, "one sample per device this often")
	flag.IntVar(&cfg.runs, "runs", 2, "timed runs of each query")
	flag.StringVar(&cfg.store, "store", "", "empty: SQLite in a temporary directory; or a postgres:// URL (a fresh schema is made and dropped)")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the timed queries to this file")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the SQLite directory or the PostgreSQL schema")
	flag.StringVar(&cfg.schema, "schema", "", "with -store: use this schema, seeded by an earlier run with -keep and the same -to, -devices, -days and -every (nothing is written or dropped)")
	flag.StringVar(&cfg.to, "to", "", "end of the seeded range, RFC 3339 on a whole hour (default: the current hour)")
	flag.IntVar(&cfg.rawRuns, "raw-runs", 1, "timed runs of each query before the samples are rolled up (raw samples only, as before day rollups); 0 for none")
	timeout := flag.Duration("timeout", 30*time.Minute, "give up after this long")
	flag.Parse()
	if cfg.devices < 10 || cfg.devices > 1_000_000 || cfg.days < 1 || cfg.days > 366 || cfg.every < time.Minute || cfg.runs < 1 {
		fmt.Fprintln(os.Stderr, "fleetstats: want 10 ≤ devices ≤ 1,000,000, 1 ≤ days ≤ 366, every ≥ 1m, runs ≥ 1")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fleetstats:", err)
		os.Exit(1)
	}
}

const tenant = "bench"

// cohorts are the firmware versions; the last one reboots three times as
// often and runs hotter, so Outliers has something to find.
var cohorts = []string{"1.0.0", "1.1.0", "1.2.0", "1.3.0", "2.0.0"}

func run(ctx context.Context, cfg config) error {
	fmt.Println(machine.Describe())
	perDevice := int(time.Duration(cfg.days) * 24 * time.Hour / cfg.every)
	fmt.Printf("command: fleetstats -devices %d -days %d -every %s: %d samples of one metric per device, %d in all\n",
		cfg.devices, cfg.days, cfg.every, perDevice, perDevice*cfg.devices)
	s, backend, cleanup, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer cleanup()

	to := time.Now().UTC().Truncate(time.Hour)
	if cfg.to != "" {
		if to, err = time.Parse(time.RFC3339, cfg.to); err != nil || !to.Equal(to.Truncate(time.Hour)) {
			return fmt.Errorf("-to %q: want RFC 3339 on a whole hour", cfg.to)
		}
		to = to.UTC()
	}
	fmt.Println("range ends", to.Format(time.RFC3339))
	from := to.Add(-time.Duration(cfg.days) * 24 * time.Hour)
	t := time.Now()
	events, err := seed(ctx, s, cfg, from, perDevice, cfg.schema != "")
	if err != nil {
		return err
	}
	fmt.Printf("setup (%s): %d devices, %d samples of cpu, %d samples of mem (not read), %d reboot events seeded in %s\n",
		backend, cfg.devices, perDevice*cfg.devices, perDevice*cfg.devices/10, events, time.Since(t).Round(time.Second))
	if err := analyze(ctx, s, cfg); err != nil {
		return err
	}
	svc := analytics.New(s, slog.New(slog.DiscardHandler))
	q := steward.FleetStatsQuery{GroupBy: "firmware", Metric: "cpu", Event: "reboot", From: from, To: to}
	if cfg.cpuprofile != "" {
		f, err := os.Create(cfg.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	var raw steward.FleetStats
	if cfg.rawRuns > 0 {
		if raw, err = timeStats(ctx, svc, q, cfg, events, cfg.rawRuns, "raw samples only"); err != nil {
			return err
		}
	}
	if err := rollup(ctx, s, cfg, from, to); err != nil {
		return err
	}
	rolled, err := timeStats(ctx, svc, q, cfg, events, cfg.runs, "rollups")
	if err != nil {
		return err
	}
	if cfg.rawRuns > 0 {
		if err := sameStats(raw, rolled); err != nil {
			return err
		}
		fmt.Println("check: the answer from rollups is the answer from raw samples (counts equal, means within 1e-9)")
	}
	return nil
}

// timeStats times Stats and Outliers runs times and checks their answers.
func timeStats(ctx context.Context, svc *analytics.Service, q steward.FleetStatsQuery, cfg config, events, runs int, what string) (steward.FleetStats, error) {
	var st steward.FleetStats
	for i := range runs {
		t := time.Now()
		var err error
		st, err = svc.Stats(ctx, tenant, q)
		if err != nil {
			return st, err
		}
		statsTime := time.Since(t)
		if err := checkStats(st, cfg, events); err != nil {
			return st, err
		}
		t = time.Now()
		out, err := svc.Outliers(ctx, tenant, q, steward.OutlierRule{})
		if err != nil {
			return st, err
		}
		outTime := time.Since(t)
		found := false
		for _, o := range out.Outliers {
			found = found || o.Value == cohorts[len(cohorts)-1]
		}
		if !found {
			return st, fmt.Errorf("outliers: firmware %s not found in %+v", cohorts[len(cohorts)-1], out.Outliers)
		}
		fmt.Printf("run %d (%s): Stats by firmware over %d days: %s; Outliers: %s (%d found)\n", i+1, what, cfg.days,
			statsTime.Round(time.Millisecond), outTime.Round(time.Millisecond), len(out.Outliers))
	}
	return st, nil
}

// sameStats checks that two answers agree: the same groups and counts,
// and means equal but for the rounding of a different order of addition.
func sameStats(a, b steward.FleetStats) error {
	close := func(x, y float64) bool { return math.Abs(x-y) <= 1e-9*math.Max(1, math.Abs(x)) }
	if len(a.Groups) != len(b.Groups) {
		return fmt.Errorf("raw and rolled-up answers differ: %d and %d groups", len(a.Groups), len(b.Groups))
	}
	for i, g := range a.Groups {
		h := b.Groups[i]
		if g.Value != h.Value || g.Devices != h.Devices || g.Online != h.Online || *g.Event != *h.Event ||
			g.Metric.Devices != h.Metric.Devices || !close(g.Metric.Mean, h.Metric.Mean) || !close(g.Metric.P50, h.Metric.P50) || !close(g.Metric.P95, h.Metric.P95) {
			return fmt.Errorf("raw and rolled-up answers differ:\n%+v %+v\n%+v %+v", g, *g.Metric, h, *h.Metric)
		}
	}
	return nil
}

// rollup rolls the seeded samples up to the end of the range, as the
// rollup job would have, a day per transaction (untimed setup); then it
// times what the job does every minute once it has caught up, which is how
// long each run holds the writer: the last minute again (the steady state)
// and the last ten minutes (the job's largest chunk, while catching up),
// both late in a day of hour rollups, so that the day's recompute reads
// most of its hours.
func rollup(ctx context.Context, s steward.Store, cfg config, from, to time.Time) error {
	t := time.Now()
	for at := from.Add(-time.Hour); at.Before(to); {
		next := at.Add(24 * time.Hour)
		if next.After(to) {
			next = to
		}
		if err := s.RollupSamples(ctx, at, next); err != nil {
			return fmt.Errorf("roll up: %w", err)
		}
		at = next
	}
	fmt.Printf("rollup of the whole range, a day per transaction (setup): %s\n", time.Since(t).Round(time.Millisecond))
	if err := analyze(ctx, s, cfg); err != nil {
		return err
	}
	for _, w := range []time.Duration{time.Minute, 10 * time.Minute} {
		var times []time.Duration
		for range 5 {
			t := time.Now()
			if err := s.RollupSamples(ctx, to.Add(-w), to); err != nil {
				return fmt.Errorf("roll up: %w", err)
			}
			times = append(times, time.Since(t))
		}
		slices.Sort(times)
		fmt.Printf("rollup transaction over the last %s (writer held): median %s, max %s of 5\n", w,
			times[2].Round(100*time.Microsecond), times[4].Round(100*time.Microsecond))
	}
	return nil
}

// checkStats checks that every device, every device's metric and every
// event was counted.
func checkStats(st steward.FleetStats, cfg config, events int) error {
	devices, reported, evs := 0, 0, int64(0)
	for _, g := range st.Groups {
		devices += g.Devices
		if g.Metric != nil {
			reported += g.Metric.Devices
		}
		if g.Event != nil {
			evs += g.Event.Events
		}
	}
	if devices != cfg.devices || reported != cfg.devices || evs != int64(events) || len(st.Groups) != len(cohorts) {
		return fmt.Errorf("stats: %d groups, %d devices, %d reporting cpu, %d events; want %d, %d, %d, %d",
			len(st.Groups), devices, reported, evs, len(cohorts), cfg.devices, cfg.devices, events)
	}
	return nil
}

// analyze gives PostgreSQL the planner statistics of the tables just
// filled, as autovacuum does on a running node some time after a bulk load
// (and as docs/operations.md says to do by hand after one): without them,
// the month's Stats took 1 min 51 s, with them a few hundred ms. SQLite
// needs none.
func analyze(ctx context.Context, s steward.Store, cfg config) error {
	if cfg.store == "" {
		return nil
	}
	db, ok := s.(interface{ DB() *sql.DB })
	if !ok {
		return errors.New("analyze: the store gives no database handle")
	}
	t := time.Now()
	if _, err := db.DB().ExecContext(ctx, `ANALYZE devices, device_events, samples, samples_recent, metric_latest, samples_1m, samples_1h, samples_1d`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	fmt.Printf("ANALYZE of the filled tables: %s\n", time.Since(t).Round(time.Millisecond))
	return nil
}

func open(ctx context.Context, cfg config) (steward.Store, string, func(), error) {
	log := slog.New(slog.DiscardHandler)
	if cfg.store == "" {
		dir, err := os.MkdirTemp("", "steward-bench-fleetstats-")
		if err != nil {
			return nil, "", nil, err
		}
		s, err := sqlite.Open(ctx, filepath.Join(dir, "steward.db"), log)
		if err != nil {
			_ = os.RemoveAll(dir)
			return nil, "", nil, err
		}
		return s, "SQLite " + dir, func() {
			_ = s.Close()
			if cfg.keep {
				fmt.Println("kept", dir)
			} else {
				_ = os.RemoveAll(dir)
			}
		}, nil
	}
	if !strings.HasPrefix(cfg.store, "postgres://") && !strings.HasPrefix(cfg.store, "postgresql://") {
		return nil, "", nil, errors.New("-store: want a postgres:// URL")
	}
	db, err := sql.Open("pgx", cfg.store)
	if err != nil {
		return nil, "", nil, err
	}
	schema := fmt.Sprintf("bench_fleetstats_%d", time.Now().UnixNano())
	if cfg.schema != "" {
		schema = cfg.schema
	} else if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = db.Close()
		return nil, "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		if cfg.keep || cfg.schema != "" {
			fmt.Println("kept schema", schema)
		} else if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "fleetstats: drop schema:", err)
		}
		_ = db.Close()
	}
	u, err := url.Parse(cfg.store)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	v := u.Query()
	v.Set("search_path", schema)
	u.RawQuery = v.Encode()
	s, err := postgres.Open(ctx, u.String(), log)
	if err != nil {
		drop()
		return nil, "", nil, err
	}
	return s, "PostgreSQL schema " + schema, func() { _ = s.Close(); drop() }, nil
}

// seed writes the devices, their samples (in batches, to bound memory) and
// reboot events: on average one per device every ten days, three times as
// many on the last firmware.
func seed(ctx context.Context, s steward.Store, cfg config, from time.Time, perDevice int, dry bool) (int, error) {
	t0 := from.Add(-time.Hour)
	id := func(i int) string { return fmt.Sprintf("d-bench%013d", i) }
	if dry {
		// The schema is seeded: only count the events seeding would write.
		return seedEvents(cfg, perDevice), nil
	}
	if err := s.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "Bench", CreatedAt: t0}); err != nil {
		return 0, err
	}
	if err := s.InTx(ctx, func(tx steward.Store) error {
		for i := range cfg.devices {
			d := steward.Device{ID: id(i), TenantID: tenant, Model: "gw-100", Firmware: cohorts[i%len(cohorts)],
				Location: steward.Location{Site: fmt.Sprintf("site-%03d", i%200)},
				State:    steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}
			if err := tx.CreateDevice(ctx, d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("devices: %w", err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 200_000
	buf := make([]steward.Sample, 0, batch)
	flush := func() error {
		if len(buf) == 0 {
			return nil
		}
		err := s.WriteSamples(ctx, buf)
		buf = buf[:0]
		return err
	}
	var evs []steward.DeviceEvent
	total := 0
	last := time.Now()
	for i := range cfg.devices {
		hot := i%len(cohorts) == len(cohorts)-1
		base := 20 + float64(i%30)
		if hot {
			base += 40
		}
		for k := range perDevice {
			at := from.Add(time.Duration(k)*cfg.every + time.Duration(i%3600)*time.Second%cfg.every)
			buf = append(buf, steward.Sample{TenantID: tenant, DeviceID: id(i), Metric: "cpu", At: at, Value: base + 10*rng.Float64()})
			// Another metric, a tenth as dense, that the query must skip.
			if k%10 == 0 {
				buf = append(buf, steward.Sample{TenantID: tenant, DeviceID: id(i), Metric: "mem", At: at, Value: 1})
			}
			if len(buf) >= batch {
				if err := flush(); err != nil {
					return 0, err
				}
				if time.Since(last) > 10*time.Second {
					fmt.Printf("  … %d of %d devices' samples written\n", i, cfg.devices)
					last = time.Now()
				}
			}
		}
		n := rng.IntN(cfg.days/5 + 1)
		if hot {
			n *= 3
		}
		for range n {
			at := from.Add(time.Duration(rng.Int64N(int64(time.Duration(cfg.days) * 24 * time.Hour))))
			evs = append(evs, steward.DeviceEvent{TenantID: tenant, DeviceID: id(i), Type: "reboot", Severity: steward.SeverityWarning, At: at, Received: at})
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	total = len(evs)
	for len(evs) > 0 {
		n := min(len(evs), 10_000)
		if err := s.AddDeviceEvents(ctx, evs[:n]); err != nil {
			return 0, fmt.Errorf("events: %w", err)
		}
		evs = evs[n:]
	}
	return total, nil
}

// seedEvents counts the events seed writes, drawing the same random
// numbers in the same order.
func seedEvents(cfg config, perDevice int) int {
	rng := rand.New(rand.NewPCG(1, 2))
	total := 0
	for i := range cfg.devices {
		for range perDevice {
			_ = rng.Float64()
		}
		n := rng.IntN(cfg.days/5 + 1)
		if i%len(cohorts) == len(cohorts)-1 {
			n *= 3
		}
		for range n {
			_ = rng.Int64N(int64(time.Duration(cfg.days) * 24 * time.Hour))
		}
		total += n
	}
	return total
}
