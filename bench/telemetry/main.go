// Command telemetry measures QoS 1 telemetry through Steward's broker into
// the store, and the same publish load against Mosquitto, in one run.
//
//	go run ./bench/telemetry -clients 50 -inflight 64 -messages 400000
//
// Steward: a full node runs in a child process (SQLite store in a temporary
// directory). The publishing devices enroll over EST, connect over mTLS with
// their operational certificates, send their attributes report and are
// waited for until the registry shows them active. Then each publishes its
// share of the messages, QoS 1, 43-byte JSON with one metric and a distinct
// timestamp (the clock's when it is sent, in milliseconds, so that samples
// fall in the minutes they are sent in), keeping -inflight unacknowledged; the rate is messages
// acknowledged per second. Steward acknowledges a message only once its
// sample is committed, and the command checks that: every acknowledged
// message must be a row of the store, in samples or samples_recent
// (counted per device and timestamp range), and each device's latest value,
// read through the REST API, must be its last acknowledged sample. A run
// that fails the check ends with an error and no summary.
//
// With -metrics n each message carries n metrics (n samples); with
// -readings r it carries r readings of them (n × r samples, a JSON array of
// r objects with distinct timestamps), as a device sending what it
// buffered does; with
// -store a postgres:// URL the node stores into a fresh PostgreSQL schema,
// dropped at the end. The acknowledgement latency of every message (from
// its write to its PUBACK) is reported as p50 and p99. For a fleet:
//
//	go run ./bench/telemetry -clients 10000 -inflight 1 -metrics 10 -messages 300000 -targets steward
//
// Mosquitto: the same publisher, the same topics and payloads, against the
// machine's Mosquitto (plain TCP, -mosquitto) and, unless -targets says
// otherwise, against a Mosquitto this command starts with mutual TLS
// (mosquitto-tls.conf, TLS 1.3, the devices' Steward certificates). Mosquitto
// does not store QoS 1 messages no one subscribes to: it acknowledges on
// receipt.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	_ "embed"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, to count stored samples
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver, to count stored samples

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/bench/internal/fleet"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/bench/internal/mqttraw"
	"github.com/steward-iot/steward/bench/internal/node"
	"github.com/steward-iot/steward/sqlite"
)

//go:embed mosquitto-tls.conf
var mosquittoConf string

type config struct {
	clients, inflight, messages int
	metrics                     int
	readings                    int // timestamps per message
	targets                     []string
	mosquittoAddr               string
	mosquittoPID                int
	mosquittoBin                string
	cpuprofile                  string
	keep                        bool
	logLevel                    string
	// store is a PostgreSQL URL (empty: SQLite); storeURL the same with
	// search_path set to a fresh schema, which the command drops after.
	store, storeURL string
}

// samples is how many samples one message carries.
func (c config) samples() int { return c.metrics * c.readings }

func main() {
	node.RunChildIfAsked()
	var cfg config
	flag.IntVar(&cfg.clients, "clients", 50, "publishing devices (connections)")
	flag.IntVar(&cfg.inflight, "inflight", 64, "unacknowledged QoS 1 messages per connection (Steward's receive maximum is 64)")
	flag.IntVar(&cfg.messages, "messages", 400000, "QoS 1 messages in all, per target")
	flag.IntVar(&cfg.metrics, "metrics", 1, "metrics per reading: cpu, m1, m2 …")
	flag.IntVar(&cfg.readings, "readings", 1, "readings (timestamps) per message, as a device sending buffered samples: a JSON array of that many objects, each with every metric")
	targets := flag.String("targets", "steward,mosquitto,mosquitto-tls", "comma-separated: steward, mosquitto (plain TCP, -mosquitto), mosquitto-tls (started by this command)")
	flag.StringVar(&cfg.mosquittoAddr, "mosquitto", "127.0.0.1:1883", "the machine's Mosquitto (plain TCP)")
	flag.IntVar(&cfg.mosquittoPID, "mosquitto-pid", 0, "its process ID, for its CPU time (default: from /run/mosquitto/mosquitto.pid)")
	flag.StringVar(&cfg.mosquittoBin, "mosquitto-bin", "mosquitto", "the Mosquitto binary for mosquitto-tls")
	flag.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of the Steward server during its timed part to this file")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the Steward server's data directory (and the PostgreSQL schema)")
	flag.StringVar(&cfg.logLevel, "log-level", "info", "the server's log level (its server.log, kept with -keep): debug shows each rollup transaction's steps and their times")
	flag.StringVar(&cfg.store, "store", "", "empty: SQLite in the data directory; or a postgres:// URL, in which the command makes a fresh schema and drops it at the end")
	timeout := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	cfg.targets = strings.Split(*targets, ",")
	for _, t := range cfg.targets {
		if !slices.Contains([]string{"steward", "mosquitto", "mosquitto-tls"}, t) {
			fmt.Fprintf(os.Stderr, "telemetry: unknown target %q\n", t)
			os.Exit(2)
		}
	}
	// 19,000 clients: one process may open 20,000 files here.
	if cfg.clients < 1 || cfg.clients > 19000 || cfg.inflight < 1 || cfg.inflight > 65535 || cfg.messages < cfg.clients || cfg.messages > 50_000_000 || cfg.metrics < 1 || cfg.metrics > 100 ||
		cfg.readings < 1 || cfg.metrics*cfg.readings > 1000 {
		fmt.Fprintln(os.Stderr, "telemetry: want 1 ≤ clients ≤ 19000, 1 ≤ inflight ≤ 65535, clients ≤ messages ≤ 50,000,000, 1 ≤ metrics ≤ 100, 1 ≤ readings, metrics × readings ≤ 1000 (the samples a message may carry)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "telemetry:", err)
		os.Exit(1)
	}
}

// result is one target's measurement.
type result struct {
	target string
	rate   float64
	split  node.Split
	note   string
	// p50, p99: acknowledgement latency, from a PUBLISH's write to its PUBACK.
	p50, p99 time.Duration
}

func run(ctx context.Context, cfg config) error {
	fmt.Println(machine.Describe())
	fmt.Printf("command: telemetry -clients %d -inflight %d -messages %d -metrics %d -readings %d -targets %s\n", cfg.clients, cfg.inflight, cfg.messages, cfg.metrics, cfg.readings, strings.Join(cfg.targets, ","))
	payload := mqttraw.TelemetryReadings(cfg.metrics, cfg.readings)
	fmt.Printf("payload: %d bytes, %d metrics × %d readings = %d samples, e.g. %s\n", len(payload), cfg.metrics, cfg.readings, cfg.samples(), payload)

	if cfg.store != "" {
		url, drop, err := pgSchema(ctx, cfg.store, cfg.keep)
		if err != nil {
			return err
		}
		defer drop()
		cfg.storeURL = url
	}
	// The devices enroll with Steward even when it is not a target: the
	// TLS Mosquitto authenticates their Steward certificates.
	nd, err := node.Start(ctx, node.Options{Keep: cfg.keep, StoreURL: cfg.storeURL, LogLevel: cfg.logLevel})
	if err != nil {
		return err
	}
	defer func() {
		if err := nd.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "telemetry: stop server:", err)
		}
		if cfg.keep {
			fmt.Println("data directory kept:", nd.DataDir)
		}
	}()
	f, err := fleet.New(ctx, nd, "Bench Devices")
	if err != nil {
		return err
	}
	ids, err := f.Identities(cfg.clients, "SN")
	if err != nil {
		return err
	}
	enrolled := f.EnrollAll(ctx, ids, min(cfg.clients, 32), func(i int) net.IP { return mqttraw.Source(2, i) }, func(done int) {
		fmt.Printf("  … %d enrolled\n", done)
	})
	if enrolled.Errors > 0 {
		return fmt.Errorf("enrollment: %d errors, first: %w", enrolled.Errors, enrolled.FirstErr)
	}
	devices := enrolled.Devices
	fmt.Printf("setup: %d devices enrolled through EST\n", len(devices))

	var results []result
	for _, t := range cfg.targets {
		var r result
		var err error
		switch t {
		case "steward":
			r, err = runSteward(ctx, cfg, f, devices)
		case "mosquitto":
			r, err = runMosquitto(ctx, cfg, devices)
		case "mosquitto-tls":
			r, err = runMosquittoTLS(ctx, cfg, f, devices)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", t, err)
		}
		results = append(results, r)
	}
	fmt.Println()
	fmt.Printf("summary (%d clients, %d in flight each, %d QoS 1 messages of %d metrics × %d readings per target):\n", cfg.clients, cfg.inflight, cfg.messages, cfg.metrics, cfg.readings)
	for _, r := range results {
		fmt.Printf("  %-14s %8.0f msg/s = %8.0f samples/s, ack p50 %s p99 %s  server %.2f cores, load generator %.2f cores, others %.2f  %s\n", r.target, r.rate, r.rate*float64(cfg.samples()), r.p50, r.p99,
			r.split.Server.Seconds()/r.split.Wall.Seconds(), r.split.Client.Seconds()/r.split.Wall.Seconds(),
			max(r.split.MachineBusy-r.split.Server-r.split.Client, 0).Seconds()/r.split.Wall.Seconds(), r.note)
	}
	if len(results) > 1 && results[0].target == "steward" {
		for _, r := range results[1:] {
			fmt.Printf("  steward / %s: %.2f\n", r.target, results[0].rate/r.rate)
		}
	}
	return nil
}

// share is connection i's part of the messages.
func share(messages, clients, i int) int {
	n := messages / clients
	if i < messages%clients {
		n++
	}
	return n
}

// publishAll runs the timed part on open connections: every connection
// publishes its share at once; it returns the messages acknowledged per
// connection, the wall time, and the CPU split.
func publishAll(ctx context.Context, cfg config, conns []*mqttraw.Conn, meter func(context.Context) (*node.Meter, error)) ([]int, time.Duration, node.Split, error) {
	acked := make([]int, len(conns))
	var total atomic.Int64
	errs := make([]error, len(conns))
	m, err := meter(ctx)
	if err != nil {
		return nil, 0, node.Split{}, err
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		last, lastT := int64(0), time.Now()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				n := total.Load()
				fmt.Printf("  … %d acknowledged (%.0f/s over the last %.0f s)\n", n, float64(n-last)/now.Sub(lastT).Seconds(), now.Sub(lastT).Seconds())
				last, lastT = n, now
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for i, cn := range conns {
		cn.Payload, cn.Readings, cn.RecordLatency, cn.Latencies = mqttraw.TelemetryReadings(cfg.metrics, cfg.readings), cfg.readings, true, nil
		cn.RealTime = true
		wg.Go(func() {
			topic := steward.Topic(cn.ClientID, steward.ChannelTelemetry)
			acked[i], errs[i] = cn.Publish(ctx, topic, share(cfg.messages, len(conns), i), cfg.inflight, time.Now().UnixMilli(), &total)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(done)
	split, err := m.Stop(ctx)
	if err != nil {
		return nil, 0, node.Split{}, err
	}
	for i, err := range errs {
		if err != nil {
			return acked, elapsed, split, fmt.Errorf("connection %d (%s): %w", i, conns[i].ClientID, err)
		}
	}
	return acked, elapsed, split, nil
}

func closeAll(conns []*mqttraw.Conn) {
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
}

// dialAll connects one session per device.
func dialAll(ctx context.Context, addr string, tlsFor func(fleet.Device) *tls.Config, devices []fleet.Device) ([]*mqttraw.Conn, error) {
	conns := make([]*mqttraw.Conn, len(devices))
	errs := make([]error, len(devices))
	var next atomic.Int64
	var wg sync.WaitGroup
	// 32 at a time: thousands of sequential handshakes would make setup slow.
	for range min(32, len(devices)) {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(devices) {
					return
				}
				var tc *tls.Config
				if tlsFor != nil {
					tc = tlsFor(devices[i])
				}
				conns[i], errs[i] = mqttraw.Dial(ctx, addr, tc, mqttraw.Source(1, i), devices[i].ID, 600)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		closeAll(conns)
		return nil, err
	}
	return conns, nil
}

func runSteward(ctx context.Context, cfg config, f *fleet.Fleet, devices []fleet.Device) (result, error) {
	backend := "SQLite, synchronous=FULL"
	if cfg.store != "" {
		backend = "PostgreSQL"
	}
	fmt.Printf("\n== steward: MQTT over mTLS into the store (%s)\n", backend)
	conns, err := dialAll(ctx, f.Node.MQTTAddr, func(d fleet.Device) *tls.Config { return f.TLS(d.Cert) }, devices)
	if err != nil {
		return result{}, err
	}
	defer closeAll(conns)
	attrErrs := make([]error, len(conns))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(32, len(conns)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(conns) {
					return
				}
				c := conns[i]
				if err := c.PublishWait(ctx, steward.Topic(c.ClientID, steward.ChannelAttributes), fleet.Attributes); err != nil {
					attrErrs[i] = fmt.Errorf("attributes of %s: %w", c.ClientID, err)
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(attrErrs...); err != nil {
		return result{}, err
	}
	if err := waitActive(ctx, f, len(devices)); err != nil {
		return result{}, err
	}
	fmt.Printf("setup: %d sessions connected, all devices active\n", len(conns))

	if cfg.cpuprofile != "" {
		if err := f.Node.StartCPUProfile(ctx, cfg.cpuprofile); err != nil {
			return result{}, err
		}
	}
	acked, elapsed, split, pubErr := publishAll(ctx, cfg, conns, f.Node.StartMeter)
	if cfg.cpuprofile != "" {
		if err := f.Node.StopCPUProfile(ctx); err != nil {
			return result{}, err
		}
		fmt.Println("server CPU profile:", cfg.cpuprofile)
	}
	total := sum(acked)
	rate := float64(total) / elapsed.Seconds()
	p50, p99 := latencies(conns)
	fmt.Printf("steward: %d of %d messages acknowledged in %s: %.0f msg/s, %.0f samples/s; acknowledgement p50 %s, p99 %s\n",
		total, cfg.messages, elapsed.Round(time.Millisecond), rate, rate*float64(cfg.samples()), p50, p99)
	fmt.Println(split)
	fmt.Println(split.PerOp(total, "message"))
	// Check even after an error: what was acknowledged must be stored.
	if err := verifyStored(ctx, cfg, f, conns, acked); err != nil {
		return result{}, errors.Join(pubErr, err)
	}
	if pubErr != nil {
		return result{}, pubErr
	}
	return result{target: "steward", rate: rate, split: split, p50: p50, p99: p99, note: "mTLS, every message committed to " + backend + " before its PUBACK (checked)"}, nil
}

// latencies gives the 50th and 99th percentiles of all connections'
// acknowledgement latencies.
func latencies(conns []*mqttraw.Conn) (p50, p99 time.Duration) {
	var all []time.Duration
	for _, c := range conns {
		all = append(all, c.Latencies...)
	}
	if len(all) == 0 {
		return 0, 0
	}
	slices.Sort(all)
	at := func(p float64) time.Duration {
		return all[min(int(float64(len(all))*p), len(all)-1)].Round(10 * time.Microsecond)
	}
	return at(0.50), at(0.99)
}

func sum(xs []int) int {
	t := 0
	for _, x := range xs {
		t += x
	}
	return t
}

// waitActive waits until the registry shows n active devices.
func waitActive(ctx context.Context, f *fleet.Fleet, n int) error {
	deadline := time.Now().Add(time.Minute + time.Duration(n)*time.Millisecond)
	for {
		ds, err := f.Node.Admin.AllDevices(ctx, "state = active")
		if err != nil {
			return err
		}
		if len(ds) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d devices active after %s", len(ds), n, time.Minute+time.Duration(n)*time.Millisecond)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// notMoved selects the readings r of samples_recent that samples does not
// hold: the ones the rollup job has not moved yet. (The store hides each
// metric samples holds, sqlstore.sampleRows; this command never sends a
// reading twice but after a failed batch, which then holds every metric.)
const notMoved = `NOT EXISTS (SELECT 1 FROM samples o
	WHERE o.tenant_id = r.tenant_id AND o.device_id = r.device_id AND o.at = r.at)`

// metricsOf counts the metrics of a reading's metrics column, on SQLite
// (JSON text) or PostgreSQL (JSONB).
func metricsOf(postgres bool, col string) string {
	if postgres {
		return `(SELECT count(*) FROM jsonb_object_keys(` + col + `))`
	}
	return `(SELECT count(*) FROM json_each(` + col + `))`
}

// recentCount is how many samples of a device samples_recent holds at one
// time (Unix microseconds).
type recentCount struct {
	at int64
	n  int
}

// recentSamples reads, in one pass, the tenant's samples not moved yet,
// counted per device and time: counting them device by device would scan
// samples_recent, keyed by time, once per device.
func recentSamples(ctx context.Context, db *sql.Tx, postgres bool, tenantID string) (map[string][]recentCount, error) {
	q := `SELECT device_id, at, ` + metricsOf(postgres, "r.metrics") + ` FROM samples_recent r WHERE tenant_id = ? AND ` + notMoved
	if postgres {
		q = strings.Replace(q, "?", "$1", 1)
	}
	rows, err := db.QueryContext(ctx, q, tenantID)
	if err != nil {
		return nil, fmt.Errorf("count recent samples: %w", err)
	}
	defer rows.Close()
	out := map[string][]recentCount{}
	for rows.Next() {
		var device string
		var r recentCount
		var at any
		if err := rows.Scan(&device, &at, &r.n); err != nil {
			return nil, fmt.Errorf("count recent samples: %w", err)
		}
		switch v := at.(type) {
		case int64:
			r.at = v
		case time.Time:
			r.at = v.UnixMicro()
		default:
			return nil, fmt.Errorf("count recent samples: time of type %T", at)
		}
		out[device] = append(out[device], r)
	}
	return out, rows.Err()
}

// verifyStored checks that every acknowledged message is a sample in the
// store: acknowledgements come in order, so connection i's first acked[i]
// messages (timestamps ts … ts+acked[i]-1) must all be rows of samples,
// and its latest value (REST API) the last of them.
func verifyStored(ctx context.Context, cfg config, f *fleet.Fleet, conns []*mqttraw.Conn, acked []int) error {
	metrics, readings := cfg.metrics, int64(cfg.readings)
	// Times are stored as Unix microseconds in SQLite, timestamptz in PostgreSQL.
	count := `SELECT coalesce(sum(` + metricsOf(false, "metrics") + `), 0) FROM samples WHERE tenant_id = ? AND device_id = ? AND at BETWEEN ? AND ?`
	at := func(ms int64) any { return ms * 1000 }
	var db *sql.DB
	var err error
	if cfg.store == "" {
		path := filepath.Join(f.Node.DataDir, "steward.db")
		db, err = sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
		if err == nil {
			// One connection, so that the telemetry database stays attached.
			db.SetMaxOpenConns(1)
			db.SetConnMaxLifetime(0)
			_, err = db.ExecContext(ctx, `ATTACH DATABASE ? AS telemetry`, "file:"+sqlite.TelemetryPath(path)+"?mode=ro")
		}
	} else {
		db, err = sql.Open("pgx", cfg.storeURL)
		count = `SELECT coalesce(sum(` + metricsOf(true, "metrics") + `), 0) FROM samples WHERE tenant_id = $1 AND device_id = $2 AND at BETWEEN $3 AND $4`
		at = func(ms int64) any { return time.UnixMilli(ms) }
	}
	if err != nil {
		return err
	}
	defer db.Close()
	// One snapshot for every count: the node's rollup job moves readings
	// from samples_recent into samples meanwhile.
	opts := &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true}
	if cfg.store == "" {
		opts = nil // SQLite's transactions are snapshots already
	}
	tx, err := db.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	if cfg.store == "" {
		// On SQLite the move commits its INSERT into samples (steward.db)
		// before it deletes from samples_recent (the telemetry database):
		// reading the telemetry database first, and holding that snapshot,
		// sees every reading in one of the two.
		var batch int64
		if err := tx.QueryRowContext(ctx, `SELECT n FROM telemetry.telemetry_batch`).Scan(&batch); err != nil {
			return err
		}
	}
	recent, err := recentSamples(ctx, tx, cfg.store != "", f.Group.TenantID)
	if err != nil {
		return err
	}
	var missing, stored, latestChecked int
	for i, c := range conns {
		if acked[i] == 0 {
			continue
		}
		var n int
		// Every metric of every reading of every acknowledged message:
		// acked[i] × metrics × readings samples, message k's readings at
		// Stamps[k] … Stamps[k]+readings-1, each message's after the last.
		ts, last := c.Stamps[0], c.Stamps[acked[i]-1]+readings-1
		err := tx.QueryRowContext(ctx, count, f.Group.TenantID, c.ClientID, at(ts), at(last)).Scan(&n)
		if err != nil {
			return fmt.Errorf("count samples of %s: %w", c.ClientID, err)
		}
		for _, r := range recent[c.ClientID] {
			if r.at >= ts*1000 && r.at <= last*1000 {
				n += r.n
			}
		}
		stored += n
		missing += acked[i]*cfg.samples() - n
		// The REST API allows an admin token 50 requests/s: with many
		// devices, the latest values of 200 of them spread over the fleet.
		if stride := max(len(conns)/200, 1); i%stride != 0 {
			continue
		}
		latestChecked++
		latest, err := latestTelemetry(ctx, f, c.ClientID)
		if err != nil {
			return fmt.Errorf("latest telemetry of %s: %w", c.ClientID, err)
		}
		want := time.UnixMilli(last)
		cpu := slices.IndexFunc(latest, func(s steward.Sample) bool { return s.Metric == "cpu" })
		if len(latest) != metrics || cpu < 0 || latest[cpu].Value != 0.31 || !latest[cpu].At.Equal(want) {
			return fmt.Errorf("latest telemetry of %s: %+v, want %d metrics, cpu=0.31 at %s", c.ClientID, latest, metrics, want.UTC().Format(time.RFC3339Nano))
		}
	}
	var rows int
	if err := tx.QueryRowContext(ctx, `SELECT (SELECT coalesce(sum(`+metricsOf(cfg.store != "", "metrics")+`), 0) FROM samples) + (SELECT coalesce(sum(`+metricsOf(cfg.store != "", "r.metrics")+`), 0) FROM samples_recent r WHERE `+notMoved+`)`).Scan(&rows); err != nil {
		return err
	}
	fmt.Printf("check: %d acknowledged messages × %d metrics × %d readings, %d of those samples found in the store (samples and samples_recent: %d samples in all), latest values (REST) right for %d of %d devices\n",
		sum(acked), metrics, readings, stored, rows, latestChecked, len(conns))
	if missing != 0 {
		return fmt.Errorf("%d samples of acknowledged messages are not in the store", missing)
	}
	return nil
}

// pgSchema makes a fresh schema in the PostgreSQL database at base and
// returns base with search_path set to it, and a function that drops it.
func pgSchema(ctx context.Context, base string, keep bool) (string, func(), error) {
	if !strings.HasPrefix(base, "postgres://") && !strings.HasPrefix(base, "postgresql://") {
		return "", nil, errors.New("-store: want a postgres:// URL")
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, err
	}
	db, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	schema := fmt.Sprintf("bench_telemetry_%d", time.Now().UnixNano())
	if _, err := db.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
		_ = db.Close()
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	v := u.Query()
	v.Set("search_path", schema)
	u.RawQuery = v.Encode()
	fmt.Println("store: PostgreSQL, schema", schema)
	return u.String(), func() {
		if keep {
			fmt.Println("schema kept:", schema)
		} else if _, err := db.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			fmt.Fprintln(os.Stderr, "telemetry: drop schema:", err)
		}
		_ = db.Close()
	}, nil
}

// latestTelemetry reads a device's latest values through the REST API,
// waiting when the API's rate limit answers 429.
func latestTelemetry(ctx context.Context, f *fleet.Fleet, id string) ([]steward.Sample, error) {
	for {
		latest, err := f.Node.Admin.LatestTelemetry(ctx, id)
		if steward.ErrorCode(err) != steward.CodeRateLimited {
			return latest, err
		}
		select {
		case <-ctx.Done():
			return nil, errors.Join(err, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

func mosquittoPID(cfg config) (int, error) {
	if cfg.mosquittoPID != 0 {
		return cfg.mosquittoPID, nil
	}
	b, err := os.ReadFile("/run/mosquitto/mosquitto.pid")
	if err != nil {
		return 0, fmt.Errorf("find Mosquitto's process (use -mosquitto-pid): %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

func runMosquitto(ctx context.Context, cfg config, devices []fleet.Device) (result, error) {
	fmt.Printf("\n== mosquitto: the machine's Mosquitto at %s, plain TCP (no TLS), no subscriber\n", cfg.mosquittoAddr)
	pid, err := mosquittoPID(cfg)
	if err != nil {
		return result{}, err
	}
	conns, err := dialAll(ctx, cfg.mosquittoAddr, nil, devices)
	if err != nil {
		return result{}, err
	}
	defer closeAll(conns)
	return measureMosquitto(ctx, cfg, "mosquitto", "plain TCP, acknowledged on receipt", conns, pid)
}

func measureMosquitto(ctx context.Context, cfg config, target, note string, conns []*mqttraw.Conn, pid int) (result, error) {
	version, _ := exec.Command(cfg.mosquittoBin, "-h").Output()
	v, _, _ := strings.Cut(string(version), "\n")
	fmt.Printf("setup: %d sessions connected (%s, pid %d)\n", len(conns), strings.TrimSpace(v), pid)
	meter := func(ctx context.Context) (*node.Meter, error) { return node.StartMeter(ctx, node.ProcUsage(pid)) }
	acked, elapsed, split, err := publishAll(ctx, cfg, conns, meter)
	if err != nil {
		return result{}, err
	}
	total := sum(acked)
	rate := float64(total) / elapsed.Seconds()
	p50, p99 := latencies(conns)
	fmt.Printf("%s: %d of %d messages acknowledged in %s: %.0f msg/s; acknowledgement p50 %s, p99 %s\n", target, total, cfg.messages, elapsed.Round(time.Millisecond), rate, p50, p99)
	fmt.Println(split)
	fmt.Println(split.PerOp(total, "message"))
	return result{target: target, rate: rate, split: split, p50: p50, p99: p99, note: note}, nil
}

// runMosquittoTLS starts a Mosquitto with mutual TLS on a free loopback
// port (configuration: mosquitto-tls.conf) and measures it.
func runMosquittoTLS(ctx context.Context, cfg config, f *fleet.Fleet, devices []fleet.Device) (result, error) {
	fmt.Println("\n== mosquitto-tls: Mosquitto started by this command, TLS 1.3 with client certificates, no subscriber")
	dir, err := os.MkdirTemp("", "steward-bench-mosquitto-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	deviceCA, err := f.Node.Admin.DeviceCA(ctx)
	if err != nil {
		return result{}, err
	}
	roots, certPEM, keyPEM, err := serverIdentity()
	if err != nil {
		return result{}, err
	}
	files := map[string][]byte{"client-ca.pem": deviceCA, "server.pem": certPEM, "server-key.pem": keyPEM}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return result{}, err
		}
	}
	port, err := freePort()
	if err != nil {
		return result{}, err
	}
	u, err := user.Current()
	if err != nil {
		return result{}, err
	}
	var conf strings.Builder
	err = template.Must(template.New("conf").Parse(mosquittoConf)).Execute(&conf, map[string]any{
		"User": u.Username, "Port": port,
		"ClientCAFile": filepath.Join(dir, "client-ca.pem"), "CertFile": filepath.Join(dir, "server.pem"), "KeyFile": filepath.Join(dir, "server-key.pem"),
	})
	if err != nil {
		return result{}, err
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o600); err != nil {
		return result{}, err
	}
	cmd := exec.Command(cfg.mosquittoBin, "-c", confPath)
	// Shown only if it fails: run as root, Mosquitto warns on every start.
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return result{}, fmt.Errorf("start %s: %w", cfg.mosquittoBin, err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		})
	}
	defer stop()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if err := waitListening(ctx, addr); err != nil {
		stop() // stderr is complete once it has exited
		return result{}, fmt.Errorf("%w; mosquitto said: %s", err, strings.TrimSpace(stderr.String()))
	}
	conns, err := dialAll(ctx, addr, func(d fleet.Device) *tls.Config {
		tc := f.TLS(d.Cert)
		tc.RootCAs = roots
		return tc
	}, devices)
	if err != nil {
		return result{}, err
	}
	defer closeAll(conns)
	return measureMosquitto(ctx, cfg, "mosquitto-tls", "mTLS, acknowledged on receipt", conns, cmd.Process.Pid)
}

// serverIdentity makes a CA and a server certificate for 127.0.0.1.
func serverIdentity() (roots *x509.CertPool, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench Mosquitto CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, nil, err
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return roots, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), nil
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("mosquitto did not listen on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
