package api

import (
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// Fleet analytics windows: the default when from is not given, and the
// longest one asked at once (the store reads every raw sample in it).
const (
	DefaultFleetWindow = 24 * time.Hour
	MaxFleetWindow     = 366 * 24 * time.Hour
)

// fleetQuery reads the parameters common to the fleet analytics routes.
func (s *Server) fleetQuery(q url.Values) (steward.FleetStatsQuery, error) {
	fq := steward.FleetStatsQuery{Query: q.Get("q"), GroupBy: q.Get("group_by"), Metric: q.Get("metric"), Event: q.Get("event")}
	if fq.GroupBy == "" {
		return fq, invalidf("group_by is required: firmware, model, site, state or labels.<key>")
	}
	if !steward.ValidFleetGroupBy(fq.GroupBy) {
		return fq, invalidf("group_by must be firmware, model, site, state or labels.<key>, not %q", fq.GroupBy)
	}
	if fq.Event != "" && !steward.ValidEventType(fq.Event) {
		return fq, invalidf("event must be 1 to %d letters, digits, '_', '-' or '.'", steward.MaxEventTypeLen)
	}
	var err error
	if fq.From, err = timeParam(q, "from"); err != nil {
		return fq, err
	}
	if fq.To, err = timeParam(q, "to"); err != nil {
		return fq, err
	}
	if fq.To.IsZero() {
		fq.To = s.clock.Now().UTC()
	}
	if fq.From.IsZero() {
		fq.From = fq.To.Add(-DefaultFleetWindow)
	}
	if !fq.From.Before(fq.To) {
		return fq, invalidf("from must be before to")
	}
	if fq.To.Sub(fq.From) > MaxFleetWindow {
		return fq, invalidf("the window from %s to %s is longer than 366 days", fq.From.Format(time.RFC3339), fq.To.Format(time.RFC3339))
	}
	return fq, nil
}

// analytics returns the fleet analytics service, or why there is none.
func (s *Server) analytics() (steward.FleetAnalytics, error) {
	if s.cfg.Analytics == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "fleet analytics is not enabled on this server")
	}
	return s.cfg.Analytics, nil
}

func (s *Server) fleetStats(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "group_by", "q", "metric", "event", "from", "to")
	if err != nil {
		return err
	}
	fq, err := s.fleetQuery(q)
	if err != nil {
		return err
	}
	if fq.Query, err = p.deviceQuery(fq.Query); err != nil { // the caller's devices only
		return err
	}
	a, err := s.analytics()
	if err != nil {
		return err
	}
	st, err := a.Stats(r.Context(), p.tenantID, fq)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, st)
}

func (s *Server) fleetOutliers(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "group_by", "q", "metric", "event", "from", "to", "min_devices")
	if err != nil {
		return err
	}
	fq, err := s.fleetQuery(q)
	if err != nil {
		return err
	}
	if fq.Query, err = p.deviceQuery(fq.Query); err != nil { // the caller's devices only
		return err
	}
	if fq.Metric == "" && fq.Event == "" {
		return invalidf("outliers need a metric or an event to compare")
	}
	var rule steward.OutlierRule
	if v := q.Get("min_devices"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000000 {
			return invalidf("min_devices must be a whole number from 1 to 1000000, not %q", v)
		}
		rule.MinDevices = n
	}
	a, err := s.analytics()
	if err != nil {
		return err
	}
	out, err := a.Outliers(r.Context(), p.tenantID, fq, rule)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}
