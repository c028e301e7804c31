// Package analytics is fleet analytics: statistics per cohort of devices
// (grouped by firmware, model, site, state or a label) and the cohorts that
// stand out from the rest of the fleet, from the per-device aggregates the
// store computes.
//
// The store sums up each device in one grouped SQL query (count and mean
// of its samples, count of its events); the percentiles, the MAD and the
// comparisons are computed here, in Go. SQLite has no percentile function
// and PostgreSQL's percentile_cont would need a second pass per group and
// per rest-of-fleet; the per-device rows are one per device, small next to
// the samples they stand for, so computing in Go is both portable and cheap.
package analytics

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"

	"github.com/steward-iot/steward"
)

// Defaults of steward.OutlierRule.
const (
	DefaultMinDevices   = 20
	DefaultRateFactor   = 3
	DefaultRateExcess   = 1
	DefaultSpreadFactor = 3
)

// Service implements steward.FleetAnalytics over a store.
type Service struct {
	store steward.Store
	log   *slog.Logger
}

var _ steward.FleetAnalytics = (*Service)(nil)

// New returns the service; a nil logger discards.
func New(store steward.Store, logger *slog.Logger) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, log: logger}
}

// check refuses a query the service cannot answer.
func check(q steward.FleetStatsQuery) error {
	switch {
	case !steward.ValidFleetGroupBy(q.GroupBy):
		return steward.Errorf(steward.CodeInvalid, "group by %q: want firmware, model, site, state or labels.<key>", q.GroupBy)
	case q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To):
		return steward.Errorf(steward.CodeInvalid, "from must be before to")
	case len(q.Metric) > 128:
		return steward.Errorf(steward.CodeInvalid, "metric name is longer than 128 bytes")
	case q.Event != "" && !steward.ValidEventType(q.Event):
		return steward.Errorf(steward.CodeInvalid, "event type %q: use 1 to %d letters, digits, '_', '-', '.'", q.Event, steward.MaxEventTypeLen)
	}
	return nil
}

// Stats implements steward.FleetAnalytics.
func (s *Service) Stats(ctx context.Context, tenantID string, q steward.FleetStatsQuery) (steward.FleetStats, error) {
	if err := check(q); err != nil {
		return steward.FleetStats{}, err
	}
	aggs, err := s.store.FleetAggregates(ctx, tenantID, q)
	if err != nil {
		return steward.FleetStats{}, steward.WrapError(steward.ErrorCode(err), err, "fleet statistics")
	}
	return Compute(q, aggs), nil
}

// Outliers implements steward.FleetAnalytics.
func (s *Service) Outliers(ctx context.Context, tenantID string, q steward.FleetStatsQuery, rule steward.OutlierRule) (steward.FleetOutliers, error) {
	if err := check(q); err != nil {
		return steward.FleetOutliers{}, err
	}
	if q.Metric == "" && q.Event == "" {
		return steward.FleetOutliers{}, steward.Errorf(steward.CodeInvalid, "outliers need a metric or an event type to compare")
	}
	if rule.MinDevices < 0 || rule.RateFactor < 0 || rule.RateExcess < 0 || rule.SpreadFactor < 0 {
		return steward.FleetOutliers{}, steward.Errorf(steward.CodeInvalid, "outlier thresholds must not be negative")
	}
	aggs, err := s.store.FleetAggregates(ctx, tenantID, q)
	if err != nil {
		return steward.FleetOutliers{}, steward.WrapError(steward.ErrorCode(err), err, "fleet outliers")
	}
	return FindOutliers(q, rule, aggs), nil
}

// days is the length of the query's range in days.
func days(q steward.FleetStatsQuery) float64 { return q.To.Sub(q.From).Hours() / 24 }

// groupAggs splits the aggregates by their value of the grouping, in the
// order of the values.
func groupAggs(groupBy string, aggs []steward.DeviceAggregate) (values []string, groups map[string][]steward.DeviceAggregate) {
	groups = map[string][]steward.DeviceAggregate{}
	for _, a := range aggs {
		v := a.GroupValue(groupBy)
		if _, ok := groups[v]; !ok {
			values = append(values, v)
		}
		groups[v] = append(groups[v], a)
	}
	slices.Sort(values)
	return values, groups
}

// Compute turns per-device aggregates into the statistics of each group,
// largest group first (then by value).
func Compute(q steward.FleetStatsQuery, aggs []steward.DeviceAggregate) steward.FleetStats {
	out := steward.FleetStats{FleetStatsQuery: q, Days: days(q), Devices: len(aggs), Groups: []steward.FleetGroup{}}
	values, groups := groupAggs(q.GroupBy, aggs)
	for _, v := range values {
		out.Groups = append(out.Groups, group(q, out.Days, v, groups[v]))
	}
	slices.SortStableFunc(out.Groups, func(a, b steward.FleetGroup) int { return cmp.Compare(b.Devices, a.Devices) })
	return out
}

// group computes one group's statistics.
func group(q steward.FleetStatsQuery, days float64, value string, aggs []steward.DeviceAggregate) steward.FleetGroup {
	g := steward.FleetGroup{Value: value, Devices: len(aggs)}
	for _, a := range aggs {
		if a.Online {
			g.Online++
		}
	}
	if g.Devices > 0 {
		g.OnlineShare = float64(g.Online) / float64(g.Devices)
	}
	if q.Metric != "" {
		means := deviceMeans(aggs)
		ms := &steward.MetricStats{Devices: len(means)}
		if len(means) > 0 {
			slices.Sort(means)
			ms.Mean, ms.P50, ms.P95 = Mean(means), Percentile(means, 50), Percentile(means, 95)
		}
		g.Metric = ms
	}
	if q.Event != "" {
		var n int64
		for _, a := range aggs {
			n += a.Events
		}
		g.Event = &steward.EventStats{Events: n, PerDeviceDay: Rate(n, len(aggs), days)}
	}
	return g
}

// deviceMeans returns the metric means of the devices that reported it.
func deviceMeans(aggs []steward.DeviceAggregate) []float64 {
	out := make([]float64, 0, len(aggs))
	for _, a := range aggs {
		if a.Samples > 0 {
			out = append(out, a.Mean)
		}
	}
	return out
}

// withDefaults fills in a rule's zero fields.
func withDefaults(r steward.OutlierRule) steward.OutlierRule {
	if r.MinDevices == 0 {
		r.MinDevices = DefaultMinDevices
	}
	if r.RateFactor == 0 {
		r.RateFactor = DefaultRateFactor
	}
	if r.RateExcess == 0 {
		r.RateExcess = DefaultRateExcess
	}
	if r.SpreadFactor == 0 {
		r.SpreadFactor = DefaultSpreadFactor
	}
	return r
}

// FindOutliers compares each group with the rest of the scope (every other
// device) and returns the groups that differ beyond the rule:
//
//   - events: the group's events per device-day are at least RateFactor
//     times the rest's and at least RateExcess more (only more events is
//     an anomaly);
//   - metric: the mean of the group's device means lies farther than
//     SpreadFactor × spread from the median of the rest's device means,
//     above or below, where spread is the rest's median absolute
//     deviation scaled by 1.4826 (so that it estimates the standard
//     deviation of normally distributed values while ignoring outliers).
//
// A group, or a rest, of fewer than MinDevices devices (for a metric:
// devices that reported it) is not compared; nor, for a metric, is a
// group at least as large as its rest (the rule is two-sided: the larger
// side is the fleet, not a cohort). Event outliers come first,
// then metric outliers, each most striking first.
func FindOutliers(q steward.FleetStatsQuery, rule steward.OutlierRule, aggs []steward.DeviceAggregate) steward.FleetOutliers {
	rule = withDefaults(rule)
	out := steward.FleetOutliers{FleetStatsQuery: q, Rule: rule, Devices: len(aggs), Outliers: []steward.FleetOutlier{}}
	d := days(q)
	values, groups := groupAggs(q.GroupBy, aggs)
	type scored struct {
		o     steward.FleetOutlier
		score float64
	}
	var events, metrics []scored
	for _, v := range values {
		in := groups[v]
		rest := make([]steward.DeviceAggregate, 0, len(aggs)-len(in))
		for _, w := range values {
			if w != v {
				rest = append(rest, groups[w]...)
			}
		}
		if q.Event != "" {
			if o, ok := eventOutlier(q, rule, d, v, in, rest); ok {
				events = append(events, scored{o, o.Observed - o.Rest})
			}
		}
		if q.Metric != "" {
			if o, ok := metricOutlier(q, rule, v, in, rest); ok {
				metrics = append(metrics, scored{o, math.Abs(o.Observed-o.Rest) / o.Spread})
			}
		}
	}
	for _, l := range [][]scored{events, metrics} {
		slices.SortStableFunc(l, func(a, b scored) int { return cmp.Compare(b.score, a.score) })
		for _, s := range l {
			out.Outliers = append(out.Outliers, s.o)
		}
	}
	return out
}

// eventOutlier applies the event rule to one group.
func eventOutlier(q steward.FleetStatsQuery, rule steward.OutlierRule, days float64, value string, in, rest []steward.DeviceAggregate) (steward.FleetOutlier, bool) {
	if len(in) < rule.MinDevices || len(rest) < rule.MinDevices {
		return steward.FleetOutlier{}, false
	}
	sum := func(l []steward.DeviceAggregate) (n int64) {
		for _, a := range l {
			n += a.Events
		}
		return n
	}
	rate, restRate := Rate(sum(in), len(in), days), Rate(sum(rest), len(rest), days)
	if rate < rule.RateFactor*restRate || rate-restRate < rule.RateExcess {
		return steward.FleetOutlier{}, false
	}
	o := steward.FleetOutlier{GroupBy: q.GroupBy, Value: value, Kind: steward.OutlierEvent,
		Devices: len(in), RestDevices: len(rest), Observed: rate, Rest: restRate}
	o.Evidence = EventEvidence(q.GroupBy, value, q.Event, rate, restRate, len(in))
	return o, true
}

// metricOutlier applies the metric rule to one group.
func metricOutlier(q steward.FleetStatsQuery, rule steward.OutlierRule, value string, in, rest []steward.DeviceAggregate) (steward.FleetOutlier, bool) {
	means, restMeans := deviceMeans(in), deviceMeans(rest)
	// The rule is two-sided, so of two cohorts each would be the other's
	// outlier: only the smaller side, the cohort rather than the fleet,
	// can be one.
	if len(means) < rule.MinDevices || len(restMeans) < rule.MinDevices || len(means) >= len(restMeans) {
		return steward.FleetOutlier{}, false
	}
	slices.Sort(restMeans)
	mean, median := Mean(means), Percentile(restMeans, 50)
	spread := Spread(restMeans)
	diff := math.Abs(mean - median)
	// With no spread at all (every other device reports the same mean) any
	// difference would be infinitely many spreads away: it must at least
	// be a difference.
	if diff == 0 || diff <= rule.SpreadFactor*spread {
		return steward.FleetOutlier{}, false
	}
	o := steward.FleetOutlier{GroupBy: q.GroupBy, Value: value, Kind: steward.OutlierMetric,
		Devices: len(means), RestDevices: len(restMeans), Observed: mean, Rest: median, Spread: spread}
	o.Evidence = MetricEvidence(q.GroupBy, value, q.Metric, mean, median, spread, len(means))
	return o, true
}

// Rate is events per device-day: events over devices × days (0 without
// devices or time).
func Rate(events int64, devices int, days float64) float64 {
	if devices == 0 || days <= 0 {
		return 0
	}
	return float64(events) / (float64(devices) * days)
}

// Mean is the arithmetic mean of xs (0 for none).
func Mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// Percentile returns the p-th percentile (0 to 100) of sorted xs,
// interpolating linearly between the closest ranks (Hyndman and Fan's
// type 7, the default of NumPy, R and spreadsheets, so that the numbers
// match what operators compute elsewhere). It is written here because
// gonum's stat.Quantile offers only the empirical and type 4
// interpolations, and a dependency for ten lines is not worth it.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	h := (float64(n) - 1) * p / 100
	lo := int(math.Floor(h))
	if lo >= n-1 {
		return sorted[n-1]
	}
	return sorted[lo] + (h-float64(lo))*(sorted[lo+1]-sorted[lo])
}

// MADScale makes the median absolute deviation of normally distributed
// values an estimate of their standard deviation (1 / Φ⁻¹(3/4)).
const MADScale = 1.4826

// Spread is the MAD-based spread of sorted xs: MADScale times the median
// of the absolute deviations from their median.
func Spread(sorted []float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	m := Percentile(sorted, 50)
	dev := make([]float64, len(sorted))
	for i, x := range sorted {
		dev[i] = math.Abs(x - m)
	}
	slices.Sort(dev)
	return MADScale * Percentile(dev, 50)
}

// EventEvidence says an event outlier in a sentence, e.g. "firmware 2.1.0:
// 4.8 reboots per device-day against 0.3 for the rest of the fleet, 1,200
// devices".
func EventEvidence(groupBy, value, event string, rate, rest float64, devices int) string {
	return groupBy + " " + show(value) + ": " + Num(rate) + " " + plural(event) + " per device-day against " +
		Num(rest) + " for the rest of the fleet, " + Count(devices) + " devices"
}

// MetricEvidence says a metric outlier in a sentence, e.g. "model gw-200:
// cpu mean 81.5 against a median of 35 for the rest of the fleet (spread
// 2.1), 25 devices".
func MetricEvidence(groupBy, value, metric string, mean, median, spread float64, devices int) string {
	return groupBy + " " + show(value) + ": " + metric + " mean " + Num(mean) + " against a median of " + Num(median) +
		" for the rest of the fleet (spread " + Num(spread) + "), " + Count(devices) + " devices"
}

// show names a group value in a sentence.
func show(v string) string {
	if v == "" {
		return "(none)"
	}
	return v
}

// plural names many events of a type: "reboot" → "reboots", "crash" →
// "crashes".
func plural(t string) string {
	for _, suf := range []string{"s", "x", "z", "ch", "sh"} {
		if strings.HasSuffix(t, suf) {
			return t + "es"
		}
	}
	return t + "s"
}
