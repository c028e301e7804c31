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

// fleetTimeout bounds the store queries of one refresh.
const fleetTimeout = 10 * time.Second

// fleetCollector reports the fleet from the store: devices by tenant and
// state, and online devices by tenant. The counts are cached for ttl, so
// that however often and by however many Prometheus servers a node is
// scraped, the store is asked at most once per ttl.
type fleetCollector struct {
	store steward.Store
	clock steward.Clock
	ttl   time.Duration
	log   *slog.Logger

	devices *prometheus.Desc
	online  *prometheus.Desc

	mu      sync.Mutex // held across a refresh, so that scrapes at once share it
	fetched time.Time  // zero: nothing cached
	stats   []tenantStats
}

// tenantStats is one tenant's counts.
type tenantStats struct {
	tenant  string
	byState map[steward.State]int
	online  int
}

func newFleetCollector(store steward.Store, clock steward.Clock, ttl time.Duration, log *slog.Logger) *fleetCollector {
	return &fleetCollector{
		store: store, clock: clock, ttl: ttl, log: log,
		devices: prometheus.NewDesc(namespace+"_devices", "Devices in the registry, by tenant and lifecycle state (cached up to 15 s).",
			[]string{"tenant", "state"}, nil),
		online: prometheus.NewDesc(namespace+"_devices_online", "Devices with a live MQTT session, by tenant, as the registry records presence (cached up to 15 s).",
			[]string{"tenant"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (f *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- f.devices
	ch <- f.online
}

// Collect implements prometheus.Collector. When the store fails, the last
// counts are served (stale but labelled as before) and the failure logged;
// with nothing cached, the failure goes to the handler, which logs and
// counts it and serves the other metrics.
func (f *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	if f.fetched.IsZero() || now.Sub(f.fetched) >= f.ttl || now.Before(f.fetched) {
		stats, err := f.count()
		switch {
		case err == nil:
			f.stats, f.fetched = stats, now
		case f.fetched.IsZero():
			ch <- prometheus.NewInvalidMetric(f.devices, err)
			return
		default:
			f.log.Warn("fleet statistics: serving the last counts", "counted_at", f.fetched, "err", err)
		}
	}
	for _, t := range f.stats {
		for _, st := range steward.States {
			ch <- prometheus.MustNewConstMetric(f.devices, prometheus.GaugeValue, float64(t.byState[st]), t.tenant, string(st))
		}
		ch <- prometheus.MustNewConstMetric(f.online, prometheus.GaugeValue, float64(t.online), t.tenant)
	}
}

// count asks the store: per tenant, one COUNT per state and one for online.
func (f *fleetCollector) count() ([]tenantStats, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fleetTimeout)
	defer cancel()
	tenants, err := f.store.ListTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	stats := make([]tenantStats, 0, len(tenants))
	for _, tn := range tenants {
		t := tenantStats{tenant: tn.ID, byState: make(map[steward.State]int, len(steward.States))}
		for _, st := range steward.States {
			n, err := f.store.CountDevices(ctx, tn.ID, steward.DeviceQuery{Query: "state = " + string(st)})
			if err != nil {
				return nil, fmt.Errorf("count %s devices of tenant %s: %w", st, tn.ID, err)
			}
			t.byState[st] = n
		}
		if t.online, err = f.store.CountDevices(ctx, tn.ID, steward.DeviceQuery{Query: "online"}); err != nil {
			return nil, fmt.Errorf("count online devices of tenant %s: %w", tn.ID, err)
		}
		stats = append(stats, t)
	}
	return stats, nil
}
