package health_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/health"
	"github.com/steward-iot/steward/sqlite"
)

// fixedClock is a clock stopped at one time.
type fixedClock time.Time

func (c fixedClock) Now() time.Time { return time.Time(c) }

// seed stores a device of the default tenant, online.
func seed(t testing.TB, store steward.Store, id string) {
	t.Helper()
	ctx := context.Background()
	created := now.Add(-72 * time.Hour)
	if err := store.CreateDevice(ctx, steward.Device{ID: id, TenantID: steward.DefaultTenant, Model: "gw-100",
		Labels: map[string]string{}, Attributes: map[string]any{}, State: steward.StateActive, StateChangedAt: created,
		StateActor: "system", CreatedAt: created, UpdatedAt: created, Version: 1}); err != nil {
		t.Fatalf("create device: %v", err)
	}
	if err := store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: true,
		ConnectedSince: now.Add(-time.Hour), LastSeen: now.Add(-time.Minute)}); err != nil {
		t.Fatalf("update presence: %v", err)
	}
}

// connects records a connect of a device at each time, in one transaction.
func connects(t *testing.T, store steward.Store, id string, at ...time.Time) {
	t.Helper()
	err := store.InTx(context.Background(), func(tx steward.Store) error {
		for _, a := range at {
			if err := tx.AddPresenceEvent(context.Background(), steward.PresenceEvent{TenantID: steward.DefaultTenant,
				DeviceID: id, Online: true, At: a, RemoteAddr: "192.0.2.1:4000"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("add presence events: %v", err)
	}
}

// every returns n times, step apart, the last one at last.
func every(n int, step time.Duration, last time.Time) []time.Time {
	out := make([]time.Time, n)
	for i := range out {
		out[i] = last.Add(-time.Duration(n-1-i) * step)
	}
	return out
}

func TestServiceDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for _, tn := range []string{steward.DefaultTenant, "other"} {
		if err := store.CreateTenant(ctx, steward.Tenant{ID: tn, Name: tn, CreatedAt: now.Add(-100 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	svc := health.New(store, fixedClock(now), health.DefaultRules())

	// sick: hot now (it was cool three hours ago), disk filling up, a
	// crash half an hour ago (and one too old to count), three errors,
	// and 144 reconnects in the last day after a first connect long ago:
	// 6 an hour.
	sick := "d-sick0000000000000000"
	seed(t, store, sick)
	sample := func(metric string, v float64, ago time.Duration) steward.Sample {
		return steward.Sample{TenantID: steward.DefaultTenant, DeviceID: sick, Metric: metric, Value: v, At: now.Add(-ago)}
	}
	if err := store.WriteSamples(ctx, []steward.Sample{sample("temperature", 50, 3*time.Hour), sample("temperature", 88, 2*time.Minute),
		sample("disk", 0.9, 2*time.Minute)}); err != nil {
		t.Fatal(err)
	}
	ev := func(sev steward.Severity, ago time.Duration) steward.DeviceEvent {
		return steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: sick, Type: "crash", Severity: sev,
			Message: "segfault", At: now.Add(-ago), Received: now.Add(-ago)}
	}
	if err := store.AddDeviceEvents(ctx, []steward.DeviceEvent{ev(steward.SeverityCritical, 30*time.Minute), ev(steward.SeverityCritical, 2*time.Hour),
		ev(steward.SeverityError, time.Minute), ev(steward.SeverityError, 10*time.Minute), ev(steward.SeverityError, 50*time.Minute),
		ev(steward.SeverityWarning, time.Minute)}); err != nil {
		t.Fatal(err)
	}
	connects(t, store, sick, now.Add(-30*time.Hour))
	connects(t, store, sick, every(144, 10*time.Minute, now.Add(-time.Minute))...)

	// fine: 144 connects in the last day too, but the first is its very
	// first connection, so 143 reconnects: under 6 an hour.
	fine := "d-fine0000000000000000"
	seed(t, store, fine)
	if err := store.WriteSamples(ctx, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: fine, Metric: "cpu", Value: 0.1, At: now.Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	connects(t, store, fine, every(144, 10*time.Minute, now.Add(-time.Minute))...)

	tests := []struct {
		id   string
		want string
	}{
		{sick, "critical: temperature_high/critical critical_events/critical reconnects/degraded disk_full/degraded error_events/degraded"},
		{fine, "ok: "},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			t.Parallel()
			h, err := svc.Device(ctx, steward.DefaultTenant, tt.id)
			if err != nil {
				t.Fatal(err)
			}
			if g := got(h); g != tt.want {
				t.Fatalf("got %q, want %q\nreasons: %+v", g, tt.want, h.Reasons)
			}
			if h.DeviceID != tt.id || !h.EvaluatedAt.Equal(now) {
				t.Fatalf("summary %+v", h)
			}
		})
	}

	t.Run("not found", func(t *testing.T) {
		t.Parallel()
		for _, c := range []struct{ tenant, id string }{
			{"other", sick}, // another tenant's device
			{steward.DefaultTenant, "d-none0000000000000000"}, // no such device
			{steward.DefaultTenant, "../" + sick},             // not a device ID at all
		} {
			if _, err := svc.Device(ctx, c.tenant, c.id); !steward.IsNotFound(err) {
				t.Errorf("Device(%q, %q) = %v, want not found", c.tenant, c.id, err)
			}
		}
	})
}

func BenchmarkServiceDevice(b *testing.B) {
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(b.TempDir(), "steward.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	if err := store.CreateTenant(ctx, steward.Tenant{ID: steward.DefaultTenant, Name: "d", CreatedAt: now}); err != nil {
		b.Fatal(err)
	}
	id := "d-bench000000000000000"
	seed(b, store, id)
	svc := health.New(store, fixedClock(now), health.DefaultRules())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svc.Device(ctx, steward.DefaultTenant, id); err != nil {
			b.Fatal(err)
		}
	}
}
