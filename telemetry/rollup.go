package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// RollupConfig configures the rollup job.
type RollupConfig struct {
	Store  steward.Store
	Clock  steward.Clock
	Logger *slog.Logger
	// Policy gives the acceptance window: how late a sample may come.
	Policy Policy
	// Every is how often the job runs (default 1 minute).
	Every time.Duration
	// Chunk is the most time one transaction rolls up (default 10
	// minutes), so that catching up holds the writer in short turns.
	Chunk time.Duration
	// SweepEvery is how often the job recomputes the whole acceptance
	// window (default 24 hours; negative: only when the node starts).
	SweepEvery time.Duration
}

// Rollup is the job that keeps the minute and hour rollups of telemetry:
// every minute it rolls up the minutes closed since the stored watermark,
// and recomputes the buckets that late samples changed.
//
// Which buckets late samples changed is known in memory, per node: the
// intake tells Note the oldest sample time of each batch it committed, and
// the next run recomputes from there. That costs nothing when samples come
// on time, and each node notes its own writes, so it works in a cluster.
// What memory loses is a crash: a node that acknowledged late samples and
// died before its next run. So the job also sweeps the whole acceptance
// window (Policy.MaxAge), once when it starts and then every SweepEvery:
// no sample older than that is accepted, so no older bucket can have
// changed, and one read of a week of samples a day is cheap next to
// writing them. A shorter look-back on every run would cost as much per
// minute and still miss what a crashed node wrote earlier.
//
// Buckets are recomputed whole from raw samples and upserted (see
// steward.Store.RollupSamples), so a run is idempotent and two nodes may
// run at once. The job never recomputes a minute older than the acceptance
// window (less rollupSlack) that it already rolled up: the retention job
// may have deleted some of that minute's raw samples.
type Rollup struct {
	cfg   RollupConfig
	runMu sync.Mutex // one run at a time; guards lastSweep
	// lastSweep is when the last sweep of the window finished.
	lastSweep time.Time

	mu    sync.Mutex
	dirty time.Time // the oldest sample written since the last run took it
}

// NewRollup returns the rollup job; start it with Run.
func NewRollup(cfg RollupConfig) *Rollup {
	if cfg.Every <= 0 {
		cfg.Every = time.Minute
	}
	if cfg.Chunk < time.Minute {
		cfg.Chunk = 10 * time.Minute
	}
	cfg.Chunk = cfg.Chunk.Truncate(time.Minute)
	if cfg.SweepEvery == 0 {
		cfg.SweepEvery = 24 * time.Hour
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	return &Rollup{cfg: cfg}
}

// Note records that a sample at at was committed. It must be called after
// the commit: a run takes the notes before it reads the samples, so a
// sample noted in time is read, and one noted too late for a run is left
// for the next.
func (r *Rollup) Note(at time.Time) {
	r.mu.Lock()
	if r.dirty.IsZero() || at.Before(r.dirty) {
		r.dirty = at
	}
	r.mu.Unlock()
}

// take returns and clears the oldest noted time.
func (r *Rollup) take() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.dirty
	r.dirty = time.Time{}
	return d
}

// Run rolls up once at once and then every Every, until ctx is done.
func (r *Rollup) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Every)
	defer t.Stop()
	for {
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("telemetry rollup", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// RunOnce rolls up what is due now: the closed minutes since the
// watermark, the buckets of late samples noted since the last run and, when
// a sweep is due, the whole acceptance window.
func (r *Rollup) RunOnce(ctx context.Context) error {
	r.runMu.Lock()
	defer r.runMu.Unlock()
	now := r.cfg.Clock.Now().UTC()
	end := now.Truncate(time.Minute) // minutes before end are closed
	horizon := r.cfg.Policy.horizon(now)
	dirty := r.take()
	wm, err := r.cfg.Store.RollupWatermark(ctx)
	if err != nil {
		r.renote(dirty)
		return err
	}
	// Minutes at or after the watermark were never rolled up: their raw
	// samples are all there (the retention job keeps them), however old.
	floor := horizon
	if !wm.IsZero() && wm.Before(floor) {
		floor = wm
	}
	start := wm
	if start.IsZero() {
		start = horizon
	}
	sweep := r.lastSweep.IsZero() || r.cfg.SweepEvery > 0 && now.Sub(r.lastSweep) >= r.cfg.SweepEvery
	if sweep && horizon.Before(start) {
		start = horizon
	}
	if !dirty.IsZero() && dirty.Truncate(time.Minute).Before(start) {
		start = dirty.Truncate(time.Minute)
	}
	if start.Before(floor) {
		r.cfg.Logger.Warn("telemetry rollup: late samples older than the window not recomputed", "oldest", start, "from", floor)
		start = floor
	}
	for from := start; from.Before(end); {
		to := from.Add(r.cfg.Chunk)
		if to.After(end) {
			to = end
		}
		if err := r.cfg.Store.RollupSamples(ctx, from, to); err != nil {
			r.renote(from) // the next run starts here again
			return err
		}
		from = to
	}
	if sweep {
		r.lastSweep = now
	}
	return nil
}

// renote puts back a time a failed run did not roll up.
func (r *Rollup) renote(at time.Time) {
	if !at.IsZero() {
		r.Note(at)
	}
}
