package events

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

// env is a handler on the bus, over a real SQLite store with tenant t1 and
// its device d-1.
type env struct {
	store steward.Store
	bus   *inproc.Bus
}

func newEnv(t testing.TB) env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Now().UTC()
	if err := st.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "T1", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateDevice(ctx, steward.Device{ID: "d-1", TenantID: "t1", State: steward.StateActive, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}); err != nil {
		t.Fatal(err)
	}
	bus := inproc.New(slog.New(slog.DiscardHandler))
	New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
	return env{store: st, bus: bus}
}

// publish sends a message of d-1 and returns its acknowledgement.
func (e env) publish(t testing.TB, tenant, device, payload string) error {
	t.Helper()
	acked := make(chan error, 1)
	e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: tenant, DeviceID: device, Channel: steward.ChannelEvents,
		Payload: []byte(payload), Received: time.Now().UTC()}, func(err error) { acked <- err })
	select {
	case err := <-acked:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("never acknowledged")
		return nil
	}
}

func (e env) list(t testing.TB, tenant, device string) []steward.DeviceEvent {
	t.Helper()
	evs, err := e.store.ListDeviceEvents(context.Background(), tenant, device, steward.DeviceEventFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestHandleAcksOnlyDurable checks, inside each acknowledgement, that the
// message's events are already readable: nothing is acknowledged before
// it is committed, and acknowledgements come in order.
func TestHandleAcksOnlyDurable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const n = 50
	var (
		mu    sync.Mutex
		order []int
		errs  []error
		wg    sync.WaitGroup
	)
	wg.Add(n)
	for i := range n {
		payload := fmt.Sprintf(`[{"ts":%d,"type":"seq","message":"m%d"},{"ts":%d,"type":"seq2"}]`, 1795773600000+i, i, 1795773600000+i)
		e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelEvents, Payload: []byte(payload)}, func(err error) {
			defer wg.Done()
			evs, lerr := e.store.ListDeviceEvents(context.Background(), "t1", "d-1", steward.DeviceEventFilter{Type: "seq", Limit: 1})
			mu.Lock()
			defer mu.Unlock()
			order = append(order, i)
			if err != nil || lerr != nil || len(evs) != 1 || evs[0].Message != fmt.Sprintf("m%d", i) {
				errs = append(errs, fmt.Errorf("ack %d: %v / %v / %+v", i, err, lerr, evs))
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	for i := range n {
		if order[i] != i {
			t.Fatalf("acks out of order at %d: %v", i, order[:i+1])
		}
	}
	if got := len(e.list(t, "t1", "d-1")); got != 2*n {
		t.Fatalf("stored %d events, want %d", got, 2*n)
	}
}

// TestHandleRefuses checks that what must be refused is refused with its
// code and writes nothing.
func TestHandleRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, tenant, device, payload string
		code                          steward.Code
	}{
		{"malformed", "t1", "d-1", `{"type":`, steward.CodeInvalid},
		{"no type", "t1", "d-1", `{"severity":"error","message":"x"}`, steward.CodeInvalid},
		{"one bad event in a batch", "t1", "d-1", `[{"type":"ok"},{"type":"bad type"}]`, steward.CodeInvalid},
		{"unknown device", "t1", "d-gone", `{"type":"boot"}`, steward.CodeNotFound},
		{"device of another tenant", "t2", "d-1", `{"type":"boot"}`, steward.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if err := e.publish(t, tt.tenant, tt.device, tt.payload); steward.ErrorCode(err) != tt.code {
				t.Fatalf("ack = %v, want %s", err, tt.code)
			}
			if evs := e.list(t, "t1", "d-1"); len(evs) != 0 {
				t.Fatalf("something was written: %+v", evs)
			}
		})
	}
}

// TestHandleStoreDown checks that a failed write is not acknowledged as
// taken, so that the device sends the message again.
func TestHandleStoreDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.store.Close()
	if err := e.publish(t, "t1", "d-1", `{"type":"boot"}`); steward.ErrorCode(err) != steward.CodeUnavailable {
		t.Fatalf("ack = %v, want unavailable", err)
	}
}

// TestHandleStores checks what a good message leaves in the store.
func TestHandleStores(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	before := time.Now().UTC()
	if err := e.publish(t, "t1", "d-1", `{"ts":"2026-11-27T10:00:00Z","type":"reboot","severity":"warning","message":"watchdog","uptime":86400}`); err != nil {
		t.Fatal(err)
	}
	evs := e.list(t, "t1", "d-1")
	if len(evs) != 1 {
		t.Fatalf("stored %d events", len(evs))
	}
	ev := evs[0]
	if ev.Type != "reboot" || ev.Severity != steward.SeverityWarning || ev.Message != "watchdog" ||
		!ev.At.Equal(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)) || ev.Received.Before(before.Truncate(time.Microsecond)) ||
		fmt.Sprint(ev.Fields["uptime"]) != "86400" {
		t.Fatalf("stored %+v", ev)
	}
}

// BenchmarkHandle measures the write-then-acknowledge path on SQLite: one
// transaction per message, as the broker hands them over one at a time.
func BenchmarkHandle(b *testing.B) {
	e := newEnv(b)
	payload := []byte(`{"type":"reboot","severity":"warning","message":"watchdog","uptime":86400}`)
	done := make(chan error, 1)
	for b.Loop() {
		e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelEvents, Payload: payload},
			func(err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
