package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// fleetValues encodes a fleet analytics query; zero times are left to the
// server (to: now, from: 24 hours before to).
func fleetValues(q steward.FleetStatsQuery) url.Values {
	v := url.Values{}
	v.Set("group_by", q.GroupBy)
	for k, s := range map[string]string{"q": q.Query, "metric": q.Metric, "event": q.Event} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	return v
}

// FleetStats returns statistics per cohort of the devices in q's scope
// (GET /api/v1/fleet/stats).
func (c *Client) FleetStats(ctx context.Context, q steward.FleetStatsQuery) (steward.FleetStats, error) {
	var out steward.FleetStats
	err := c.do(ctx, http.MethodGet, "/api/v1/fleet/stats", fleetValues(q), nil, &out)
	return out, err
}

// FleetOutliers returns the cohorts that stand out from the rest of q's
// scope (GET /api/v1/fleet/outliers); minDevices 0 means the server's
// default (20).
func (c *Client) FleetOutliers(ctx context.Context, q steward.FleetStatsQuery, minDevices int) (steward.FleetOutliers, error) {
	v := fleetValues(q)
	if minDevices != 0 {
		v.Set("min_devices", strconv.Itoa(minDevices))
	}
	var out steward.FleetOutliers
	err := c.do(ctx, http.MethodGet, "/api/v1/fleet/outliers", v, nil, &out)
	return out, err
}
