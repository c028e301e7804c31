package storetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// Samples are written to one table (time first, so that the writer
// appends) and moved by RollupSamples into another (keyed by device); the
// tests below hold rows on both sides of a move and check that every
// reader sees each sample once, that erasure and retention reach both, and
// that a day's rollup is recomputed once the day is closed. TenantRows
// shows where the rows are, so that the tests know both sides are used.

// sampleTables counts a tenant's rows in the moved and the recent table.
func sampleTables(t *testing.T, s steward.Store, tenant string) (moved, recent int64) {
	t.Helper()
	rows, err := s.TenantRows(ctx(t), tenant)
	must(t, err)
	return rows["samples"], rows["samples_recent"]
}

// wantSampleTables fails unless the tenant's rows are where the test
// expects them.
func wantSampleTables(t *testing.T, s steward.Store, what string, moved, recent int64) {
	t.Helper()
	if m, r := sampleTables(t, s, tenantA); m != moved || r != recent {
		t.Fatalf("%s: %d moved and %d recent samples, want %d and %d", what, m, r, moved, recent)
	}
}

// twoDevices sets the tenants up and creates two devices of tenant A,
// d-<prefix>1 and d-<prefix>2.
func twoDevices(t *testing.T, s steward.Store, prefix string) (d1, d2 steward.Device) {
	t.Helper()
	setup(t, s)
	d1, d2 = device(tenantA, "d-"+prefix+"1"), device(tenantA, "d-"+prefix+"2")
	d2.FactoryID = "factory-" + prefix + "2"
	createDevices(t, s, d1, d2)
	return d1, d2
}

// cpu returns a cpu sample of tenant A's device.
func cpu(device string, v float64, when time.Time) steward.Sample {
	return steward.Sample{TenantID: tenantA, DeviceID: device, Metric: "cpu", Value: v, At: when}
}

// testSamplesAcrossMove writes samples, moves them with a rollup, then
// writes a late sample into a minute already rolled up, a newer one and a
// redelivery (another value) of a moved one: every reader sees the four
// samples once, with the first value of the redelivered key, before and
// after the next rollup moves them, and the rollups count them once.
func testSamplesAcrossMove(t *testing.T, s steward.Store) {
	c := ctx(t)
	d1, d2 := twoDevices(t, s, "mv")
	m := h0.Add(5 * time.Minute)
	first := []steward.Sample{cpu(d1.ID, 1, m.Add(time.Second)), cpu(d1.ID, 2, m.Add(20*time.Second)), cpu(d2.ID, 10, m.Add(time.Second))}
	must(t, s.WriteSamples(c, first))
	wantSampleTables(t, s, "written", 0, 3)
	must(t, s.RollupSamples(c, h0, h0.Add(10*time.Minute)))
	wantSampleTables(t, s, "after the move", 3, 0)

	late, newer, again := cpu(d1.ID, 3, m.Add(40*time.Second)), cpu(d1.ID, 4, h0.Add(12*time.Minute)), cpu(d1.ID, 99, m.Add(time.Second))
	must(t, s.WriteSamples(c, []steward.Sample{late, newer, again}))
	wantSampleTables(t, s, "late, newer and redelivered", 3, 3)

	want := storedSamples(first[0], first[1], late, newer)
	// rolled says the late sample's minute was rolled up again: until
	// then FleetAggregates, which reads minute rollups below the
	// watermark, does not count it (as before samples were moved).
	check := func(what string, rolled bool) {
		t.Helper()
		got, err := s.ListSamples(c, tenantA, d1.ID, "cpu", h0, h0.Add(time.Hour), 0)
		must(t, err)
		sameSamples(t, what+": list", got, want)
		got, err = s.ListSamples(c, tenantA, d1.ID, "cpu", h0, time.Time{}, 2)
		must(t, err)
		sameSamples(t, what+": first two", got, want[:2])
		x, err := s.ExportDevice(c, tenantA, d1.ID, t0)
		must(t, err)
		sameSamples(t, what+": export", x.Samples, want)
		for _, tc := range []struct {
			agg   string
			value float64
		}{{steward.AggAvg, 2.5}, {steward.AggMax, 4}, {steward.AggMin, 1}, {steward.AggLast, 4}} {
			sig, err := s.AlertSignals(c, tenantA, steward.AlertSignalQuery{Metric: "cpu", Aggregation: tc.agg, From: h0, To: h0.Add(time.Hour)})
			must(t, err)
			if len(sig) != 2 || sig[0].DeviceID != d1.ID || sig[0].Samples != 4 || sig[0].Value != tc.value || sig[1].Samples != 1 || sig[1].Value != 10 {
				t.Fatalf("%s: alert signals by %s: %+v, want %s with 4 samples of %s %v, %s with 1", what, tc.agg, sig, d1.ID, tc.agg, tc.value, d2.ID)
			}
		}
		for _, from := range []time.Time{h0, h0.Add(time.Second)} {
			if !rolled {
				break
			}
			aggs, err := s.FleetAggregates(c, tenantA, steward.FleetStatsQuery{Metric: "cpu", From: from, To: h0.Add(time.Hour)})
			must(t, err)
			if len(aggs) != 2 || aggs[0].Samples != 4 || aggs[0].Mean != 2.5 || aggs[1].Samples != 1 {
				t.Fatalf("%s: fleet aggregates from %v: %+v, want 4 samples of mean 2.5 and 1", what, from, aggs)
			}
		}
	}
	check("on both sides of a move", false)

	// The job recomputes from the late sample's minute (RunOnce starts at
	// the oldest noted sample): the late sample is moved, the redelivery
	// dropped (samples holds its key), the newer one, after the range,
	// stays.
	must(t, s.RollupSamples(c, m, h0.Add(10*time.Minute)))
	wantSampleTables(t, s, "late minute rolled up again", 4, 1)
	check("late minute rolled up again", true)

	must(t, s.RollupSamples(c, h0.Add(10*time.Minute), h0.Add(13*time.Minute)))
	wantSampleTables(t, s, "after the second move", 5, 0)
	check("after the second move", true)
	minutes, err := s.ListRollups(c, tenantA, d1.ID, "cpu", steward.RollupMinute, m, m.Add(time.Minute), 0)
	must(t, err)
	sameRollups(t, "the late minute", minutes, []steward.Rollup{{TenantID: tenantA, DeviceID: d1.ID, Metric: "cpu", At: m, Min: 1, Max: 3, Sum: 6, Count: 3}})
	hours, err := s.ListRollups(c, tenantA, d1.ID, "cpu", steward.RollupHour, h0, h0.Add(time.Hour), 0)
	must(t, err)
	sameRollups(t, "the hour", hours, []steward.Rollup{{TenantID: tenantA, DeviceID: d1.ID, Metric: "cpu", At: h0, Min: 1, Max: 4, Sum: 10, Count: 4}})

	// A redelivery of the whole first batch after it was moved, rolled up
	// again: still counted once.
	redelivered := append([]steward.Sample(nil), first...)
	for i := range redelivered {
		redelivered[i].Value += 1000
	}
	must(t, s.WriteSamples(c, redelivered))
	wantSampleTables(t, s, "a moved batch redelivered", 5, 3)
	check("a moved batch redelivered", true)
	must(t, s.RollupSamples(c, m, h0.Add(14*time.Minute)))
	wantSampleTables(t, s, "after a moved batch was redelivered and rolled up", 5, 0)
	check("after a moved batch was redelivered", true)
	minutes, err = s.ListRollups(c, tenantA, d1.ID, "cpu", steward.RollupMinute, m, m.Add(time.Minute), 0)
	must(t, err)
	if len(minutes) != 1 || minutes[0].Count != 3 || minutes[0].Sum != 6 {
		t.Fatalf("the late minute after a redelivery: %+v, want 3 samples summing to 6", minutes)
	}
}

// testSamplesRecentRemoved checks that retention and both erasures delete
// samples from both tables: moved ones, and late ones not yet moved.
func testSamplesRecentRemoved(t *testing.T, s steward.Store) {
	c := ctx(t)
	d1, d2 := twoDevices(t, s, "er")
	must(t, s.WriteSamples(c, []steward.Sample{cpu(d1.ID, 1, h0.Add(time.Minute)), cpu(d2.ID, 1, h0.Add(time.Minute))}))
	must(t, s.RollupSamples(c, h0, h0.Add(10*time.Minute)))
	must(t, s.WriteSamples(c, []steward.Sample{
		cpu(d1.ID, 2, h0.Add(2*time.Minute)), cpu(d2.ID, 2, h0.Add(2*time.Minute)), // late
		cpu(d1.ID, 3, h0.Add(20*time.Minute)), cpu(d2.ID, 3, h0.Add(20*time.Minute)),
	}))
	wantSampleTables(t, s, "before retention", 2, 4)

	// Retention: the four before h0+10m, two of each table, at most three
	// a call.
	n, err := s.DeleteSamplesBefore(c, h0.Add(10*time.Minute), 3)
	must(t, err)
	if n != 3 {
		t.Fatalf("first delete took %d samples, want 3 (the limit)", n)
	}
	n, err = s.DeleteSamplesBefore(c, h0.Add(10*time.Minute), 3)
	must(t, err)
	if n != 1 {
		t.Fatalf("second delete took %d samples, want the last 1", n)
	}
	wantSampleTables(t, s, "after retention", 0, 2)
	got, err := s.ListSamples(c, tenantA, d1.ID, "cpu", h0, h0.Add(time.Hour), 0)
	must(t, err)
	sameSamples(t, "after retention", got, storedSamples(cpu(d1.ID, 3, h0.Add(20*time.Minute))))

	// Erasure of telemetry: a moved sample and a late one of each device.
	must(t, s.RollupSamples(c, h0.Add(10*time.Minute), h0.Add(30*time.Minute)))
	must(t, s.WriteSamples(c, []steward.Sample{cpu(d1.ID, 4, h0.Add(15*time.Minute)), cpu(d2.ID, 4, h0.Add(15*time.Minute))}))
	wantSampleTables(t, s, "before erasure", 2, 2)
	_, err = s.EraseDeviceData(c, tenantA, d1.ID)
	must(t, err)
	wantSampleTables(t, s, "after erasing one device's data", 1, 1)
	got, err = s.ListSamples(c, tenantA, d1.ID, "cpu", time.Time{}, time.Time{}, 0)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("samples left after erasing the device's data: %+v", got)
	}

	// Erasure of the device: both of its rows, counted as samples.
	tomb, err := s.EraseDevice(c, steward.DeviceTombstone{TenantID: tenantA, DeviceID: d2.ID, ErasedAt: at(time.Hour), ErasedBy: "token:x"})
	must(t, err)
	if tomb.Erased["samples"] != 2 {
		t.Fatalf("erased %v: want 2 samples (one moved, one recent)", tomb.Erased)
	}
	wantSampleTables(t, s, "after erasing the other device", 0, 0)
}

// testRollupsCloseDays checks that a day is rolled up once it is closed —
// when the watermark reaches its end — and not while it is open, and that
// late samples of a closed day are rolled into it, whether the run that
// takes them closes a day or not.
func testRollupsCloseDays(t *testing.T, s steward.Store) {
	c := ctx(t)
	day := h0.Truncate(steward.RollupDay)
	var samples []steward.Sample
	for when := day.Add(-2 * time.Hour); when.Before(day.Add(2 * time.Hour)); when = when.Add(10 * time.Minute) {
		samples = append(samples, steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: float64(when.Minute()), At: when})
	}
	must(t, s.WriteSamples(c, samples))
	days := func(what string, want ...time.Time) {
		t.Helper()
		got, err := s.ListRollups(c, tenantA, "d-1", "cpu", steward.RollupDay, day.Add(-48*time.Hour), day.Add(48*time.Hour), 0)
		must(t, err)
		var exp []steward.Rollup
		for _, d := range want {
			r, _ := rollupOf(tenantA, "d-1", "cpu", d, steward.RollupDay, samples)
			exp = append(exp, r)
		}
		sameRollups(t, what, got, exp)
	}
	prev := day.Add(-steward.RollupDay)

	must(t, s.RollupSamples(c, day.Add(-2*time.Hour), day.Add(-10*time.Minute)))
	days("before midnight: the day is open")
	must(t, s.RollupSamples(c, day.Add(-10*time.Minute), day.Add(10*time.Minute)))
	days("across midnight: the day before is closed", prev)

	// A late sample of the closed day, taken by a run from its minute to
	// now, as the job does.
	late := steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: -50, At: day.Add(-4*time.Minute - 30*time.Second)}
	must(t, s.WriteSamples(c, []steward.Sample{late}))
	samples = append(samples, late)
	must(t, s.RollupSamples(c, late.At.Truncate(time.Minute), day.Add(20*time.Minute)))
	days("a late sample of the closed day", prev)

	// Another, taken by a run that ends before the watermark: the day is
	// closed by the watermark, so it is recomputed too.
	late = steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: 500, At: day.Add(-30*time.Minute + 15*time.Second)}
	must(t, s.WriteSamples(c, []steward.Sample{late}))
	samples = append(samples, late)
	must(t, s.RollupSamples(c, late.At.Truncate(time.Minute), late.At.Truncate(time.Minute).Add(time.Minute)))
	days("a late sample, a run short of the watermark", prev)

	must(t, s.RollupSamples(c, day.Add(20*time.Minute), day.Add(steward.RollupDay)))
	days("at the next midnight: both days closed", prev, day)
}

// testSamplesMovedInChunks moves readings in transactions of at most three
// (where the store lets a test set that), among them five readings of one
// microsecond, more than a transaction's share: every reading is moved, the
// ones after the rollup's end stay, and each sample reads back once with
// its minute rolled up once.
func testSamplesMovedInChunks(t *testing.T, s steward.Store) {
	c := ctx(t)
	d1, _ := twoDevices(t, s, "ch")
	if cs, ok := s.(interface{ SetMoveChunk(int) }); ok {
		cs.SetMoveChunk(3)
	}
	m := h0.Add(5 * time.Minute)
	var samples []steward.Sample
	for i := range 10 {
		samples = append(samples, cpu(d1.ID, float64(i), m.Add(time.Duration(i)*time.Second)))
	}
	same := m.Add(30 * time.Second)
	for i := range 5 {
		samples = append(samples, steward.Sample{TenantID: tenantA, DeviceID: fmt.Sprintf("d-same%d", i), Metric: "cpu", Value: float64(i), At: same})
	}
	after := cpu(d1.ID, 100, m.Add(2*time.Minute))
	must(t, s.WriteSamples(c, append(samples, after)))
	must(t, s.RollupSamples(c, m, m.Add(time.Minute)))
	wantSampleTables(t, s, "after a move in chunks", 15, 1)

	got, err := s.ListSamples(c, tenantA, d1.ID, "cpu", h0, time.Time{}, 0)
	must(t, err)
	sameSamples(t, "device 1", got, storedSamples(append(slices.Clone(samples[:10]), after)...))
	for i := range 5 {
		got, err := s.ListSamples(c, tenantA, fmt.Sprintf("d-same%d", i), "cpu", h0, time.Time{}, 0)
		must(t, err)
		sameSamples(t, "a device of the shared microsecond", got, storedSamples(samples[10+i]))
	}
	rolled, err := s.ListRollups(c, tenantA, d1.ID, "cpu", steward.RollupMinute, h0, time.Time{}, 0)
	must(t, err)
	if len(rolled) != 1 || rolled[0].Count != 10 || rolled[0].Sum != 45 {
		t.Fatalf("minute rollups of device 1: %+v, want one of 10 samples summing 45", rolled)
	}
}
