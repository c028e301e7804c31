package analytics

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func TestPercentile(t *testing.T) {
	t.Parallel()
	tests := []struct {
		xs   []float64
		p    float64
		want float64
	}{
		{nil, 50, 0},
		{[]float64{7}, 95, 7},
		{[]float64{1, 2, 3, 4}, 50, 2.5},
		{[]float64{1, 2, 3, 4, 5}, 50, 3},
		{[]float64{1, 2, 3, 4, 5}, 95, 4.8}, // NumPy: np.percentile([1,2,3,4,5], 95) == 4.8
		{[]float64{1, 2, 3, 4, 5}, 0, 1},
		{[]float64{1, 2, 3, 4, 5}, 100, 5},
		{[]float64{10, 20}, 25, 12.5},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.xs, tt.p), func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tt.xs, tt.p); !near(got, tt.want) {
				t.Fatalf("Percentile(%v, %v) = %v, want %v", tt.xs, tt.p, got, tt.want)
			}
		})
	}
}

func TestSpreadAndMean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		xs         []float64
		mean, mad  float64
		spreadNote string
	}{
		{nil, 0, 0, "empty"},
		{[]float64{5, 5, 5}, 5, 0, "constant"},
		// median 3, deviations 2 1 0 1 97 → sorted 0 1 1 2 97, median 1: the outlier does not move it
		{[]float64{1, 2, 3, 4, 100}, 22, 1, "robust"},
		{[]float64{1, 2, 3, 4}, 2.5, 1, "even"}, // median 2.5, deviations 1.5 .5 .5 1.5 → median 1
	}
	for _, tt := range tests {
		t.Run(tt.spreadNote, func(t *testing.T) {
			t.Parallel()
			if got := Mean(tt.xs); !near(got, tt.mean) {
				t.Fatalf("Mean = %v, want %v", got, tt.mean)
			}
			if got := Spread(tt.xs); !near(got, MADScale*tt.mad) {
				t.Fatalf("Spread = %v, want %v", got, MADScale*tt.mad)
			}
		})
	}
}

func TestRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		events  int64
		devices int
		days    float64
		want    float64
	}{
		{120, 25, 1, 4.8},
		{30, 50, 2, 0.3},
		{5, 0, 1, 0},
		{5, 3, 0, 0},
		{0, 10, 1, 0},
	}
	for _, tt := range tests {
		if got := Rate(tt.events, tt.devices, tt.days); !near(got, tt.want) {
			t.Errorf("Rate(%d, %d, %v) = %v, want %v", tt.events, tt.devices, tt.days, got, tt.want)
		}
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for v, want := range map[float64]string{0: "0", 4.8: "4.8", 0.3: "0.3", 0.0333: "0.033", 35: "35", 81.54: "81.5",
		1234.4: "1,234", -2.25: "-2.2", -1500: "-1,500", 0.000012: "0.000012"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
	for n, want := range map[int]string{0: "0", 999: "999", 1200: "1,200", 1234567: "1,234,567", -1000: "-1,000"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestEvidence(t *testing.T) {
	t.Parallel()
	got := EventEvidence("firmware", "2.1.0", "reboot", 4.8, 0.3, 1200)
	if want := "firmware 2.1.0: 4.8 reboots per device-day against 0.3 for the rest of the fleet, 1,200 devices"; got != want {
		t.Fatalf("event evidence\n got %q\nwant %q", got, want)
	}
	got = EventEvidence("labels.ring", "", "crash", 2, 0, 20)
	if want := "labels.ring (none): 2 crashes per device-day against 0 for the rest of the fleet, 20 devices"; got != want {
		t.Fatalf("event evidence\n got %q\nwant %q", got, want)
	}
	got = MetricEvidence("model", "gw-200", "cpu", 81.54, 35, 2.1, 25)
	if want := "model gw-200: cpu mean 81.5 against a median of 35 for the rest of the fleet (spread 2.1), 25 devices"; got != want {
		t.Fatalf("metric evidence\n got %q\nwant %q", got, want)
	}
}

// fleet makes aggregates: n devices of a firmware, each with events and a
// metric mean given by functions of its index.
func fleet(firmware string, n int, events func(i int) int64, mean func(i int) float64) []steward.DeviceAggregate {
	out := make([]steward.DeviceAggregate, n)
	for i := range out {
		out[i] = steward.DeviceAggregate{DeviceID: fmt.Sprintf("d-%s-%04d", firmware, i), Firmware: firmware, Model: "gw",
			State: steward.StateActive, Online: i%2 == 0, Samples: 10, Mean: mean(i), Events: events(i)}
	}
	return out
}

func window(days int) steward.FleetStatsQuery {
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	return steward.FleetStatsQuery{GroupBy: "firmware", Metric: "cpu", Event: "reboot", From: from, To: from.AddDate(0, 0, days)}
}

func TestCompute(t *testing.T) {
	t.Parallel()
	aggs := append(fleet("1.0", 4, func(i int) int64 { return int64(i) }, func(i int) float64 { return float64(10 * (i + 1)) }),
		fleet("2.0", 2, func(int) int64 { return 0 }, func(int) float64 { return 50 })...)
	aggs[5].Samples = 0 // reported nothing: not in the metric statistics
	aggs = append(aggs, steward.DeviceAggregate{DeviceID: "d-none", State: steward.StateRegistered})
	st := Compute(window(2), aggs)
	if st.Devices != 7 || st.Days != 2 || len(st.Groups) != 3 {
		t.Fatalf("stats %+v", st)
	}
	g := st.Groups[0]
	if g.Value != "1.0" || g.Devices != 4 || g.Online != 2 || g.OnlineShare != 0.5 {
		t.Fatalf("group %+v", g)
	}
	// means 10 20 30 40: mean 25, p50 25, p95 38.5; events 0+1+2+3 = 6 over 4 devices × 2 days
	if m := g.Metric; m.Devices != 4 || !near(m.Mean, 25) || !near(m.P50, 25) || !near(m.P95, 38.5) {
		t.Fatalf("metric %+v", m)
	}
	if e := g.Event; e.Events != 6 || !near(e.PerDeviceDay, 0.75) {
		t.Fatalf("event %+v", e)
	}
	if g := st.Groups[1]; g.Value != "2.0" || g.Metric.Devices != 1 || g.Metric.Mean != 50 {
		t.Fatalf("group %+v", g)
	}
	if g := st.Groups[2]; g.Value != "" || g.Metric.Devices != 0 || g.Metric.P95 != 0 || g.Event.Events != 0 {
		t.Fatalf("group without firmware %+v", g)
	}
	q := window(1)
	q.Metric, q.Event = "", ""
	if g := Compute(q, aggs).Groups[0]; g.Metric != nil || g.Event != nil {
		t.Fatalf("without metric and event: %+v", g)
	}
}

func TestFindOutliers(t *testing.T) {
	t.Parallel()
	base := func(i int) float64 { return 40 + float64(i%5) } // 40..44: median 42, MAD 1
	quiet := func(i int) int64 { return int64(i % 2) }       // 0.5 a day
	tests := []struct {
		name string
		aggs []steward.DeviceAggregate
		rule steward.OutlierRule
		want []string // kind:value
	}{
		{"reboots", append(fleet("1.0", 40, quiet, base), fleet("2.1.0", 25, func(int) int64 { return 5 }, base)...), steward.OutlierRule{},
			[]string{"event:2.1.0"}},
		{"small cohort", append(fleet("1.0", 40, quiet, base), fleet("2.1.0", 5, func(int) int64 { return 500 }, func(int) float64 { return 99 })...), steward.OutlierRule{},
			nil},
		{"small cohort with a lower minimum", append(fleet("1.0", 40, quiet, base), fleet("2.1.0", 5, func(int) int64 { return 500 }, func(int) float64 { return 99 })...), steward.OutlierRule{MinDevices: 5},
			[]string{"event:2.1.0", "metric:2.1.0"}},
		{"small rest", append(fleet("1.0", 10, quiet, base), fleet("2.1.0", 25, func(int) int64 { return 5 }, base)...), steward.OutlierRule{},
			nil},
		// 3× but only +0.5 a day: not enough
		{"ratio without excess", append(fleet("1.0", 40, func(i int) int64 { return int64(i % 4 / 3) }, base), fleet("2.1.0", 25, func(int) int64 { return 1 }, base)...), steward.OutlierRule{},
			nil},
		// +1 a day but only 2×
		{"excess without ratio", append(fleet("1.0", 40, func(int) int64 { return 1 }, base), fleet("2.1.0", 25, func(int) int64 { return 2 }, base)...), steward.OutlierRule{},
			nil},
		{"hot cpu", append(fleet("1.0", 40, quiet, base), fleet("3.0", 20, quiet, func(i int) float64 { return 60 + float64(i%3) })...), steward.OutlierRule{},
			[]string{"metric:3.0"}},
		{"cold cpu", append(fleet("1.0", 40, quiet, base), fleet("3.0", 20, quiet, func(int) float64 { return 20 })...), steward.OutlierRule{},
			[]string{"metric:3.0"}},
		// 42 + 3 × 1.4826 = 46.4: a mean of 46 is within
		{"within spread", append(fleet("1.0", 40, quiet, base), fleet("3.0", 20, quiet, func(int) float64 { return 46 })...), steward.OutlierRule{},
			nil},
		{"within a wider rule", append(fleet("1.0", 40, quiet, base), fleet("3.0", 20, quiet, func(int) float64 { return 60 })...), steward.OutlierRule{SpreadFactor: 20},
			nil},
		{"identical fleet", append(fleet("1.0", 40, quiet, func(int) float64 { return 1 }), fleet("3.0", 20, quiet, func(int) float64 { return 1 })...), steward.OutlierRule{},
			nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res := FindOutliers(window(1), tt.rule, tt.aggs)
			var got []string
			for _, o := range res.Outliers {
				got = append(got, o.Kind+":"+o.Value)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("outliers %v, want %v: %+v", got, tt.want, res.Outliers)
			}
			if res.Rule.MinDevices == 0 || res.Rule.RateFactor == 0 || res.Rule.RateExcess == 0 || res.Rule.SpreadFactor == 0 {
				t.Fatalf("rule without its defaults: %+v", res.Rule)
			}
		})
	}

	res := FindOutliers(window(2), steward.OutlierRule{},
		append(fleet("1.0", 40, quiet, base), fleet("2.1.0", 25, func(int) int64 { return 10 }, base)...))
	o := res.Outliers[0]
	if o.Devices != 25 || o.RestDevices != 40 || !near(o.Observed, 5) || !near(o.Rest, 0.25) || o.GroupBy != "firmware" {
		t.Fatalf("evidence numbers %+v", o)
	}
	if want := "firmware 2.1.0: 5 reboots per device-day against 0.25 for the rest of the fleet, 25 devices"; o.Evidence != want {
		t.Fatalf("evidence %q, want %q", o.Evidence, want)
	}
	res = FindOutliers(window(1), steward.OutlierRule{},
		append(fleet("1.0", 40, quiet, base), fleet("3.0", 20, quiet, func(int) float64 { return 60 })...))
	if o := res.Outliers[0]; !near(o.Observed, 60) || !near(o.Rest, 42) || !near(o.Spread, MADScale) || !strings.Contains(o.Evidence, "cpu mean 60 against a median of 42") {
		t.Fatalf("metric evidence %+v", o)
	}
}

func BenchmarkFindOutliers(b *testing.B) {
	var aggs []steward.DeviceAggregate
	for f := range 20 {
		aggs = append(aggs, fleet(fmt.Sprint("1.", f), 5000, func(i int) int64 { return int64(i % 3) }, func(i int) float64 { return float64(i % 100) })...)
	}
	q := window(1)
	b.ReportAllocs()
	for b.Loop() {
		FindOutliers(q, steward.OutlierRule{}, aggs)
	}
}
