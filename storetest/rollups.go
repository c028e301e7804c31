package storetest

import (
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// h0 is the whole hour before t0, where the rollup tests' samples start.
var h0 = t0.UTC().Truncate(time.Hour)

// rollupOf computes, the slow way, the rollup of the samples of a bucket.
func rollupOf(tenant, device, metric string, start time.Time, width time.Duration, samples []steward.Sample) (steward.Rollup, bool) {
	r := steward.Rollup{TenantID: tenant, DeviceID: device, Metric: metric, At: start}
	seen := map[time.Time]bool{}
	for _, sm := range samples {
		at := stored(sm.At)
		if sm.TenantID != tenant || sm.DeviceID != device || sm.Metric != metric || at.Before(start) || !at.Before(start.Add(width)) || seen[at] {
			continue
		}
		seen[at] = true // the first of a key is the one stored
		if r.Count == 0 || sm.Value < r.Min {
			r.Min = sm.Value
		}
		if r.Count == 0 || sm.Value > r.Max {
			r.Max = sm.Value
		}
		r.Sum += sm.Value
		r.Count++
	}
	return r, r.Count > 0
}

// sameRollups fails unless got is want (sums within rounding).
func sameRollups(t *testing.T, what string, got, want []steward.Rollup) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d rollups %+v, want %d %+v", what, len(got), got, len(want), want)
	}
	for i := range got {
		g, w := got[i], want[i]
		d := g.Sum - w.Sum
		if d < -1e-9 || d > 1e-9 {
			t.Fatalf("%s[%d]: sum %v, want %v", what, i, g.Sum, w.Sum)
		}
		g.Sum = w.Sum
		if g != w || !g.At.Equal(w.At) {
			t.Fatalf("%s[%d]:\n got %+v\nwant %+v", what, i, g, w)
		}
	}
}

// expectRollups computes the rollups the store should hold for one
// device's metric over [from, to).
func expectRollups(tenant, device, metric string, width time.Duration, from, to time.Time, samples []steward.Sample) []steward.Rollup {
	var out []steward.Rollup
	for b := from; b.Before(to); b = b.Add(width) {
		if r, ok := rollupOf(tenant, device, metric, b, width, samples); ok {
			out = append(out, r)
		}
	}
	return out
}

// rollupSamples returns samples of tenant A's d-1 (cpu, mem) and d-2, and
// tenant B's d-1, over two hours from h0, some in the same second.
func rollupSamples() []steward.Sample {
	var out []steward.Sample
	for i := range 240 {
		when := h0.Add(time.Duration(i) * 30 * time.Second).Add(time.Duration(i%7) * time.Millisecond)
		out = append(out,
			steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: float64(i%17) - 3.5, At: when},
			steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "mem", Value: float64(i), At: when},
			steward.Sample{TenantID: tenantA, DeviceID: "d-2", Metric: "cpu", Value: float64(i % 5), At: when.Add(10 * time.Second)},
			steward.Sample{TenantID: tenantB, DeviceID: "d-1", Metric: "cpu", Value: 1000 + float64(i), At: when},
		)
	}
	return out
}

// checkRollups compares every series of the rollup samples with the slow
// computation over [from, to). Day rollups are expected only for the days
// closed by the watermark: RollupSamples recomputes a day once it is
// closed, not on every run while it is open (which read all of the open
// day's hour rollups under the write lock, longer as the day went on).
func checkRollups(t *testing.T, s steward.Store, samples []steward.Sample, from, to time.Time) {
	t.Helper()
	wm, err := s.RollupWatermark(ctx(t))
	must(t, err)
	series := []struct{ tenant, device, metric string }{
		{tenantA, "d-1", "cpu"}, {tenantA, "d-1", "mem"}, {tenantA, "d-2", "cpu"}, {tenantB, "d-1", "cpu"},
	}
	for _, sr := range series {
		for _, width := range []time.Duration{steward.RollupMinute, steward.RollupHour, steward.RollupDay} {
			got, err := s.ListRollups(ctx(t), sr.tenant, sr.device, sr.metric, width, from.Add(-24*time.Hour), to.Add(24*time.Hour), 0)
			must(t, err)
			end := to
			if closed := wm.Truncate(steward.RollupDay); width == steward.RollupDay && closed.Before(end) {
				end = closed
			}
			want := expectRollups(sr.tenant, sr.device, sr.metric, width, from.Truncate(width), end, samples)
			sameRollups(t, sr.tenant+"/"+sr.device+"/"+sr.metric+" by "+width.String(), got, want)
		}
	}
}

func testRollups(t *testing.T, s steward.Store) {
	c := ctx(t)
	wm, err := s.RollupWatermark(c)
	must(t, err)
	if !wm.IsZero() {
		t.Fatalf("watermark of a new store = %v, want zero", wm)
	}
	samples := rollupSamples()
	must(t, s.WriteSamples(c, samples))
	end := h0.Add(2 * time.Hour)
	// In two ranges, the second across the hour.
	must(t, s.RollupSamples(c, h0, h0.Add(50*time.Minute)))
	must(t, s.RollupSamples(c, h0.Add(50*time.Minute), end))
	checkRollups(t, s, samples, h0, end)
	wm, err = s.RollupWatermark(c)
	must(t, err)
	if !wm.Equal(end) {
		t.Fatalf("watermark = %v, want %v", wm, end)
	}

	// Again: nothing changes, and the watermark does not go back.
	must(t, s.RollupSamples(c, h0, h0.Add(time.Hour)))
	checkRollups(t, s, samples, h0, end)
	wm, err = s.RollupWatermark(c)
	must(t, err)
	if !wm.Equal(end) {
		t.Fatalf("watermark went back to %v, want %v", wm, end)
	}

	// A late sample, in a bucket rolled up already, and a duplicate of a
	// stored one (dropped by the key): recomputing the late sample's
	// minute fixes it and its hour.
	late := steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: -100, At: h0.Add(61*time.Minute + 7*time.Second)}
	dup := samples[0]
	dup.Value = 1e6
	must(t, s.WriteSamples(c, []steward.Sample{late, dup}))
	samples = append(samples, late, dup)
	must(t, s.RollupSamples(c, h0.Add(61*time.Minute), h0.Add(62*time.Minute)))
	checkRollups(t, s, samples, h0, end)

	// [from, to) of the list.
	got, err := s.ListRollups(c, tenantA, "d-1", "cpu", steward.RollupMinute, h0.Add(10*time.Minute), h0.Add(12*time.Minute), 0)
	must(t, err)
	if len(got) != 2 || !got[0].At.Equal(h0.Add(10*time.Minute)) || got[0].Count != 2 {
		t.Fatalf("minutes 10 and 11: %+v", got)
	}
	if avg := got[0].Avg(); avg != got[0].Sum/2 {
		t.Fatalf("avg %v of %+v", avg, got[0])
	}
	got, err = s.ListRollups(c, tenantA, "d-1", "cpu", steward.RollupMinute, h0, time.Time{}, 3)
	must(t, err)
	if len(got) != 3 || !got[0].At.Equal(h0) {
		t.Fatalf("first three minutes: %+v", got)
	}
}

func testRollupsConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	samples := rollupSamples()
	must(t, s.WriteSamples(c, samples))
	end := h0.Add(2 * time.Hour)
	// Two nodes rolling up overlapping ranges at once, while a late
	// sample lands: no error, and once both have run again the buckets
	// are exact.
	late := steward.Sample{TenantID: tenantA, DeviceID: "d-1", Metric: "mem", Value: -5, At: h0.Add(30*time.Minute + 1)}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); errs[0] = s.RollupSamples(c, h0, end) }()
	go func() { defer wg.Done(); errs[1] = s.RollupSamples(c, h0.Add(20*time.Minute), end) }()
	go func() { defer wg.Done(); errs[2] = s.WriteSamples(c, []steward.Sample{late}) }()
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
	samples = append(samples, late)
	must(t, s.RollupSamples(c, h0.Add(30*time.Minute), h0.Add(31*time.Minute)))
	checkRollups(t, s, samples, h0, end)
}

func testRollupsInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	must(t, s.WriteSamples(c, rollupSamples()))
	tests := []struct {
		name     string
		from, to time.Time
	}{
		{"from not on a minute", h0.Add(time.Second), h0.Add(time.Hour)},
		{"to not on a minute", h0, h0.Add(time.Hour + time.Millisecond)},
		{"empty", h0.Add(time.Hour), h0.Add(time.Hour)},
		{"backwards", h0.Add(time.Hour), h0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, s.RollupSamples(c, tc.from, tc.to), steward.CodeInvalid)
		})
	}
	_, err := s.ListRollups(c, tenantA, "d-1", "cpu", 5*time.Minute, h0, time.Time{}, 0)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.ListRollups(c, tenantA, "d-1", "cpu", steward.RollupMinute, h0, time.Time{}, -1)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.DeleteSamplesBefore(c, h0.Add(time.Hour), 0)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.DeleteSamplesBefore(c, time.Time{}, 10)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.DeleteRollupsBefore(c, time.Second, h0.Add(time.Hour), 10)
	wantCode(t, err, steward.CodeInvalid)
	// Nothing was written or deleted.
	wm, err := s.RollupWatermark(c)
	must(t, err)
	got, err := s.ListRollups(c, tenantA, "d-1", "cpu", steward.RollupMinute, h0, time.Time{}, 0)
	must(t, err)
	raw, err := s.ListSamples(c, tenantA, "d-1", "cpu", h0, time.Time{}, 0)
	must(t, err)
	if !wm.IsZero() || len(got) != 0 || len(raw) != 240 {
		t.Fatalf("refused calls changed something: watermark %v, %d rollups, %d samples", wm, len(got), len(raw))
	}
}

func testRollupsIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	var samples []steward.Sample
	for _, sm := range rollupSamples() {
		if sm.TenantID == tenantA {
			samples = append(samples, sm)
		}
	}
	must(t, s.WriteSamples(c, samples))
	must(t, s.RollupSamples(c, h0, h0.Add(2*time.Hour)))
	for _, width := range []time.Duration{steward.RollupMinute, steward.RollupHour} {
		mine, err := s.ListRollups(c, tenantA, "d-1", "cpu", width, h0, time.Time{}, 0)
		must(t, err)
		theirs, err := s.ListRollups(c, tenantB, "d-1", "cpu", width, h0, time.Time{}, 0)
		must(t, err)
		if len(mine) == 0 || len(theirs) != 0 {
			t.Fatalf("by %s: tenant A has %d rollups, tenant B reads %d of them", width, len(mine), len(theirs))
		}
	}
}

// testRetention checks that the deletes remove exactly what is older than
// their time, of every tenant, at most limit at a time.
func testRetention(t *testing.T, s steward.Store) {
	c := ctx(t)
	samples := rollupSamples()
	must(t, s.WriteSamples(c, samples))
	end := h0.Add(2 * time.Hour)
	must(t, s.RollupSamples(c, h0, end))

	count := func(tenant, device, metric string, width time.Duration) int {
		t.Helper()
		if width == 0 {
			got, err := s.ListSamples(c, tenant, device, metric, h0.Add(-time.Hour), end, 10000)
			must(t, err)
			return len(got)
		}
		got, err := s.ListRollups(c, tenant, device, metric, width, h0.Add(-time.Hour), end, 10000)
		must(t, err)
		return len(got)
	}
	// Raw samples before h0+30m+1ms: in each series of 240, the first 60
	// (every 30 s, the first ones offset by 0..6 ms: the 61st is at
	// 30m+4ms, so kept) plus, for d-2 (10 s later), the same 60.
	cut := h0.Add(30*time.Minute + time.Millisecond)
	// The deletes count readings: a device's samples of one time.
	type reading struct {
		tenant, device string
		at             time.Time
	}
	readings := map[reading]bool{}
	for _, sm := range samples {
		if sm.At.Before(cut) {
			readings[reading{sm.TenantID, sm.DeviceID, sm.At}] = true
		}
	}
	want := len(readings)
	deleted := 0
	for {
		n, err := s.DeleteSamplesBefore(c, cut, 70)
		must(t, err)
		if n > 70 {
			t.Fatalf("deleted %d readings with a limit of 70", n)
		}
		deleted += n
		if n < 70 {
			break
		}
	}
	if deleted != want {
		t.Fatalf("deleted %d readings, want %d", deleted, want)
	}
	for _, tenant := range []string{tenantA, tenantB} {
		if got := count(tenant, "d-1", "cpu", 0); got != 180 {
			t.Fatalf("tenant %s keeps %d samples, want 180", tenant, got)
		}
	}
	first, err := s.ListSamples(c, tenantA, "d-1", "cpu", h0, end, 1)
	must(t, err)
	if len(first) != 1 || first[0].At.Before(cut) {
		t.Fatalf("oldest sample kept: %+v, want at or after %v", first, cut)
	}

	// Minute rollups before h0+45m: 45 per series, of 120.
	n, err := s.DeleteRollupsBefore(c, steward.RollupMinute, h0.Add(45*time.Minute), maxDeleteChunk)
	must(t, err)
	if n != 4*45 {
		t.Fatalf("deleted %d minute rollups, want %d", n, 4*45)
	}
	if got := count(tenantB, "d-1", "cpu", steward.RollupMinute); got != 75 {
		t.Fatalf("tenant B keeps %d minute rollups, want 75", got)
	}
	// Hour rollups before h0+1h: the first hour of each series.
	n, err = s.DeleteRollupsBefore(c, steward.RollupHour, h0.Add(time.Hour), maxDeleteChunk)
	must(t, err)
	if n != 4 || count(tenantA, "d-1", "mem", steward.RollupHour) != 1 {
		t.Fatalf("deleted %d hour rollups, want 4, one left per series", n)
	}
	// Nothing more to delete at the same times.
	for _, width := range []time.Duration{steward.RollupMinute, steward.RollupHour} {
		n, err := s.DeleteRollupsBefore(c, width, h0.Add(45*time.Minute), maxDeleteChunk)
		must(t, err)
		if n != 0 {
			t.Fatalf("second delete by %s removed %d", width, n)
		}
	}
}

// maxDeleteChunk is the largest delete chunk a store must take.
const maxDeleteChunk = 100000
