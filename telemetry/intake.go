// Package telemetry takes device telemetry from the bus into the store:
// payloads are validated, samples are written in batches with group commit,
// and each message is acknowledged only once its batch is durable.
package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
)

// Config tunes the intake.
type Config struct {
	Store steward.Store
	Clock steward.Clock
	// BatchSize is the most samples one transaction writes (default 2000).
	BatchSize int
	// QueueSize is how many messages may wait for the writer; past it the
	// publisher blocks, which stalls that device's MQTT connection: back
	// pressure instead of unbounded memory (default 10000).
	QueueSize int
	// TouchEvery is how often, at most, a device's last-seen time is
	// written while it keeps sending (default 30s).
	TouchEvery time.Duration
	Logger     *slog.Logger
	// Metrics receives the writer's counts (default: none).
	Metrics Metrics
	// Policy is the acceptance window: samples outside it are dropped,
	// the rest of their message kept.
	Policy Policy
	// Rollup, when set, is told the oldest sample time of each committed
	// batch, so that late samples get their buckets recomputed.
	Rollup *Rollup
	// SchemaTTL is how long a tenant's telemetry schemas are cached
	// (default 30s): the longest a change made on another node takes to
	// apply here. ModelTTL is how long a device's model is cached (default
	// 30s). See the schemas type.
	SchemaTTL time.Duration
	ModelTTL  time.Duration
	// OnSamples, when set, sees the samples of each batch once they are
	// committed (the quarantine policy watches sec.config.changes in them):
	// what the intake refused or failed to store, and the device sends
	// again, is not seen twice. It is called on the writer's path and must
	// not block.
	OnSamples func(ctx context.Context, samples []steward.Sample)
}

// Metrics receives the telemetry writer's counts (package metrics
// implements it over Prometheus). It is called on the writer's goroutine
// once per batch and must not block.
type Metrics interface {
	// BatchWritten counts a committed batch: its samples and how long the
	// write took.
	BatchWritten(samples int, took time.Duration)
	// BatchFailed counts a batch that could not be written (its messages
	// are not acknowledged, so devices send them again).
	BatchFailed(samples int)
	// SamplesDropped counts samples dropped for a reason (DropWindow or
	// DropSchema); it is called on the publisher's goroutine.
	SamplesDropped(reason string, n int)
}

// Why samples are dropped: the values of the reason label of
// steward_telemetry_samples_dropped_total.
const (
	// DropWindow: outside the acceptance window (Config.Policy).
	DropWindow = "window"
	// DropSchema: a metric the telemetry schema of the device's model
	// does not allow.
	DropSchema = "schema"
)

// noMetrics is the Metrics of an intake configured without any.
type noMetrics struct{}

func (noMetrics) BatchWritten(int, time.Duration) {}
func (noMetrics) SamplesDropped(string, int)      {}
func (noMetrics) BatchFailed(int)                 {}

type pending struct {
	samples []steward.Sample
	ack     steward.Ack
}

// Intake is the telemetry writer.
type Intake struct {
	cfg   Config
	queue chan pending
	done  chan struct{}
	once  sync.Once
	// touched is when each device's last-seen time was last written.
	touched map[string]time.Time
	// toTouch holds the last-seen times not written yet, for touchLoop;
	// touchKick wakes it.
	touchMu       sync.Mutex
	toTouch       map[string]steward.DeviceSeen
	touchKick     chan struct{}
	dropped       atomic.Int64
	schemaDropped atomic.Int64
	schemas       *schemas
	// consentDropped and consents: see consent.go.
	consentDropped atomic.Int64
	consents       *consents
}

// New returns an intake and registers it for telemetry on bus. Start it
// with Run.
func New(cfg Config, bus steward.Bus) *Intake {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 2000
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 10000
	}
	if cfg.TouchEvery <= 0 {
		cfg.TouchEvery = 30 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = noMetrics{}
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	if cfg.SchemaTTL <= 0 {
		cfg.SchemaTTL = DefaultSchemaTTL
	}
	if cfg.ModelTTL <= 0 {
		cfg.ModelTTL = DefaultModelTTL
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	in := &Intake{cfg: cfg, queue: make(chan pending, cfg.QueueSize), done: make(chan struct{}), touched: map[string]time.Time{},
		toTouch: map[string]steward.DeviceSeen{}, touchKick: make(chan struct{}, 1),
		schemas: newSchemas(cfg.Store, cfg.Clock, cfg.SchemaTTL, cfg.ModelTTL), consents: newConsents(cfg.Store, cfg.Clock, cfg.SchemaTTL)}
	bus.HandleInbound(steward.ChannelTelemetry, in.Handle)
	return in
}

// Handle takes one telemetry message. A malformed payload is refused at
// once; a good one is acknowledged when its batch has committed. Samples
// outside the acceptance window (Config.Policy) are dropped and counted,
// not refused, and so are samples of metrics that the telemetry schema of
// the device's model does not allow, and every sample of a personal device
// whose person has not consented to telemetry: the rest is kept, and a
// message with nothing left is acknowledged at once, so the device does not
// send it again. When the schema or consent cannot be read the message is refused as
// unavailable (not acknowledged as stored), so the device sends it again.
func (in *Intake) Handle(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	now := in.cfg.Clock.Now()
	samples, err := Decode(m.Payload, m.TenantID, m.DeviceID, now)
	if err != nil {
		ack(err)
		return
	}
	kept := samples[:0]
	for _, sm := range samples {
		if in.cfg.Policy.Accepts(sm.At, now) {
			kept = append(kept, sm)
		}
	}
	if n := len(samples) - len(kept); n > 0 {
		in.dropped.Add(int64(n))
		in.cfg.Metrics.SamplesDropped(DropWindow, n)
		in.cfg.Logger.Debug("telemetry samples outside the acceptance window dropped",
			"tenant", m.TenantID, "device", m.DeviceID, "dropped", n, "kept", len(kept))
	}
	if len(kept) > 0 {
		allow, restricted, err := in.schemas.allowList(ctx, m.TenantID, m.DeviceID)
		if err != nil {
			in.cfg.Logger.Warn("read telemetry schema", "tenant", m.TenantID, "device", m.DeviceID, "err", err)
			ack(steward.WrapError(steward.CodeUnavailable, err, "telemetry schema not available"))
			return
		}
		if restricted {
			before := len(kept)
			allowed := kept[:0]
			for _, sm := range kept {
				if steward.MetricAllowed(allow, sm.Metric) {
					allowed = append(allowed, sm)
				}
			}
			kept = allowed
			if n := before - len(kept); n > 0 {
				in.schemaDropped.Add(int64(n))
				in.cfg.Metrics.SamplesDropped(DropSchema, n)
				in.cfg.Logger.Debug("telemetry samples not allowed by the model's schema dropped",
					"tenant", m.TenantID, "device", m.DeviceID, "dropped", n, "kept", len(kept))
			}
		}
	}
	if len(kept) > 0 {
		if kept, err = in.consentFilter(ctx, m, kept); err != nil {
			in.cfg.Logger.Warn("read telemetry consent", "tenant", m.TenantID, "device", m.DeviceID, "err", err)
			ack(steward.WrapError(steward.CodeUnavailable, err, "telemetry consent not available"))
			return
		}
	}
	if len(kept) == 0 {
		ack(nil)
		return
	}
	samples = kept
	select {
	case in.queue <- pending{samples: samples, ack: ack}:
	case <-in.done:
		ack(steward.Errorf(steward.CodeUnavailable, "telemetry intake is shutting down"))
	case <-ctx.Done():
		ack(steward.WrapError(steward.CodeUnavailable, ctx.Err(), "telemetry intake is busy"))
	}
}

// Dropped is how many samples were dropped for being outside the
// acceptance window since the intake started.
func (in *Intake) Dropped() int64 { return in.dropped.Load() }

// SchemaDropped is how many samples were dropped since the intake started
// because their device's telemetry schema does not allow their metric.
func (in *Intake) SchemaDropped() int64 { return in.schemaDropped.Load() }

// SchemasChanged makes the intake read a tenant's telemetry schemas again
// before it judges the next sample: the API calls it after a change, so
// that on this node the change applies at once (other nodes see it within
// Config.SchemaTTL).
func (in *Intake) SchemasChanged(tenantID string) { in.schemas.tenants.invalidate(tenantID) }

// QueueDepth is how many messages wait for the writer.
func (in *Intake) QueueDepth() int { return len(in.queue) }

// touch records that the devices of a committed batch were heard from,
// each at most once per TouchEvery, so that last-seen stays current without
// a write per message. It hands them to touchLoop rather than writing
// them: last-seen is in the devices table, whose writer may be busy for
// seconds (the rollup job), and the next batch must not wait for it. Only
// Run's goroutine calls it.
func (in *Intake) touch(batch []pending) {
	now := in.cfg.Clock.Now()
	var due bool
	for _, p := range batch {
		s := p.samples[0] // every message has at least one sample
		key := s.TenantID + "/" + s.DeviceID
		if last, ok := in.touched[key]; ok && now.Sub(last) < in.cfg.TouchEvery {
			continue
		}
		in.touched[key] = now
		if !due {
			in.touchMu.Lock()
			due = true
		}
		in.toTouch[key] = steward.DeviceSeen{TenantID: s.TenantID, DeviceID: s.DeviceID, At: now}
	}
	if !due {
		return
	}
	in.touchMu.Unlock()
	select {
	case in.touchKick <- struct{}{}:
	default: // already woken
	}
}

// touchLoop writes the last-seen times touch hands it, all those waiting
// in one call, until stop is closed; then it writes what is left.
func (in *Intake) touchLoop(stop <-chan struct{}) {
	write := func() {
		in.touchMu.Lock()
		seen := make([]steward.DeviceSeen, 0, len(in.toTouch))
		for _, d := range in.toTouch {
			seen = append(seen, d)
		}
		clear(in.toTouch)
		in.touchMu.Unlock()
		if len(seen) == 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := in.cfg.Store.TouchDevices(ctx, seen); err != nil {
			in.cfg.Logger.Warn("record last seen", "devices", len(seen), "err", err)
		}
	}
	for {
		select {
		case <-in.touchKick:
			write()
		case <-stop:
			write()
			return
		}
	}
}

// Run writes batches until ctx is done, then drains what is queued.
func (in *Intake) Run(ctx context.Context) {
	defer in.once.Do(func() { close(in.done) })
	stopTouch, touched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(touched)
		in.touchLoop(stopTouch)
	}()
	defer func() {
		close(stopTouch)
		<-touched
	}()
	batch := make([]pending, 0, 256)
	var n int
	flush := func() {
		if len(batch) == 0 {
			return
		}
		all := make([]steward.Sample, 0, n)
		for _, p := range batch {
			all = append(all, p.samples...)
		}
		// The write uses its own context: a shutdown must not abort a batch
		// whose messages are waiting for their acknowledgement.
		wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		// The latency is measured on the monotonic clock, not with Clock,
		// which tells the time of day (and SystemClock's UTC drops the
		// monotonic reading).
		start := time.Now()
		err := in.cfg.Store.WriteSamples(wctx, all)
		took := time.Since(start)
		cancel()
		if err != nil {
			in.cfg.Metrics.BatchFailed(len(all))
			in.cfg.Logger.Error("write telemetry batch", "samples", len(all), "err", err)
			err = steward.WrapError(steward.CodeUnavailable, err, "telemetry not stored")
		} else {
			in.cfg.Metrics.BatchWritten(len(all), took)
			// After the commit, never before: a rollup that takes this
			// note then reads the samples (see Rollup.Note).
			if in.cfg.Rollup != nil {
				in.cfg.Rollup.Note(oldest(all))
			}
			if in.cfg.OnSamples != nil {
				in.cfg.OnSamples(context.Background(), all)
			}
		}
		for _, p := range batch {
			p.ack(err)
		}
		if err == nil {
			in.touch(batch)
		}
		batch, n = batch[:0], 0
	}
	// take adds what is already queued to the batch, up to BatchSize.
	take := func() {
		for n < in.cfg.BatchSize {
			select {
			case p := <-in.queue:
				batch = append(batch, p)
				n += len(p.samples)
			default:
				return
			}
		}
	}
	// Group commit without a timer: a batch is whatever arrived while the
	// previous one was committing, so a lone message is written at once
	// and, under load, batches fill by themselves.
	for {
		select {
		case p := <-in.queue:
			batch = append(batch, p)
			n += len(p.samples)
			take()
			flush()
		case <-ctx.Done():
			for {
				take()
				if len(batch) == 0 {
					return
				}
				flush()
			}
		}
	}
}

// oldest returns the earliest time of samples (at least one).
func oldest(samples []steward.Sample) time.Time {
	t := samples[0].At
	for _, sm := range samples[1:] {
		if sm.At.Before(t) {
			t = sm.At
		}
	}
	return t
}
