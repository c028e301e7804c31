package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// testFleetAggregatesRollups checks that fleet analytics read from day,
// hour and minute rollups give the answer the raw samples give, on ranges
// with ragged edges (not on a minute, an hour or a day), on ranges that
// end past the rollup watermark (where only raw samples answer) and on
// ranges whose edges fall on whole days; and that the rollups are really
// read: with the raw samples under the watermark deleted, a range starting
// on a whole minute still gets the same answer.
func testFleetAggregatesRollups(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	var devs []steward.Device
	for i := range 3 {
		d := device(tenantA, fmt.Sprintf("d-roll%d", i))
		d.FactoryID = ""
		d.Firmware = fmt.Sprintf("1.%d.0", i)
		devs = append(devs, d)
	}
	createDevices(t, s, devs...)

	// Three UTC days and a bit: from 5h17m before midnight D to 2 days
	// and 7 hours after it, a sample every 7 minutes and some seconds per
	// device (d-roll2 stops halfway). Values are multiples of 1/4, so every
	// sum is exact and the rolled-up means must equal the raw ones bit for
	// bit, whatever order the database adds them in.
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	start, end := day.Add(-5*time.Hour-17*time.Minute), day.Add(55*time.Hour)
	var samples []steward.Sample
	for i, d := range devs {
		stop := end
		if i == 2 {
			stop = day.Add(20 * time.Hour)
		}
		k := 0
		for when := start.Add(time.Duration(i) * 13 * time.Second); when.Before(stop); when = when.Add(7*time.Minute + time.Duration(k%11)*time.Second) {
			v := float64((k*7+i*3)%97) / 4
			samples = append(samples,
				steward.Sample{TenantID: tenantA, DeviceID: d.ID, Metric: "cpu", At: when, Value: v},
				steward.Sample{TenantID: tenantA, DeviceID: d.ID, Metric: "mem", At: when, Value: 1000 + v})
			k++
		}
	}
	// Another tenant's samples under a device ID of tenant A: never counted.
	for k := range 500 {
		samples = append(samples, steward.Sample{TenantID: tenantB, DeviceID: "d-roll0", Metric: "cpu", At: start.Add(time.Duration(k) * 9 * time.Minute), Value: 1e6})
	}
	for len(samples) > 0 {
		n := min(len(samples), 2000)
		must(t, s.WriteSamples(c, samples[:n]))
		samples = samples[n:]
	}

	// The rollups will cover up to wm; samples after it are raw only.
	wm := day.Add(48*time.Hour + 3*time.Hour + 20*time.Minute)
	ranges := []struct {
		name     string
		from, to time.Time
	}{
		{"ragged, days inside", day.Add(-3*time.Hour - 17*time.Minute - 23*time.Second - 417*time.Microsecond), day.Add(48*time.Hour + 2*time.Hour + 41*time.Minute + 7*time.Second)},
		{"ragged, past the watermark", day.Add(-4*time.Hour - 59*time.Second), day.Add(54*time.Hour + 3*time.Second)},
		{"whole days", day, day.Add(48 * time.Hour)},
		{"whole hours", day.Add(3 * time.Hour), day.Add(17 * time.Hour)},
		{"within an hour", day.Add(5*time.Hour + 3*time.Minute + 1*time.Second), day.Add(5*time.Hour + 58*time.Minute + 59*time.Second)},
		{"within a minute", day.Add(5*time.Hour + 3*time.Minute + 1*time.Second), day.Add(5*time.Hour + 3*time.Minute + 59*time.Second)},
		{"across midnight, no whole day", day.Add(-2*time.Hour - 30*time.Second), day.Add(3*time.Hour + 1*time.Second)},
		{"all", start.Add(-time.Hour), end.Add(time.Hour)},
		{"after the watermark", wm.Add(time.Minute), end},
		{"before the first sample", start.Add(-48 * time.Hour), start.Add(-24 * time.Hour)},
	}
	raw := make([][]steward.DeviceAggregate, len(ranges))
	for i, r := range ranges {
		got, err := s.FleetAggregates(c, tenantA, steward.FleetStatsQuery{Metric: "cpu", From: r.from, To: r.to})
		must(t, err)
		raw[i] = got
	}

	// Roll up as the job does, in chunks, to the watermark.
	for from := start.Truncate(time.Minute); from.Before(wm); from = from.Add(10 * time.Hour) {
		to := from.Add(10 * time.Hour)
		if to.After(wm) {
			to = wm
		}
		must(t, s.RollupSamples(c, from, to))
	}
	gotWM, err := s.RollupWatermark(c)
	must(t, err)
	if !gotWM.Equal(wm) {
		t.Fatalf("watermark %v, want %v", gotWM, wm)
	}
	show := func(aggs []steward.DeviceAggregate) string {
		out := ""
		for _, a := range aggs {
			out += fmt.Sprintf("%s n=%d mean=%v; ", a.DeviceID, a.Samples, a.Mean)
		}
		return out
	}
	for i, r := range ranges {
		t.Run(r.name, func(t *testing.T) {
			got, err := s.FleetAggregates(c, tenantA, steward.FleetStatsQuery{Metric: "cpu", From: r.from, To: r.to})
			must(t, err)
			if show(got) != show(raw[i]) {
				t.Fatalf("[%v, %v) from rollups:\n got %s\nwant %s (raw)", r.from, r.to, show(got), show(raw[i]))
			}
		})
	}
	if show(raw[0]) == show(raw[2]) || raw[0][0].Samples < 400 {
		t.Fatalf("ranges too alike to tell anything: %s", show(raw[0]))
	}

	// Day rollups are the sums of their hours, for the days the
	// watermark closed: the day it falls in is open and has none yet.
	for _, d := range devs {
		days, err := s.ListRollups(c, tenantA, d.ID, "cpu", steward.RollupDay, start.Add(-24*time.Hour), end, 0)
		must(t, err)
		hours, err := s.ListRollups(c, tenantA, d.ID, "cpu", steward.RollupHour, start.Add(-24*time.Hour), end, 0)
		must(t, err)
		sum := map[time.Time]steward.Rollup{}
		for _, h := range hours {
			k := h.At.Truncate(steward.RollupDay)
			if !k.Before(wm.Truncate(steward.RollupDay)) {
				continue
			}
			r, ok := sum[k]
			if !ok {
				r = steward.Rollup{TenantID: h.TenantID, DeviceID: h.DeviceID, Metric: h.Metric, At: k, Min: h.Min, Max: h.Max}
			}
			r.Min, r.Max, r.Sum, r.Count = min(r.Min, h.Min), max(r.Max, h.Max), r.Sum+h.Sum, r.Count+h.Count
			sum[k] = r
		}
		if len(days) == 0 || len(days) != len(sum) {
			t.Fatalf("%s: %d day rollups, %d days of hour rollups", d.ID, len(days), len(sum))
		}
		for _, dr := range days {
			if want := sum[dr.At]; dr != want && !(dr.At.Equal(want.At) && dr.Sum == want.Sum && dr.Count == want.Count && dr.Min == want.Min && dr.Max == want.Max) {
				t.Fatalf("%s day %v: %+v, want the sum of its hours %+v", d.ID, dr.At, dr, want)
			}
		}
	}

	// With the raw samples under the watermark gone, a range from a whole
	// minute is answered from rollups alone (and raw samples after wm).
	whole := steward.FleetStatsQuery{Metric: "cpu", From: day.Add(-3*time.Hour - 17*time.Minute), To: end}
	before, err := s.FleetAggregates(c, tenantA, whole)
	must(t, err)
	for {
		n, err := s.DeleteSamplesBefore(c, wm, 10000)
		must(t, err)
		if n == 0 {
			break
		}
	}
	after, err := s.FleetAggregates(c, tenantA, whole)
	must(t, err)
	if show(after) != show(before) || before[0].Samples == 0 {
		t.Fatalf("without raw samples:\n got %s\nwant %s", show(after), show(before))
	}
}
