// Package metrics is a node's Prometheus instrumentation: one registry per
// node (never the global one), the definitions of Steward's metrics, and the
// /metrics handler. The instrumented packages do not import Prometheus: the
// broker and the telemetry writer take small interfaces of their own
// (mqtt.Metrics, telemetry.Metrics), which MQTT and Telemetry implement with
// label values resolved once, so that counting a message allocates nothing.
// Gauges whose truth lives elsewhere (sessions, queue depth, the fleet) are
// read at scrape time instead of being kept up to date.
//
// docs/operations.md lists every metric.
package metrics

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/steward-iot/steward"
)

// namespace prefixes every Steward metric.
const namespace = "steward"

// Config configures a node's metrics.
type Config struct {
	// Clock dates the fleet statistics' cache (default steward.SystemClock).
	Clock steward.Clock
	// Logger receives collection errors (default: discarded).
	Logger *slog.Logger
	// FleetTTL is how long the fleet statistics are served from cache
	// before the store is asked again (default DefaultFleetTTL).
	FleetTTL time.Duration
}

// DefaultFleetTTL keeps scrapes cheap: the fleet statistics cost a few
// COUNT queries per tenant, asked at most this often.
const DefaultFleetTTL = 15 * time.Second

// Metrics is a node's registry and the collectors it serves.
type Metrics struct {
	reg   *prometheus.Registry
	cfg   Config
	mqtt  *MQTT
	telem *Telemetry
	est   *prometheus.CounterVec
	// enroll and reenroll are est's counters by outcome, resolved at once
	// so that every outcome shows (as 0) from the first scrape.
	enroll, reenroll outcomes
}

// New makes a registry with the Go runtime and process collectors and
// Steward's own metrics.
func New(cfg Config) (*Metrics, error) {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.FleetTTL <= 0 {
		cfg.FleetTTL = DefaultFleetTTL
	}
	m := &Metrics{
		reg:   prometheus.NewRegistry(),
		cfg:   cfg,
		mqtt:  newMQTT(),
		telem: newTelemetry(),
		est: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "est", Name: "enrollments_total",
			Help: "EST enrollment requests decided by the enroller, by operation (simpleenroll, simplereenroll) and outcome (ok, or the error code).",
		}, []string{"operation", "outcome"}),
	}
	m.enroll, m.reenroll = resolveOutcomes(m.est, "simpleenroll"), resolveOutcomes(m.est, "simplereenroll")
	cs := []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.est,
	}
	cs = append(cs, m.mqtt.collectors()...)
	cs = append(cs, m.telem.collectors()...)
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register: %w", err)
		}
	}
	return m, nil
}

// Registry is the node's registry, for collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format. A
// collector that fails is logged and left out of the answer rather than
// failing the whole scrape.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(m.cfg.Logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg, // promhttp_metric_handler_errors_total
	})
}

// MQTT is the broker's instrumentation (it implements mqtt.Metrics).
func (m *Metrics) MQTT() *MQTT { return m.mqtt }

// Telemetry is the telemetry writer's instrumentation (it implements
// telemetry.Metrics).
func (m *Metrics) Telemetry() *Telemetry { return m.telem }

// WatchSessions registers the gauge of connected MQTT sessions, read from
// sessions at each scrape.
func (m *Metrics) WatchSessions(sessions func() int) error {
	return m.gaugeFunc("mqtt", "sessions_connected", "MQTT sessions connected to this node.", sessions)
}

// WatchIntakeQueue registers the gauge of telemetry messages waiting for
// the writer, read from depth at each scrape.
func (m *Metrics) WatchIntakeQueue(depth func() int) error {
	return m.gaugeFunc("telemetry", "queue_depth", "Telemetry messages waiting for the batch writer.", depth)
}

func (m *Metrics) gaugeFunc(subsystem, name, help string, f func() int) error {
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help},
		func() float64 { return float64(f()) })
	if err := m.reg.Register(g); err != nil {
		return fmt.Errorf("metrics: register %s_%s: %w", subsystem, name, err)
	}
	return nil
}

// WatchFleet registers the fleet statistics (devices by tenant and state,
// online devices by tenant), counted in store and cached for FleetTTL.
func (m *Metrics) WatchFleet(store steward.Store) error {
	if err := m.reg.Register(newFleetCollector(store, m.cfg.Clock, m.cfg.FleetTTL, m.cfg.Logger)); err != nil {
		return fmt.Errorf("metrics: register fleet statistics: %w", err)
	}
	return nil
}
