package metrics

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward"
)

// driftCollector reports the device twins of each tenant, and how many of
// them are drifted, from the counts of the last drift check (which counts
// in the store once per run, so scrapes cost nothing).
type driftCollector struct {
	counts       func() []steward.DriftCount
	twins, drift *prometheus.Desc
}

// WatchDrift registers steward_twin_devices{tenant} and
// steward_twin_drifted_devices{tenant}, read from counts at each scrape.
func (m *Metrics) WatchDrift(counts func() []steward.DriftCount) error {
	c := &driftCollector{counts: counts,
		twins: prometheus.NewDesc(namespace+"_twin_devices", "Devices with a configuration twin, by tenant (as of the last drift check).",
			[]string{"tenant"}, nil),
		drift: prometheus.NewDesc(namespace+"_twin_drifted_devices", "Devices whose reported configuration has differed from the desired one beyond the grace period, by tenant (as of the last drift check).",
			[]string{"tenant"}, nil)}
	if err := m.reg.Register(c); err != nil {
		return fmt.Errorf("metrics: register twin drift: %w", err)
	}
	return nil
}

// Describe implements prometheus.Collector.
func (c *driftCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.twins; ch <- c.drift }

// Collect implements prometheus.Collector.
func (c *driftCollector) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.counts() {
		ch <- prometheus.MustNewConstMetric(c.twins, prometheus.GaugeValue, float64(n.Twins), n.TenantID)
		ch <- prometheus.MustNewConstMetric(c.drift, prometheus.GaugeValue, float64(n.Drifted), n.TenantID)
	}
}
