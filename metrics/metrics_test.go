package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/metrics"
	"github.com/steward-iot/steward/mqtt"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/telemetry"
)

// The instrumented packages take these through their Config.
var (
	_ mqtt.Metrics      = (*metrics.MQTT)(nil)
	_ telemetry.Metrics = (*metrics.Telemetry)(nil)
)

// clock is a clock moved by hand, for the fleet statistics' cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func newMetrics(t *testing.T, c steward.Clock) *metrics.Metrics {
	t.Helper()
	m, err := metrics.New(metrics.Config{Clock: c})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// value returns the value of the series of name with exactly the given
// labels, and whether it exists.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Logf("gather: %v", err) // a failing collector; the others are still there
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !sameLabels(m.GetLabel(), labels) {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue(), true
			case m.Gauge != nil:
				return m.Gauge.GetValue(), true
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount()), true
			}
		}
	}
	return 0, false
}

func sameLabels(got []*dto.LabelPair, want map[string]string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, l := range got {
		if v, ok := want[l.GetName()]; !ok || v != l.GetValue() {
			return false
		}
	}
	return true
}

func want(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, w float64) {
	t.Helper()
	got, ok := value(t, reg, name, labels)
	if !ok {
		t.Errorf("%s%v: no such series", name, labels)
		return
	}
	if got != w {
		t.Errorf("%s%v = %v, want %v", name, labels, got, w)
	}
}

func TestMQTTCounts(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, nil)
	reg := m.Registry()
	b := m.MQTT()

	// Every foreseen label value is there at 0 before anything happens.
	for _, r := range []string{mqtt.RefusedHandshake, mqtt.RefusedCertificate, mqtt.RefusedClientID, mqtt.RefusedWill} {
		want(t, reg, "steward_mqtt_connects_refused_total", map[string]string{"reason": r}, 0)
	}
	for _, r := range []string{mqtt.RefusedACL, mqtt.RefusedQuarantine, mqtt.RefusedTooLarge, mqtt.RefusedInvalid, mqtt.RefusedHandler} {
		want(t, reg, "steward_mqtt_messages_refused_total", map[string]string{"reason": r}, 0)
	}
	for _, ch := range steward.DeviceToServer {
		want(t, reg, "steward_mqtt_messages_received_total", map[string]string{"channel": string(ch)}, 0)
	}

	b.Connected()
	b.Connected()
	b.ConnectRefused(mqtt.RefusedCertificate)
	b.MessageReceived(steward.ChannelTelemetry)
	b.MessageReceived(steward.ChannelTelemetry)
	b.MessageReceived(steward.ChannelAttributes)
	b.MessageReceived("somewhere/else") // not foreseen: counted all the same
	b.MessageRefused(mqtt.RefusedQuarantine)
	b.MessageRefused("new_reason")

	want(t, reg, "steward_mqtt_connects_total", nil, 2)
	want(t, reg, "steward_mqtt_connects_refused_total", map[string]string{"reason": "certificate"}, 1)
	want(t, reg, "steward_mqtt_connects_refused_total", map[string]string{"reason": "handshake"}, 0)
	want(t, reg, "steward_mqtt_messages_received_total", map[string]string{"channel": "telemetry"}, 2)
	want(t, reg, "steward_mqtt_messages_received_total", map[string]string{"channel": "attributes"}, 1)
	want(t, reg, "steward_mqtt_messages_received_total", map[string]string{"channel": "somewhere/else"}, 1)
	want(t, reg, "steward_mqtt_messages_refused_total", map[string]string{"reason": "quarantine"}, 1)
	want(t, reg, "steward_mqtt_messages_refused_total", map[string]string{"reason": "new_reason"}, 1)
	want(t, reg, "steward_mqtt_messages_refused_total", map[string]string{"reason": "acl"}, 0)
}

func TestTelemetryCounts(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, nil)
	reg := m.Registry()
	tm := m.Telemetry()
	tm.BatchWritten(3, 2*time.Millisecond)
	tm.BatchWritten(1500, 40*time.Millisecond)
	tm.BatchFailed(7)

	want(t, reg, "steward_telemetry_samples_written_total", nil, 1503)
	want(t, reg, "steward_telemetry_batch_failures_total", nil, 1)
	want(t, reg, "steward_telemetry_batch_commit_seconds", nil, 2) // observations
	want(t, reg, "steward_telemetry_batch_samples", nil, 2)

	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "steward_telemetry_batch_samples" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleSum() != 1503 {
			t.Errorf("batch size sum %v, want 1503", h.GetSampleSum())
		}
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() == 5 && b.GetCumulativeCount() != 1 || b.GetUpperBound() == 2000 && b.GetCumulativeCount() != 2 {
				t.Errorf("bucket le=%v holds %d", b.GetUpperBound(), b.GetCumulativeCount())
			}
		}
	}
}

func TestWatchedGauges(t *testing.T) {
	t.Parallel()
	m := newMetrics(t, nil)
	var sessions, depth int
	if err := m.WatchSessions(func() int { return sessions }); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchIntakeQueue(func() int { return depth }); err != nil {
		t.Fatal(err)
	}
	sessions, depth = 3, 42
	want(t, m.Registry(), "steward_mqtt_sessions_connected", nil, 3)
	want(t, m.Registry(), "steward_telemetry_queue_depth", nil, 42)
	sessions = 1
	want(t, m.Registry(), "steward_mqtt_sessions_connected", nil, 1)

	// A second registration is an error, not a panic.
	if err := m.WatchSessions(func() int { return 0 }); err == nil {
		t.Error("registered the sessions gauge twice")
	}
}

// TestHotPathsDoNotAllocate checks that counting a message or a batch
// allocates nothing, for every reason and channel the instrumented packages
// use.
func TestHotPathsDoNotAllocate(t *testing.T) {
	m := newMetrics(t, nil)
	b, tm := m.MQTT(), m.Telemetry()
	cases := map[string]func(){
		"connected":     b.Connected,
		"batch written": func() { tm.BatchWritten(100, time.Millisecond) },
		"batch failed":  func() { tm.BatchFailed(100) },
	}
	for _, ch := range steward.DeviceToServer {
		cases["received on "+string(ch)] = func() { b.MessageReceived(ch) }
	}
	for _, r := range []string{mqtt.RefusedHandshake, mqtt.RefusedCertificate, mqtt.RefusedClientID, mqtt.RefusedWill} {
		cases["connect refused: "+r] = func() { b.ConnectRefused(r) }
	}
	for _, r := range []string{mqtt.RefusedACL, mqtt.RefusedQuarantine, mqtt.RefusedTooLarge, mqtt.RefusedInvalid, mqtt.RefusedHandler} {
		cases["message refused: "+r] = func() { b.MessageRefused(r) }
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, f); n != 0 {
				t.Errorf("%v allocations per call", n)
			}
		})
	}
}

// fleetStore opens a real SQLite store with two tenants.
func fleetStore(t *testing.T) steward.Store {
	t.Helper()
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	for _, tn := range []string{"acme", "globex"} {
		if err := s.CreateTenant(ctx, steward.Tenant{ID: tn, Name: tn, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func addDevice(t *testing.T, s steward.Store, tenant, id string, state steward.State, online bool) {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC()
	if err := s.CreateDevice(ctx, steward.Device{ID: id, TenantID: tenant, State: state, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}); err != nil {
		t.Fatal(err)
	}
	if online {
		if err := s.UpdatePresence(ctx, tenant, id, steward.Presence{Online: true, ConnectedSince: now, LastSeen: now, RemoteAddr: "192.0.2.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFleetStatistics(t *testing.T) {
	t.Parallel()
	s := fleetStore(t)
	addDevice(t, s, "acme", "d-a1", steward.StateActive, true)
	addDevice(t, s, "acme", "d-a2", steward.StateActive, false)
	addDevice(t, s, "acme", "d-a3", steward.StateQuarantined, true)
	addDevice(t, s, "globex", "d-g1", steward.StateProvisioned, false)

	c := &clock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
	m := newMetrics(t, c)
	if err := m.WatchFleet(s); err != nil {
		t.Fatal(err)
	}
	reg := m.Registry()
	devices := func(tenant string, st steward.State) map[string]string {
		return map[string]string{"tenant": tenant, "state": string(st)}
	}
	want(t, reg, "steward_devices", devices("acme", steward.StateActive), 2)
	want(t, reg, "steward_devices", devices("acme", steward.StateQuarantined), 1)
	want(t, reg, "steward_devices", devices("acme", steward.StateDecommissioned), 0)
	want(t, reg, "steward_devices", devices("globex", steward.StateProvisioned), 1)
	want(t, reg, "steward_devices", devices("globex", steward.StateActive), 0)
	want(t, reg, "steward_devices_online", map[string]string{"tenant": "acme"}, 2)
	want(t, reg, "steward_devices_online", map[string]string{"tenant": "globex"}, 0)

	// Within the cache's lifetime the store is not asked again.
	addDevice(t, s, "globex", "d-g2", steward.StateActive, true)
	c.Add(metrics.DefaultFleetTTL - time.Second)
	want(t, reg, "steward_devices", devices("globex", steward.StateActive), 0)
	want(t, reg, "steward_devices_online", map[string]string{"tenant": "globex"}, 0)

	c.Add(time.Second)
	want(t, reg, "steward_devices", devices("globex", steward.StateActive), 1)
	want(t, reg, "steward_devices_online", map[string]string{"tenant": "globex"}, 1)

	// A store that fails: the last counts are served.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	c.Add(time.Hour)
	want(t, reg, "steward_devices", devices("globex", steward.StateActive), 1)
}

// TestFleetStoreDown checks that a failing store with nothing cached
// leaves the fleet statistics out of the scrape, counts the failure, and
// still serves every other metric.
func TestFleetStoreDown(t *testing.T) {
	t.Parallel()
	s := fleetStore(t)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	m := newMetrics(t, nil)
	if err := m.WatchFleet(s); err != nil {
		t.Fatal(err)
	}
	m.MQTT().Connected()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	text := scrape(t, srv.URL)
	if strings.Contains(text, "steward_devices{") {
		t.Errorf("fleet statistics served from a closed store:\n%s", text)
	}
	if !strings.Contains(text, "steward_mqtt_connects_total 1\n") {
		t.Errorf("other metrics missing:\n%s", text)
	}
	text = scrape(t, srv.URL)
	if !strings.Contains(text, `promhttp_metric_handler_errors_total{cause="gathering"} 1`) {
		t.Errorf("the failure was not counted:\n%s", text)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return string(b)
}

// TestExpositionFormat serves every metric over HTTP and has promtool
// check the text.
func TestExpositionFormat(t *testing.T) {
	t.Parallel()
	s := fleetStore(t)
	addDevice(t, s, "acme", "d-a1", steward.StateActive, true)
	m := newMetrics(t, nil)
	for _, err := range []error{m.WatchFleet(s), m.WatchSessions(func() int { return 1 }), m.WatchIntakeQueue(func() int { return 0 })} {
		if err != nil {
			t.Fatal(err)
		}
	}
	m.Telemetry().BatchWritten(10, time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	text := scrape(t, srv.URL)
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "steward_devices", "steward_telemetry_batch_commit_seconds_bucket", "steward_est_enrollments_total"} {
		if !strings.Contains(text, "\n"+name) {
			t.Errorf("%s missing", name)
		}
	}
	promtoolCheck(t, text)
}

// promtoolCheck runs `promtool check metrics` on an exposition.
func promtoolCheck(t *testing.T, text string) {
	t.Helper()
	if _, err := exec.LookPath("promtool"); err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus); .ci/run installs it")
	}
	cmd := exec.Command("promtool", "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

func BenchmarkMessageReceived(b *testing.B) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		b.Fatal(err)
	}
	mq := m.MQTT()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mq.MessageReceived(steward.ChannelTelemetry)
		}
	})
}

func BenchmarkBatchWritten(b *testing.B) {
	m, err := metrics.New(metrics.Config{})
	if err != nil {
		b.Fatal(err)
	}
	tm := m.Telemetry()
	b.ReportAllocs()
	for b.Loop() {
		tm.BatchWritten(200, 3*time.Millisecond)
	}
}
