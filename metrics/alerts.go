package metrics

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward"
)

// alertsCollector reports the alerts of all tenants by state and severity
// from one grouped count in the store, cached for ttl as the fleet
// statistics are, so that scrapes never load the store more than once per ttl.
type alertsCollector struct {
	store steward.Store
	clock steward.Clock
	ttl   time.Duration
	log   *slog.Logger
	desc  *prometheus.Desc

	mu      sync.Mutex
	fetched time.Time
	counts  map[[2]string]int
}

// WatchAlerts reports steward_alerts{state,severity} from the store.
func (m *Metrics) WatchAlerts(store steward.Store) error {
	c := &alertsCollector{store: store, clock: m.cfg.Clock, ttl: m.cfg.FleetTTL, log: m.cfg.Logger,
		desc: prometheus.NewDesc(namespace+"_alerts", "Alerts of all tenants, by state and severity (cached up to 15 s).",
			[]string{"state", "severity"}, nil)}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register alerts: %w", err)
	}
	return nil
}

// Describe implements prometheus.Collector.
func (c *alertsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector: every state and severity is
// reported, 0 where there are none, so that alerting on the series works
// from the first scrape.
func (c *alertsCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.clock.Now()
	if c.fetched.IsZero() || now.Sub(c.fetched) >= c.ttl || now.Before(c.fetched) {
		ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
		counts, err := c.store.CountAlerts(ctx)
		cancel()
		switch {
		case err == nil:
			c.counts, c.fetched = map[[2]string]int{}, now
			for _, n := range counts {
				c.counts[[2]string{string(n.State), string(n.Severity)}] += n.Count
			}
		case c.fetched.IsZero():
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		default:
			c.log.Warn("alert counts: serving the last counts", "counted_at", c.fetched, "err", err)
		}
	}
	for _, st := range steward.AlertStates {
		for _, sev := range steward.AlertSeverities {
			ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(c.counts[[2]string{string(st), string(sev)}]), string(st), string(sev))
		}
	}
}
