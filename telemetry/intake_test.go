package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/sqlite"
)

func openStore(t testing.TB) steward.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "s.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// TestIntakeAcksOnlyDurable checks, inside each acknowledgement, that the
// message's sample is already readable from the store: nothing is
// acknowledged before it is committed.
func TestIntakeAcksOnlyDurable(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler), BatchSize: 50}, bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()

	const n = 300
	var (
		mu     sync.Mutex
		order  []int
		errs   []error
		wg     sync.WaitGroup
		lastOK = map[int]bool{}
	)
	wg.Add(n)
	for i := range n {
		payload := fmt.Sprintf(`{"ts":%d,"metrics":{"seq":%d}}`, 1795773600000+i, i)
		bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: []byte(payload)}, func(err error) {
			defer wg.Done()
			latest, lerr := st.LatestSamples(context.Background(), "t1", "d-1")
			mu.Lock()
			defer mu.Unlock()
			order = append(order, i)
			if err != nil || lerr != nil {
				errs = append(errs, fmt.Errorf("ack %d: %v / %v", i, err, lerr))
				return
			}
			// The latest seq stored is at least this message's.
			lastOK[i] = len(latest) == 1 && latest[0].Value >= float64(i)
		})
	}
	wg.Wait()
	cancel()
	<-done
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for i := range n {
		if order[i] != i {
			t.Fatalf("acks out of order at %d: %v", i, order[:i+1])
		}
		if !lastOK[i] {
			t.Fatalf("message %d acknowledged before its sample was stored", i)
		}
	}
	got, err := st.ListSamples(context.Background(), "t1", "d-1", "seq", time.UnixMilli(0), time.Now().Add(time.Hour), 1000)
	if err != nil || len(got) != n {
		t.Fatalf("stored %d samples (err %v), want %d", len(got), err, n)
	}
}

// TestIntakeRefusesBadPayload checks that a malformed message is refused at
// once and writes nothing.
func TestIntakeRefusesBadPayload(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go in.Run(ctx)
	got := make(chan error, 1)
	bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: []byte(`{"metrics":{"cpu":"hot"}}`)}, func(err error) { got <- err })
	if err := <-got; steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("ack = %v, want invalid", err)
	}
	latest, err := st.LatestSamples(ctx, "t1", "d-1")
	if err != nil || len(latest) != 0 {
		t.Fatalf("something was written: %v %v", latest, err)
	}
}

// TestIntakeDrainsOnShutdown checks that messages taken before shutdown are
// written and acknowledged, not dropped.
func TestIntakeDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	ctx, cancel := context.WithCancel(context.Background())
	acks := make(chan error, 10)
	for i := range 10 {
		bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry,
			Payload: fmt.Appendf(nil, `{"metrics":{"m%d":1}}`, i)}, func(err error) { acks <- err })
	}
	cancel() // before Run even starts: everything queued must still land
	in.Run(ctx)
	for range 10 {
		if err := <-acks; err != nil {
			t.Fatal(err)
		}
	}
	latest, err := st.LatestSamples(context.Background(), "t1", "d-1")
	if err != nil || len(latest) != 10 {
		t.Fatalf("latest = %d samples, %v; want 10", len(latest), err)
	}
}

func BenchmarkIntake(b *testing.B) {
	st := openStore(b)
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { in.Run(ctx); close(done) }()
	payload := []byte(`{"metrics":{"cpu":0.31,"temperature":48.5}}`)
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		wg.Add(1)
		bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t1", DeviceID: fmt.Sprintf("d-%d", i%100), Channel: steward.ChannelTelemetry, Payload: payload}, func(error) { wg.Done() })
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	cancel()
	<-done
}

// TestIntakeTouchesLastSeen checks that a device's last-seen time follows
// its telemetry.
func TestIntakeTouchesLastSeen(t *testing.T) {
	t.Parallel()
	st := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	if err := st.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "T1", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(ctx, steward.Device{ID: "d-1", TenantID: "t1", State: steward.StateActive, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}); err != nil {
		t.Fatal(err)
	}
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { in.Run(rctx); close(done) }()
	acked := make(chan error, 1)
	bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: []byte(`{"metrics":{"cpu":1}}`)}, func(err error) { acked <- err })
	if err := <-acked; err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done // Run returns once the last-seen times handed over are written
	d, err := st.GetDevice(ctx, "t1", "d-1")
	if err != nil || d.Presence.LastSeen.Before(now) {
		t.Fatalf("last seen %v (err %v), want at or after %v", d.Presence.LastSeen, err, now)
	}
}

// slowTouch is a store whose TouchDevices waits until release is closed:
// the devices table's writer busy for a long while, as the rollup job can
// keep it on SQLite.
type slowTouch struct {
	steward.Store
	entered chan struct{} // closed by the first call
	release chan struct{}
	once    sync.Once
}

func (s *slowTouch) TouchDevices(ctx context.Context, seen []steward.DeviceSeen) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return s.Store.TouchDevices(ctx, seen)
}

// TestIntakeDoesNotWaitForLastSeen holds the write of last-seen times and
// checks that the next batch is written and acknowledged meanwhile, and
// that every device's last-seen time is written once the store is free.
func TestIntakeDoesNotWaitForLastSeen(t *testing.T) {
	t.Parallel()
	base := openStore(t)
	ctx := context.Background()
	now := time.Now().UTC()
	must(t, base.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "T1", CreatedAt: now}))
	for _, id := range []string{"d-1", "d-2"} {
		must(t, base.CreateDevice(ctx, steward.Device{ID: id, TenantID: "t1", State: steward.StateActive, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}))
	}
	st := &slowTouch{Store: base, entered: make(chan struct{}), release: make(chan struct{})}
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { in.Run(rctx); close(done) }()
	publish := func(device string) {
		t.Helper()
		acked := make(chan error, 1)
		bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: "t1", DeviceID: device, Channel: steward.ChannelTelemetry, Payload: []byte(`{"metrics":{"cpu":1}}`)}, func(err error) { acked <- err })
		select {
		case err := <-acked:
			must(t, err)
		case <-time.After(time.Minute): // a deadlock detector, not a timing
			t.Fatalf("the message of %s was not acknowledged while last-seen was being written", device)
		}
	}
	publish("d-1")
	<-st.entered // the last-seen write of d-1 is held
	publish("d-2")
	close(st.release)
	cancel()
	<-done
	for _, id := range []string{"d-1", "d-2"} {
		d, err := base.GetDevice(ctx, "t1", id)
		if err != nil || d.Presence.LastSeen.Before(now) {
			t.Fatalf("%s: last seen %v (err %v), want at or after %v", id, d.Presence.LastSeen, err, now)
		}
	}
}
