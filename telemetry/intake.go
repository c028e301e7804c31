// Package telemetry takes device telemetry from the bus into the store:
// payloads are validated, samples are written in batches with group commit,
// and each message is acknowledged only once its batch is durable.
package telemetry

import (
	"context"
	"log/slog"
	"sync"
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
}

// noMetrics is the Metrics of an intake configured without any.
type noMetrics struct{}

func (noMetrics) BatchWritten(int, time.Duration) {}
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
	in := &Intake{cfg: cfg, queue: make(chan pending, cfg.QueueSize), done: make(chan struct{}), touched: map[string]time.Time{}}
	bus.HandleInbound(steward.ChannelTelemetry, in.Handle)
	return in
}

// Handle takes one telemetry message. A malformed payload is refused at
// once; a good one is acknowledged when its batch has committed.
func (in *Intake) Handle(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	samples, err := Decode(m.Payload, m.TenantID, m.DeviceID, in.cfg.Clock.Now())
	if err != nil {
		ack(err)
		return
	}
	select {
	case in.queue <- pending{samples: samples, ack: ack}:
	case <-in.done:
		ack(steward.Errorf(steward.CodeUnavailable, "telemetry intake is shutting down"))
	case <-ctx.Done():
		ack(steward.WrapError(steward.CodeUnavailable, ctx.Err(), "telemetry intake is busy"))
	}
}

// QueueDepth is how many messages wait for the writer.
func (in *Intake) QueueDepth() int { return len(in.queue) }

// touch records that the devices of a committed batch were heard from,
// each at most once per TouchEvery, so that last-seen stays current without
// a write per message. Only Run's goroutine calls it.
func (in *Intake) touch(batch []pending) {
	now := in.cfg.Clock.Now()
	var seen []steward.DeviceSeen
	for _, p := range batch {
		s := p.samples[0] // every message has at least one sample
		key := s.TenantID + "/" + s.DeviceID
		if last, ok := in.touched[key]; ok && now.Sub(last) < in.cfg.TouchEvery {
			continue
		}
		in.touched[key] = now
		seen = append(seen, steward.DeviceSeen{TenantID: s.TenantID, DeviceID: s.DeviceID, At: now})
	}
	if len(seen) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := in.cfg.Store.TouchDevices(ctx, seen); err != nil {
		in.cfg.Logger.Warn("record last seen", "devices", len(seen), "err", err)
	}
}

// Run writes batches until ctx is done, then drains what is queued.
func (in *Intake) Run(ctx context.Context) {
	defer in.once.Do(func() { close(in.done) })
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
