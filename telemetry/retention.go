package telemetry

import (
	"context"
	"log/slog"
	"time"

	"github.com/steward-iot/steward"
)

// RetentionConfig configures the retention job.
type RetentionConfig struct {
	Store  steward.Store
	Clock  steward.Clock
	Logger *slog.Logger
	// Policy says how long each kind of data is kept.
	Policy Policy
	// Every is how often the job runs (default 10 minutes).
	Every time.Duration
	// Chunk is the most rows one delete takes (default 5000), so that the
	// job never holds the writer long: on SQLite the telemetry writer
	// waits for it.
	Chunk int
}

// Pruned counts what one run of the retention job deleted: readings (a
// device's raw samples of one time) and rollup buckets.
type Pruned struct {
	Samples, Minutes, Hours, Days int
}

// Retention is the job that deletes telemetry past its retention period
// (see Policy), in chunks.
type Retention struct {
	cfg RetentionConfig
}

// NewRetention returns the retention job; start it with Run.
func NewRetention(cfg RetentionConfig) *Retention {
	if cfg.Every <= 0 {
		cfg.Every = 10 * time.Minute
	}
	if cfg.Chunk <= 0 {
		cfg.Chunk = 5000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	cfg.Policy = cfg.Policy.WithDefaults()
	return &Retention{cfg: cfg}
}

// Run prunes once at once and then every Every, until ctx is done.
func (j *Retention) Run(ctx context.Context) {
	t := time.NewTicker(j.cfg.Every)
	defer t.Stop()
	for {
		p, err := j.RunOnce(ctx)
		if err != nil && ctx.Err() == nil {
			j.cfg.Logger.Error("telemetry retention", "err", err)
		} else if p != (Pruned{}) {
			j.cfg.Logger.Info("telemetry retention", "samples", p.Samples, "minute_rollups", p.Minutes, "hour_rollups", p.Hours, "day_rollups", p.Days)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Cutoffs returns the times before which raw samples and minute, hour and
// day rollups are deleted at now, given the rollup watermark wm. Raw
// samples are kept until rolled up (a zero wm keeps them all) and for the
// acceptance window plus pruneSlack, since the rollup job recomputes the
// minutes of late samples from them; minute rollups for the window plus
// two hours, since hours are recomputed from them; hour rollups for the
// window plus two days, since days are recomputed from them.
func (j *Retention) Cutoffs(now, wm time.Time) (raw, minute, hour, day time.Time) {
	p := j.cfg.Policy
	raw = now.Add(-p.Raw)
	if keep := p.horizon(now).Add(rollupSlack - pruneSlack); keep.Before(raw) {
		raw = keep
	}
	if wm.Before(raw) {
		raw = wm
	}
	minute = now.Add(-p.Minute)
	if keep := p.horizon(now).Truncate(time.Hour).Add(-time.Hour); keep.Before(minute) {
		minute = keep
	}
	hour = now.Add(-p.Hour)
	if keep := p.horizon(now).Truncate(steward.RollupDay).Add(-steward.RollupDay); keep.Before(hour) {
		hour = keep
	}
	return raw, minute, hour, now.Add(-p.Day)
}

// RunOnce deletes everything past its period now, chunk by chunk.
func (j *Retention) RunOnce(ctx context.Context) (Pruned, error) {
	var p Pruned
	now := j.cfg.Clock.Now().UTC()
	wm, err := j.cfg.Store.RollupWatermark(ctx)
	if err != nil {
		return p, err
	}
	raw, minute, hour, day := j.Cutoffs(now, wm)
	if !raw.IsZero() {
		if p.Samples, err = j.drain(ctx, func() (int, error) {
			return j.cfg.Store.DeleteSamplesBefore(ctx, raw, j.cfg.Chunk)
		}); err != nil {
			return p, err
		}
	}
	if p.Minutes, err = j.drain(ctx, func() (int, error) {
		return j.cfg.Store.DeleteRollupsBefore(ctx, steward.RollupMinute, minute, j.cfg.Chunk)
	}); err != nil {
		return p, err
	}
	if p.Hours, err = j.drain(ctx, func() (int, error) {
		return j.cfg.Store.DeleteRollupsBefore(ctx, steward.RollupHour, hour, j.cfg.Chunk)
	}); err != nil {
		return p, err
	}
	p.Days, err = j.drain(ctx, func() (int, error) {
		return j.cfg.Store.DeleteRollupsBefore(ctx, steward.RollupDay, day, j.cfg.Chunk)
	})
	return p, err
}

// drain calls del until it deletes less than a chunk, and sums.
func (j *Retention) drain(ctx context.Context, del func() (int, error)) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := del()
		total += n
		if err != nil || n < j.cfg.Chunk {
			return total, err
		}
	}
}
