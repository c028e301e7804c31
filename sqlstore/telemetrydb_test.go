package sqlstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/teststores"
	"github.com/steward-iot/steward/sqlstore"
)

// at is the time the tests' samples start from.
var at = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

// sample is a sample of device d-1 of tenant acme.
func sample(metric string, v float64, when time.Time) steward.Sample {
	return steward.Sample{TenantID: "acme", DeviceID: "d-1", Metric: metric, Value: v, At: when}
}

// TestMoveLeavesWritesMadeDuringIt runs the rollup's move on SQLite, whose
// telemetry tables have a writer of their own, and has the intake write
// while the move's transaction holds the main writer: a late reading, and
// a metric merged into the very reading being moved. The writes must not
// wait for the move, and the move must delete from samples_recent only
// what its snapshot held, so that nothing written meanwhile is lost.
func TestMoveLeavesWritesMadeDuringIt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := teststores.SQLite(t)
	if err := s.WriteSamples(ctx, []steward.Sample{sample("cpu", 1, at)}); err != nil {
		t.Fatal(err)
	}
	var moves int
	var during error
	sqlstore.SetMoveHook(s, func(ctx context.Context) {
		if moves++; moves > 1 {
			return
		}
		// A write that waited for the main writer would wait for this
		// very transaction: the timeout turns that into a failure.
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		during = s.WriteSamples(wctx, []steward.Sample{sample("cpu", 2, at.Add(time.Second)), sample("mem", 3, at)})
	})
	if err := s.RollupSamples(ctx, at, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		t.Fatalf("the intake's write during the move: %v", during)
	}
	check := func(when string, wantRecent int) {
		t.Helper()
		for metric, want := range map[string][]float64{"cpu": {1, 2}, "mem": {3}} {
			got, err := s.ListSamples(ctx, "acme", "d-1", metric, at, time.Time{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			var values []float64
			for _, sm := range got {
				values = append(values, sm.Value)
			}
			if len(values) != len(want) || (len(want) > 1 && values[1] != want[1]) || values[0] != want[0] {
				t.Errorf("%s: %s samples %v, want %v", when, metric, values, want)
			}
		}
		var recent int
		if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM samples_recent`).Scan(&recent); err != nil {
			t.Fatal(err)
		}
		if recent != wantRecent {
			t.Errorf("%s: %d readings left in samples_recent, want %d", when, recent, wantRecent)
		}
	}
	// Both readings the intake wrote during the move stay for the next.
	check("after the move", 2)
	if err := s.RollupSamples(ctx, at, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	check("after the next move", 0)
	rollups, err := s.ListRollups(ctx, "acme", "d-1", "cpu", steward.RollupMinute, at, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(rollups) != 1 || rollups[0].Count != 2 || rollups[0].Sum != 3 {
		t.Errorf("cpu's minute after the late reading: %+v, want one bucket of 2 samples summing to 3", rollups)
	}
}

// TestErasureTakesWritesMadeDuringIt has the intake write a device's
// reading while its data is being erased (after the first pass over the
// telemetry database, before the erasure's transaction): the second pass
// deletes it, and no move afterwards brings it back into samples.
func TestErasureTakesWritesMadeDuringIt(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := teststores.SQLite(t)
	if err := s.CreateTenant(ctx, steward.Tenant{ID: "acme", Name: "Acme", CreatedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDevice(ctx, steward.Device{ID: "d-1", TenantID: "acme", State: steward.StateActive, CreatedAt: at, UpdatedAt: at, StateChangedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteSamples(ctx, []steward.Sample{sample("cpu", 1, at)}); err != nil {
		t.Fatal(err)
	}
	var during error
	sqlstore.SetDeleteHook(s, func(ctx context.Context) {
		during = s.WriteSamples(ctx, []steward.Sample{sample("cpu", 2, at.Add(time.Second))})
	})
	if _, err := s.EraseDeviceData(ctx, "acme", "d-1"); err != nil {
		t.Fatal(err)
	}
	if during != nil {
		t.Fatal(during)
	}
	if err := s.RollupSamples(ctx, at, at.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	got, err := s.ListSamples(ctx, "acme", "d-1", "cpu", at, time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	latest, err := s.LatestSamples(ctx, "acme", "d-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 || len(latest) != 0 {
		t.Fatalf("after the erasure: samples %+v, latest %+v; want none", got, latest)
	}
}
