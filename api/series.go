package api

import (
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// Limits and defaults of GET /api/v1/devices/{id}/telemetry.
const (
	DefaultSeriesWindow = time.Hour
	DefaultSeriesPoints = 1000
	// MaxSeriesPoints stays under the stores' own cap (10000), so that
	// the one extra point asked for tells whether there are more.
	MaxSeriesPoints = 5000
	// autoRawSpan and autoMinuteSpan are the longest windows for which
	// resolution=auto picks raw samples and minute rollups.
	autoRawSpan    = 6 * time.Hour
	autoMinuteSpan = 7 * 24 * time.Hour
)

// metricPattern is what a device may name a metric (see package telemetry).
var metricPattern = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}$`)

// Series is the answer of GET /api/v1/devices/{id}/telemetry: one metric
// of a device over [from, to), oldest first.
type Series struct {
	DeviceID string `json:"device_id"`
	Metric   string `json:"metric"`
	// Resolution is raw, 1m or 1h: the one asked for, or the one auto chose.
	Resolution string        `json:"resolution"`
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Points     []SeriesPoint `json:"points"`
	// Truncated says the window holds more points than limit: ask again
	// from after the last one, or at a coarser resolution.
	Truncated bool `json:"truncated"`
}

// SeriesPoint is one sample ({at, value}) or one rollup bucket ({at, min,
// max, avg, count}, at its start).
type SeriesPoint struct {
	At    time.Time `json:"at"`
	Value *float64  `json:"value,omitempty"`
	Min   *float64  `json:"min,omitempty"`
	Max   *float64  `json:"max,omitempty"`
	Avg   *float64  `json:"avg,omitempty"`
	Count *int64    `json:"count,omitempty"`
}

// resolutionFor picks the resolution of a window: raw, 1m or 1h.
func resolutionFor(res string, span time.Duration) (string, error) {
	switch res {
	case "raw", "1m", "1h":
		return res, nil
	case "", "auto":
		switch {
		case span <= autoRawSpan:
			return "raw", nil
		case span <= autoMinuteSpan:
			return "1m", nil
		}
		return "1h", nil
	}
	return "", invalidf("resolution must be raw, 1m, 1h or auto, not %q", res)
}

func (s *Server) deviceTelemetry(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "metric", "from", "to", "resolution", "limit")
	if err != nil {
		return err
	}
	metric := q.Get("metric")
	if !metricPattern.MatchString(metric) {
		return invalidf("metric is required: 1 to 128 letters, digits, '_', '-' or '.'")
	}
	limit := DefaultSeriesPoints
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > MaxSeriesPoints {
			return invalidf("limit must be a whole number from 1 to %d, not %q", MaxSeriesPoints, v)
		}
	}
	from, err := timeParam(q, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(q, "to")
	if err != nil {
		return err
	}
	if to.IsZero() {
		to = s.clock.Now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-DefaultSeriesWindow)
	}
	if !from.Before(to) {
		return invalidf("from must be before to")
	}
	res, err := resolutionFor(q.Get("resolution"), to.Sub(from))
	if err != nil {
		return err
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	out := Series{DeviceID: d.ID, Metric: metric, Resolution: res, From: from, To: to, Points: []SeriesPoint{}}
	// One more than limit tells whether there are more.
	if res == "raw" {
		samples, err := s.cfg.Store.ListSamples(r.Context(), p.tenantID, d.ID, metric, from, to, limit+1)
		if err != nil {
			return err
		}
		for _, sm := range samples {
			out.Points = append(out.Points, SeriesPoint{At: sm.At, Value: &sm.Value})
		}
	} else {
		width := steward.RollupMinute
		if res == "1h" {
			width = steward.RollupHour
		}
		// The bucket that from falls in counts: it holds samples of the window.
		rollups, err := s.cfg.Store.ListRollups(r.Context(), p.tenantID, d.ID, metric, width, from.Truncate(width), to, limit+1)
		if err != nil {
			return err
		}
		for _, ru := range rollups {
			avg := ru.Avg()
			out.Points = append(out.Points, SeriesPoint{At: ru.At, Min: &ru.Min, Max: &ru.Max, Avg: &avg, Count: &ru.Count})
		}
	}
	if len(out.Points) > limit {
		out.Points, out.Truncated = out.Points[:limit], true
	}
	return writeJSON(w, http.StatusOK, out)
}
