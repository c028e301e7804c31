package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Telemetry counts what the telemetry writer commits. It implements
// telemetry.Metrics.
type Telemetry struct {
	samples  prometheus.Counter
	failures prometheus.Counter
	dropped  *prometheus.CounterVec
	// The dropped counter of each reason, resolved once: the intake's
	// hot path does no label lookup.
	droppedWindow, droppedSchema prometheus.Counter
	commit                       prometheus.Histogram
	batchSizes                   prometheus.Histogram
}

func newTelemetry() *Telemetry {
	return (&Telemetry{
		samples: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "telemetry", Name: "samples_written_total",
			Help: "Telemetry samples committed to the store.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "telemetry", Name: "batch_failures_total",
			Help: "Telemetry batches the store did not commit (their messages are not acknowledged and are sent again).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "telemetry", Name: "samples_dropped_total",
			Help: "Telemetry samples dropped, by reason: window (outside the acceptance window) or schema (a metric the device model's telemetry schema does not allow); the rest of their message is kept.",
		}, []string{"reason"}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "telemetry", Name: "batch_commit_seconds",
			Help: "Time to write and commit one telemetry batch.",
			// 0.25 ms to 4 s: an SQLite commit of one sample to a large
			// batch on a slow PostgreSQL.
			Buckets: prometheus.ExponentialBuckets(0.00025, 2, 15),
		}),
		batchSizes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: namespace, Subsystem: "telemetry", Name: "batch_samples",
			Help:    "Samples in each committed telemetry batch.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000},
		}),
	}).withDropReasons()
}

// withDropReasons resolves the dropped counter of each reason.
func (t *Telemetry) withDropReasons() *Telemetry {
	t.droppedWindow = t.dropped.WithLabelValues("window")
	t.droppedSchema = t.dropped.WithLabelValues("schema")
	return t
}

func (t *Telemetry) collectors() []prometheus.Collector {
	return []prometheus.Collector{t.samples, t.failures, t.dropped, t.commit, t.batchSizes}
}

// BatchWritten counts a committed batch.
func (t *Telemetry) BatchWritten(samples int, took time.Duration) {
	t.samples.Add(float64(samples))
	t.commit.Observe(took.Seconds())
	t.batchSizes.Observe(float64(samples))
}

// BatchFailed counts a batch the store did not commit.
func (t *Telemetry) BatchFailed(int) { t.failures.Inc() }

// SamplesDropped counts dropped samples by reason ("window" or "schema",
// telemetry.DropWindow and telemetry.DropSchema; another reason is counted
// under its own label).
func (t *Telemetry) SamplesDropped(reason string, n int) {
	switch reason {
	case "window":
		t.droppedWindow.Add(float64(n))
	case "schema":
		t.droppedSchema.Add(float64(n))
	default:
		t.dropped.WithLabelValues(reason).Add(float64(n))
	}
}
