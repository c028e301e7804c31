package telemetry

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
)

// countingStore is the real store, counting the reads the schema cache
// makes, to show that the intake does not read the store per message.
type countingStore struct {
	steward.Store
	lists, gets atomic.Int64
}

func (s *countingStore) ListTelemetrySchemas(ctx context.Context, tenantID string) ([]steward.TelemetrySchema, error) {
	s.lists.Add(1)
	return s.Store.ListTelemetrySchemas(ctx, tenantID)
}

func (s *countingStore) GetDevice(ctx context.Context, tenantID, id string) (steward.Device, error) {
	s.gets.Add(1)
	return s.Store.GetDevice(ctx, tenantID, id)
}

// dropCounts records SamplesDropped by reason.
type dropCounts struct {
	noMetrics
	mu sync.Mutex
	n  map[string]int
}

func (d *dropCounts) SamplesDropped(reason string, n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.n[reason] += n
}

func (d *dropCounts) get(reason string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[reason]
}

// schemaEnv is an intake over a real SQLite store with one tenant and a
// device per model.
type schemaEnv struct {
	store *countingStore
	clock *testClock
	drops *dropCounts
	in    *Intake
	bus   *inproc.Bus
}

var schemaT0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

func newSchemaEnv(t *testing.T) *schemaEnv {
	t.Helper()
	e := &schemaEnv{store: &countingStore{Store: openStore(t)}, clock: newClock(schemaT0), drops: &dropCounts{n: map[string]int{}}}
	ctx := t.Context()
	for _, tenant := range []string{"t1", "t2"} {
		must(t, e.store.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: tenant, CreatedAt: schemaT0}))
	}
	for _, d := range []struct{ tenant, id, model string }{
		{"t1", "d-gw", "gw-100"}, {"t1", "d-sensor", "sensor"}, {"t1", "d-free", "other"}, {"t1", "d-nomodel", ""},
		{"t2", "d-gw2", "gw-100"},
	} {
		must(t, e.store.CreateDevice(ctx, steward.Device{ID: d.id, TenantID: d.tenant, Model: d.model, State: steward.StateActive,
			StateChangedAt: schemaT0, CreatedAt: schemaT0, UpdatedAt: schemaT0}))
	}
	must(t, e.store.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: "t1", Model: "gw-100", Allow: []string{"cpu", "memory", "biz.*"}, UpdatedAt: schemaT0}))
	must(t, e.store.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: "t1", Model: "sensor", Allow: []string{}, UpdatedAt: schemaT0}))
	e.bus = inproc.New(slog.New(slog.DiscardHandler))
	e.in = New(Config{Store: e.store, Clock: e.clock, Metrics: e.drops}, e.bus)
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.in.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// send publishes a payload of a device and waits for its acknowledgement.
func (e *schemaEnv) send(t *testing.T, tenant, device, payload string) error {
	t.Helper()
	ch := make(chan error, 1)
	e.bus.PublishInbound(t.Context(), steward.DeviceMessage{TenantID: tenant, DeviceID: device, Channel: steward.ChannelTelemetry, Payload: []byte(payload)},
		func(err error) { ch <- err })
	select {
	case err := <-ch:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no acknowledgement")
		return nil
	}
}

// stored lists the metrics stored for a device.
func (e *schemaEnv) stored(t *testing.T, tenant, device string) []string {
	t.Helper()
	latest, err := e.store.LatestSamples(t.Context(), tenant, device)
	must(t, err)
	var out []string
	for _, s := range latest {
		out = append(out, s.Metric)
	}
	slices.Sort(out)
	return out
}

const schemaPayload = `{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.5,"memory":0.25,"temperature":40,"biz.orders":3,"biz.":1,"bizarre":2,"net.rssi":-60}}`

func TestIntakeSchemaEnforcement(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, tenant, device string
		want                 []string
		dropped              int
	}{
		// Exact names and the biz.* prefix; "biz." itself and "bizarre"
		// do not match the prefix.
		{"schema with prefix", "t1", "d-gw", []string{"biz.orders", "cpu", "memory"}, 4},
		{"empty schema allows nothing", "t1", "d-sensor", nil, 7},
		{"model without schema", "t1", "d-free", []string{"biz.", "biz.orders", "bizarre", "cpu", "memory", "net.rssi", "temperature"}, 0},
		{"device without model", "t1", "d-nomodel", []string{"biz.", "biz.orders", "bizarre", "cpu", "memory", "net.rssi", "temperature"}, 0},
		{"other tenant, same model", "t2", "d-gw2", []string{"biz.", "biz.orders", "bizarre", "cpu", "memory", "net.rssi", "temperature"}, 0},
		{"unknown device", "t1", "d-unknown", []string{"biz.", "biz.orders", "bizarre", "cpu", "memory", "net.rssi", "temperature"}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSchemaEnv(t)
			if err := e.send(t, tc.tenant, tc.device, schemaPayload); err != nil {
				t.Fatalf("ack: %v", err)
			}
			if got := e.stored(t, tc.tenant, tc.device); !slices.Equal(got, tc.want) {
				t.Fatalf("stored %v, want %v", got, tc.want)
			}
			if got := e.in.SchemaDropped(); got != int64(tc.dropped) {
				t.Errorf("SchemaDropped = %d, want %d", got, tc.dropped)
			}
			if got := e.drops.get(DropSchema); got != tc.dropped {
				t.Errorf("metrics counted %d schema drops, want %d", got, tc.dropped)
			}
			if got := e.drops.get(DropWindow); got != 0 || e.in.Dropped() != 0 {
				t.Errorf("window drops %d / %d, want none", got, e.in.Dropped())
			}
		})
	}
}

// TestIntakeSchemaAndWindow checks that both reasons are counted apart in
// one message.
func TestIntakeSchemaAndWindow(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	payload := `[{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.5,"temperature":40}},{"ts":"2026-01-01T00:00:00Z","metrics":{"cpu":0.1,"memory":0.2}}]`
	if err := e.send(t, "t1", "d-gw", payload); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(t, "t1", "d-gw"); !slices.Equal(got, []string{"cpu"}) {
		t.Fatalf("stored %v, want [cpu]", got)
	}
	if w, s := e.drops.get(DropWindow), e.drops.get(DropSchema); w != 2 || s != 1 {
		t.Fatalf("dropped window %d schema %d, want 2 and 1", w, s)
	}
}

// TestIntakeSchemaCache checks that the store is read once per tenant and
// device per TTL, not per message; that a change made through this node
// applies at once (SchemasChanged) and one made elsewhere within the TTL;
// and that a device's new model applies within the model TTL.
func TestIntakeSchemaCache(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	ctx := t.Context()
	for i := range 20 {
		if err := e.send(t, "t1", "d-gw", `{"metrics":{"cpu":1,"temperature":2}}`); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		e.clock.Set(schemaT0.Add(time.Duration(i) * time.Second))
	}
	if l, g := e.store.lists.Load(), e.store.gets.Load(); l != 1 || g != 1 {
		t.Fatalf("20 messages read the schemas %d and the device %d times, want once each", l, g)
	}
	if got := e.in.SchemaDropped(); got != 20 {
		t.Fatalf("SchemaDropped = %d, want 20", got)
	}

	// Changed elsewhere: the cached schema applies until the TTL is over.
	must(t, e.store.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: "t1", Model: "gw-100", Allow: []string{"temperature"}, UpdatedAt: schemaT0}))
	e.clock.Set(schemaT0.Add(25 * time.Second))
	must(t, e.send(t, "t1", "d-gw", `{"ts":"2026-11-27T10:00:25Z","metrics":{"temperature":25}}`))
	if got := e.stored(t, "t1", "d-gw"); slices.Contains(got, "temperature") {
		t.Fatalf("stored %v before the schema TTL was over", got)
	}
	e.clock.Set(schemaT0.Add(DefaultSchemaTTL + time.Second))
	must(t, e.send(t, "t1", "d-gw", `{"ts":"2026-11-27T10:00:31Z","metrics":{"temperature":31,"cpu":1}}`))
	if got := e.stored(t, "t1", "d-gw"); !slices.Equal(got, []string{"cpu", "temperature"}) {
		t.Fatalf("after the TTL stored %v, want the old cpu and the new temperature", got)
	}

	// Changed through this node: applies at once.
	must(t, e.store.DeleteTelemetrySchema(ctx, "t1", "gw-100"))
	e.in.SchemasChanged("t1")
	must(t, e.send(t, "t1", "d-gw", `{"ts":"2026-11-27T10:00:32Z","metrics":{"net.rssi":-70}}`))
	if got := e.stored(t, "t1", "d-gw"); !slices.Contains(got, "net.rssi") {
		t.Fatalf("after SchemasChanged stored %v, want net.rssi (no schema any more)", got)
	}

	// A new model applies within the model TTL.
	must(t, e.store.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: "t1", Model: "gw-200", Allow: []string{"cpu"}, UpdatedAt: schemaT0}))
	e.in.SchemasChanged("t1")
	d, err := e.store.GetDevice(ctx, "t1", "d-free")
	must(t, err)
	must(t, e.send(t, "t1", "d-free", `{"ts":"2026-11-27T10:00:32Z","metrics":{"load1":1}}`)) // caches model "other"
	d.Model = "gw-200"
	_, err = e.store.UpdateDevice(ctx, d)
	must(t, err)
	e.clock.Set(schemaT0.Add(DefaultSchemaTTL + 2*time.Second + DefaultModelTTL))
	must(t, e.send(t, "t1", "d-free", `{"ts":"2026-11-27T10:01:03Z","metrics":{"cpu":1,"uptime":5}}`))
	if got := e.stored(t, "t1", "d-free"); !slices.Equal(got, []string{"cpu", "load1"}) {
		t.Fatalf("after the model TTL stored %v, want load1 (before) and cpu (gw-200 allows it), not uptime", got)
	}
}

// TestIntakeSchemaStoreDown checks that a message whose schema cannot be
// read is refused as unavailable (so the device sends it again), not
// acknowledged as stored.
func TestIntakeSchemaStoreDown(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	must(t, e.store.Close())
	err := e.send(t, "t1", "d-gw", `{"metrics":{"cpu":1}}`)
	if err == nil {
		t.Fatal("message acknowledged although its schema could not be read")
	}
	if code := steward.ErrorCode(err); code != steward.CodeUnavailable {
		t.Fatalf("ack = %v (%s), want %s", err, code, steward.CodeUnavailable)
	}
}

func BenchmarkIntakeSchemaCheck(b *testing.B) {
	st := openStore(b)
	ctx := context.Background()
	must(b, st.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "t1", CreatedAt: schemaT0}))
	must(b, st.CreateDevice(ctx, steward.Device{ID: "d-gw", TenantID: "t1", Model: "gw-100", State: steward.StateActive, StateChangedAt: schemaT0, CreatedAt: schemaT0, UpdatedAt: schemaT0}))
	must(b, st.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: "t1", Model: "gw-100", Allow: []string{"cpu", "memory", "biz.*"}, UpdatedAt: schemaT0}))
	s := newSchemas(st, steward.SystemClock{}, time.Hour, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		allow, ok, err := s.allowList(ctx, "t1", "d-gw")
		if err != nil || !ok || !steward.MetricAllowed(allow, "biz.orders") {
			b.Fatal(allow, ok, err)
		}
	}
}

// TestIntakeSchemaFirstModel checks that a device heard from before its
// first attributes report (no model yet) gets its model's schema within
// noModelTTL, not a whole ModelTTL later.
func TestIntakeSchemaFirstModel(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	ctx := t.Context()
	must(t, e.send(t, "t1", "d-nomodel", `{"metrics":{"temperature":1}}`)) // unrestricted: no model
	d, err := e.store.GetDevice(ctx, "t1", "d-nomodel")
	must(t, err)
	d.Model = "gw-100"
	_, err = e.store.UpdateDevice(ctx, d)
	must(t, err)
	e.clock.Set(schemaT0.Add(noModelTTL))
	must(t, e.send(t, "t1", "d-nomodel", `{"ts":"2026-11-27T10:00:05Z","metrics":{"uptime":5,"cpu":1}}`))
	if got := e.stored(t, "t1", "d-nomodel"); !slices.Equal(got, []string{"cpu", "temperature"}) {
		t.Fatalf("stored %v, want temperature (before the model) and cpu (gw-100 allows it), not uptime", got)
	}
}

// TestStandardMetricsDecode checks that every name of the standard
// vocabulary is a metric name the intake takes.
func TestStandardMetricsDecode(t *testing.T) {
	t.Parallel()
	metrics := map[string]float64{}
	for _, m := range steward.StandardMetrics() {
		metrics[m.Name] = 1
	}
	metrics["biz.orders"] = 1
	payload, err := json.Marshal(map[string]any{"metrics": metrics})
	must(t, err)
	samples, err := Decode(payload, "t1", "d-1", schemaT0)
	must(t, err)
	if len(samples) != len(metrics) {
		t.Fatalf("decoded %d samples of %d metrics", len(samples), len(metrics))
	}
}
