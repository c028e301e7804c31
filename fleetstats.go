package steward

import (
	"context"
	"strings"
	"time"
)

// FleetAnalytics answers questions about a tenant's fleet as a whole:
// statistics per cohort (devices grouped by firmware, model, …) and the
// cohorts that stand out from the rest of the fleet.
type FleetAnalytics interface {
	// Stats groups the devices in q's scope by q.GroupBy and reports each
	// group's size, online share and, when q names them, its metric
	// statistics and event rate over [q.From, q.To).
	Stats(ctx context.Context, tenantID string, q FleetStatsQuery) (FleetStats, error)
	// Outliers compares each group with the rest of the scope and returns
	// the groups that differ beyond rule's thresholds.
	Outliers(ctx context.Context, tenantID string, q FleetStatsQuery, rule OutlierRule) (FleetOutliers, error)
}

// MaxFleetLabelKeyLen bounds the label key of a labels.<key> grouping.
const MaxFleetLabelKeyLen = 64

// The device fields fleet analytics groups by, besides labels.<key>.
const (
	GroupByFirmware = "firmware"
	GroupByModel    = "model"
	GroupBySite     = "site"
	GroupByState    = "state"
)

// ValidFleetGroupBy reports whether g names a grouping: firmware, model,
// site, state, or labels.<key> with a key of 1 to 64 letters, digits, '_',
// '-' or '.'.
func ValidFleetGroupBy(g string) bool {
	switch g {
	case GroupByFirmware, GroupByModel, GroupBySite, GroupByState:
		return true
	}
	k, ok := strings.CutPrefix(g, "labels.")
	return ok && len(k) <= MaxFleetLabelKeyLen && ValidEventType(k)
}

// GroupValue returns a device aggregate's value of a grouping (see
// ValidFleetGroupBy); a missing label is "".
func (a *DeviceAggregate) GroupValue(groupBy string) string {
	switch groupBy {
	case GroupByFirmware:
		return a.Firmware
	case GroupByModel:
		return a.Model
	case GroupBySite:
		return a.Site
	case GroupByState:
		return string(a.State)
	}
	k, _ := strings.CutPrefix(groupBy, "labels.")
	return a.Labels[k]
}

// FleetStatsQuery asks for fleet statistics: the devices matching Query (a
// fleet query, docs/query.md; empty means all), grouped by GroupBy, with
// the mean of Metric's samples and the count of Event's events in
// [From, To). Metric and Event are optional.
type FleetStatsQuery struct {
	Query   string    `json:"query"`
	GroupBy string    `json:"group_by"`
	Metric  string    `json:"metric,omitempty"`
	Event   string    `json:"event,omitempty"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
}

// DeviceAggregate is one device of a fleet statistics scope with what the
// store summed up of it over the range: the fields it can be grouped by,
// whether it is online now, its samples of the metric (how many, their
// mean) and its events of the type.
type DeviceAggregate struct {
	DeviceID string
	Firmware string
	Model    string
	Site     string
	State    State
	Labels   map[string]string
	Online   bool
	Samples  int64   // samples of the metric in the range
	Mean     float64 // their mean; meaningless when Samples is 0
	Events   int64   // events of the type in the range
}

// FleetStats is the answer to a FleetStatsQuery: one FleetGroup per value
// of the grouping, largest group first.
type FleetStats struct {
	FleetStatsQuery
	// Days is the length of the range in days, the denominator of the
	// event rates.
	Days    float64      `json:"days"`
	Devices int          `json:"devices"` // in scope
	Groups  []FleetGroup `json:"groups"`
}

// FleetGroup is one cohort's statistics.
type FleetGroup struct {
	Value       string  `json:"value"` // the grouping's value; "" for devices without it
	Devices     int     `json:"devices"`
	Online      int     `json:"online"`
	OnlineShare float64 `json:"online_share"` // Online / Devices
	// Metric is there when the query names a metric.
	Metric *MetricStats `json:"metric,omitempty"`
	// Event is there when the query names an event type.
	Event *EventStats `json:"event,omitempty"`
}

// MetricStats summarises the per-device means of a metric over the range,
// of the devices that reported it (Devices of them).
type MetricStats struct {
	Devices int     `json:"devices"`
	Mean    float64 `json:"mean"`
	P50     float64 `json:"p50"`
	P95     float64 `json:"p95"`
}

// EventStats counts a cohort's events of a type over the range.
type EventStats struct {
	Events       int64   `json:"events"`
	PerDeviceDay float64 `json:"per_device_day"`
}

// OutlierRule sets when a cohort is an outlier; a zero field takes its
// default.
type OutlierRule struct {
	// MinDevices is the smallest cohort (and rest of the fleet) compared,
	// so that a handful of devices does not cry wolf. Default 20.
	MinDevices int `json:"min_devices"`
	// RateFactor and RateExcess flag an event rate at least RateFactor
	// times the rest's and at least RateExcess more per device-day.
	// Defaults 3 and 1.
	RateFactor float64 `json:"rate_factor"`
	RateExcess float64 `json:"rate_excess"`
	// SpreadFactor flags a metric mean farther from the rest's median than
	// SpreadFactor times the rest's MAD-based spread. Default 3.
	SpreadFactor float64 `json:"spread_factor"`
}

// The kinds of FleetOutlier.
const (
	OutlierEvent  = "event"
	OutlierMetric = "metric"
)

// FleetOutliers is the answer of FleetAnalytics.Outliers: the rule applied
// (with its defaults filled in) and the outliers found, most striking first.
type FleetOutliers struct {
	FleetStatsQuery
	Rule     OutlierRule    `json:"rule"`
	Devices  int            `json:"devices"` // in scope
	Outliers []FleetOutlier `json:"outliers"`
}

// FleetOutlier is a cohort that differs from the rest of the scope, with
// the numbers that show it and a sentence that says it.
type FleetOutlier struct {
	GroupBy string `json:"group_by"`
	Value   string `json:"value"`
	Kind    string `json:"kind"` // OutlierEvent or OutlierMetric
	// Devices and RestDevices are the cohort's and the rest's devices
	// compared (for a metric: those that reported it).
	Devices     int `json:"devices"`
	RestDevices int `json:"rest_devices"`
	// Observed is the cohort's events per device-day or metric mean; Rest
	// the rest's events per device-day or median of device means.
	Observed float64 `json:"observed"`
	Rest     float64 `json:"rest"`
	// Spread is the rest's MAD-based spread (metrics only).
	Spread   float64 `json:"spread,omitempty"`
	Evidence string  `json:"evidence"`
}
