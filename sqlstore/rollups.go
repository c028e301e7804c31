package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// slowRollup is how long a rollup transaction may take before it is logged
// at info rather than debug level, with the time of each step.
const slowRollup = 2 * time.Second

// MaxDeleteChunk is the most rows one call of DeleteSamplesBefore or
// DeleteRollupsBefore deletes: a bound on how long it holds the writer.
const MaxDeleteChunk = 100000

// rollupTable returns the table of a rollup resolution.
func rollupTable(resolution time.Duration) (string, error) {
	switch resolution {
	case steward.RollupMinute:
		return "samples_1m", nil
	case steward.RollupHour:
		return "samples_1h", nil
	case steward.RollupDay:
		return "samples_1d", nil
	}
	return "", invalid("rollup resolution %s: want 1m, 1h or 24h", resolution)
}

// addRollup adds to a bucket of table what a later part of it holds: the
// hour's minutes not counted in it yet.
func addRollup(table string) string {
	return ` ON CONFLICT (tenant_id, device_id, metric, at) DO UPDATE SET
	min_value = CASE WHEN excluded.min_value < ` + table + `.min_value THEN excluded.min_value ELSE ` + table + `.min_value END,
	max_value = CASE WHEN excluded.max_value > ` + table + `.max_value THEN excluded.max_value ELSE ` + table + `.max_value END,
	sum_value = ` + table + `.sum_value + excluded.sum_value, sample_count = ` + table + `.sample_count + excluded.sample_count`
}

// onRollup replaces a whole bucket: it is recomputed from all its inputs.
const onRollup = ` ON CONFLICT (tenant_id, device_id, metric, at) DO UPDATE SET
	min_value = excluded.min_value, max_value = excluded.max_value,
	sum_value = excluded.sum_value, sample_count = excluded.sample_count`

// RollupSamples implements steward.Store, in two parts.
//
//  1. One transaction, under the dialect's lock (PostgreSQL; SQLite's one
//     writer needs none), so that concurrent calls run one after the
//     other. The minutes of [from, to) at or after the watermark were never
//     rolled up, and samples holds nothing there (the move takes only what
//     is before the watermark it sets), so they are read from
//     samples_recent alone, in one range scan in time order, summed per
//     bucket in memory (sumRecentMinutes), and their sums added to their
//     hours' buckets. The minutes of [from, to) before the watermark (late
//     samples, a sweep) are recomputed from sampleRows, which also reads
//     the samples moved already, and their hours from all their minutes.
//     Days are recomputed from their hours only once closed — before the
//     watermark this call leaves — since a day's rollup reads the whole
//     day's hours (FleetAggregates reads day rollups only for days before
//     the watermark). Each statement reads the samples committed when it
//     starts, so the last bucket written is computed from the most samples.
//     The watermark moves to to.
//  2. Every reading of samples_recent before to is moved into samples (see
//     moveRecent), in transactions of at most SetMoveChunk readings.
//
// Summing on the read side instead, before the transaction, was measured
// and not kept: it held the writer 1–4 s less a minute, but read every
// page of the minute once more (the move reads them again into the
// writer's cache), and end to end it did no better (docs/benchmarks.md).
func (s *Store) RollupSamples(ctx context.Context, from, to time.Time) error {
	from, to = from.UTC(), to.UTC()
	if !from.Equal(from.Truncate(time.Minute)) || !to.Equal(to.Truncate(time.Minute)) {
		return invalid("rollup range must start and end on whole minutes")
	}
	if !from.Before(to) {
		return invalid("rollup range is empty: from must be before to")
	}
	if s.d.TimeBucket == nil {
		return steward.Errorf(steward.CodeInternal, "the %s dialect has no time buckets", s.d.Name)
	}
	began := time.Now()
	start, steps := began, make([]any, 0, 20)
	step := func(name string) {
		steps = append(steps, name, time.Since(start).Round(time.Millisecond))
		start = time.Now()
	}
	var wm time.Time
	err := s.InTx(ctx, func(st steward.Store) error {
		tx := st.(*Store)
		if s.d.LockRollups != "" {
			if _, err := tx.exec(ctx, s.d.LockRollups); err != nil {
				return s.fail(err, "roll up samples: lock")
			}
		}
		var err error
		if wm, err = tx.RollupWatermark(ctx); err != nil {
			return err
		}
		lateTo, newFrom := to, later(from, wm)
		if wm.Before(lateTo) {
			lateTo = wm
		}
		late := from.Before(lateTo)
		if late {
			rows, args := s.sampleRows(false, `r.at >= ? AND r.at < ?`, ts(from), ts(lateTo))
			if _, err := tx.exec(ctx, `INSERT INTO samples_1m (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
			SELECT tenant_id, device_id, metric, `+s.d.TimeBucket("at", time.Minute)+`, MIN(value), MAX(value), SUM(value), COUNT(*)
			FROM (`+rows+`) x GROUP BY 1, 2, 3, 4`+onRollup, args...); err != nil {
				return s.fail(err, "roll up late samples by minute")
			}
		}
		if newFrom.Before(to) {
			buckets, err := tx.sumRecentMinutes(ctx, newFrom, to)
			if err != nil {
				return s.fail(err, "roll up samples by minute")
			}
			step("read")
			if err := tx.putMinuteBuckets(ctx, buckets); err != nil {
				return s.fail(err, "roll up samples by minute")
			}
		}
		step("minutes")
		hour := s.d.TimeBucket("at", time.Hour)
		addFrom := newFrom
		if late {
			hourFrom, hourTo := from.Truncate(time.Hour), lateTo.Add(time.Hour-1).Truncate(time.Hour)
			if _, err := tx.exec(ctx, `INSERT INTO samples_1h (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
			SELECT tenant_id, device_id, metric, `+hour+`, MIN(min_value), MAX(max_value), SUM(sum_value), SUM(sample_count)
			FROM samples_1m WHERE at >= ? AND at < ? GROUP BY 1, 2, 3, 4`+onRollup, ts(hourFrom), ts(hourTo)); err != nil {
				return s.fail(err, "roll up samples by hour")
			}
			addFrom = later(addFrom, hourTo) // those hours now count every minute
		}
		if addFrom.Before(to) {
			if _, err := tx.exec(ctx, `INSERT INTO samples_1h (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
			SELECT tenant_id, device_id, metric, `+hour+`, MIN(min_value), MAX(max_value), SUM(sum_value), SUM(sample_count)
			FROM samples_1m WHERE at >= ? AND at < ? GROUP BY 1, 2, 3, 4`+addRollup("samples_1h"), ts(addFrom), ts(to)); err != nil {
				return s.fail(err, "roll up samples by hour")
			}
		}
		step("hours")
		// The days [from, to) touches that are closed once the watermark
		// is max(wm, to); a day closed by this call is one to reaches.
		closed := later(to, wm)
		dayFrom, dayTo := from.Truncate(steward.RollupDay), to.Add(steward.RollupDay-1).Truncate(steward.RollupDay)
		if c := closed.Truncate(steward.RollupDay); c.Before(dayTo) {
			dayTo = c
		}
		if dayFrom.Before(dayTo) {
			if _, err := tx.exec(ctx, `INSERT INTO samples_1d (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
			SELECT tenant_id, device_id, metric, `+s.d.TimeBucket("at", steward.RollupDay)+`, MIN(min_value), MAX(max_value), SUM(sum_value), SUM(sample_count)
			FROM samples_1h WHERE at >= ? AND at < ? GROUP BY 1, 2, 3, 4`+onRollup, ts(dayFrom), ts(dayTo)); err != nil {
				return s.fail(err, "roll up samples by day")
			}
		}
		step("days")
		if _, err := tx.exec(ctx, `INSERT INTO rollup_watermark (id, at) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET at = excluded.at WHERE excluded.at > rollup_watermark.at`, ts(to)); err != nil {
			return s.fail(err, "roll up samples: watermark")
		}
		return nil
	})
	if err != nil {
		return err
	}
	step("commit")
	moved, err := s.moveRecent(ctx, to)
	step("move")
	// On SQLite the transactions hold the one writer, telemetry's too: a
	// long run is worth an operator's attention.
	level := slog.LevelDebug
	if time.Since(began) > slowRollup {
		level = slog.LevelInfo
	}
	s.log.Log(ctx, level, "roll up samples", append([]any{"from", from, "to", to, "watermark", wm, "moved", moved}, steps...)...)
	return err
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// DefaultMoveChunk is the most readings one transaction of the rollup's
// move takes, unless SetMoveChunk says otherwise: a minute of 10,000
// devices at 100,000 samples/s is 600,000, so a running node moves each
// minute in one transaction, and one catching up after an outage holds the
// writer about 5–10 s at a time. Smaller transactions cost more in all:
// each commit writes every device's tail page again (100,000 took 6.5–10.5
// s a minute against 2.3–5.6 s in one, docs/benchmarks.md), and the writer
// gets only one batch in between each of them.
const DefaultMoveChunk = 1000000

// SetMoveChunk sets the most readings one transaction of the rollup's move
// takes (n > 0), for every Store sharing this one's database.
func (s *Store) SetMoveChunk(n int) {
	if n > 0 {
		s.shared.moveChunk.Store(int64(n))
	}
}

// moveRecent moves every reading of samples_recent before to into samples,
// oldest first, in transactions of at most SetMoveChunk readings, each a
// range of time from the oldest (so each reads only the readings it moves:
// those before were moved and deleted). Readers see both tables, so a
// reading may move in any transaction and order. Each transaction inserts
// in the order of samples' key (so that each device's tail leaf is written
// once per transaction); a reading samples already holds keeps its
// metrics' values and takes the others, as WriteSamples keeps the first.
// The readings moved are deleted from samples_recent only where samples
// now holds each of their metrics, so a sample committed during the move
// (PostgreSQL) stays for the next one instead of being lost; where the
// telemetry tables have a writer of their own (SQLite), by their batch
// number, after the commit (deleteMoved). It returns how many readings it
// moved.
func (s *Store) moveRecent(ctx context.Context, to time.Time) (int64, error) {
	chunk := cmp.Or(s.shared.moveChunk.Load(), DefaultMoveChunk)
	var moved int64
	var prev time.Time // the previous transaction's end
	for {
		// The end of this transaction's range: the time of the
		// moveChunk-th reading before to, or to; past the previous end
		// even if more than moveChunk readings share one microsecond.
		end := to
		var at time.Time
		err := s.queryRow(ctx, `SELECT at FROM samples_recent WHERE at < ? ORDER BY at LIMIT 1 OFFSET ?`, ts(to), chunk).Scan(timeCol{&at})
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return moved, s.fail(err, "move recent samples")
		default:
			end = later(at, prev.Add(time.Microsecond))
		}
		prev = end
		var n int64
		batch := int64(-1) // the last batch this transaction's snapshot holds
		err = s.InTx(ctx, func(st steward.Store) error {
			tx := st.(*Store)
			if s.splitTelemetry() {
				if err := tx.queryRow(ctx, `SELECT n FROM telemetry_batch WHERE id = 1`).Scan(&batch); err != nil {
					return s.fail(err, "move recent samples: last batch")
				}
			}
			res, err := tx.exec(ctx, `INSERT INTO samples (tenant_id, device_id, at, metrics)
				SELECT tenant_id, device_id, at, metrics FROM samples_recent WHERE at < ?
				ORDER BY tenant_id, device_id, at`+s.onReading("samples"), ts(end))
			if err != nil {
				return s.fail(err, "move recent samples")
			}
			if n, err = affected(res); err != nil {
				return s.fail(err, "move recent samples")
			}
			if s.shared.moveHook != nil {
				s.shared.moveHook(ctx)
			}
			if batch >= 0 {
				return nil // deleted below, once this is committed
			}
			// Only readings whose every metric samples now holds: one that
			// took a metric during the move stays for the next.
			_, err = tx.exec(ctx, `DELETE FROM samples_recent WHERE at < ? AND EXISTS (SELECT 1 FROM samples o
				WHERE o.tenant_id = samples_recent.tenant_id AND o.device_id = samples_recent.device_id AND o.at = samples_recent.at
					AND NOT EXISTS (SELECT 1 FROM `+s.d.EachMetric("samples_recent.metrics", "k")+`
						WHERE NOT EXISTS (SELECT 1 FROM `+s.d.EachMetric("o.metrics", "l")+` WHERE l.key = k.key)))`, ts(end))
			return s.fail(err, "delete moved samples")
		})
		moved += n
		if err == nil && batch >= 0 {
			// Wait for the readers' statements that may have taken their
			// snapshot of steward.db before this commit (see snapGate).
			s.shared.snaps.wait()
			err = s.deleteMoved(ctx, end, batch)
		}
		if err != nil || !end.Before(to) {
			return moved, err
		}
	}
}

// deleteMoved deletes from samples_recent, through the telemetry writer,
// the readings before end that the move's committed transaction read: those
// of batches up to batch. The intake writes on meanwhile (that is what the
// writer of its own is for), and a reading it wrote or merged into since the
// move's snapshot carries a later batch, so it stays for the next move
// instead of being lost. A crash before this leaves the moved readings in
// both tables, which readers see once (sampleRows) and the next move
// merges again, changing nothing. The delete goes in chunks so that the
// intake's batches get the writer in between.
func (s *Store) deleteMoved(ctx context.Context, end time.Time, batch int64) error {
	for {
		res, err := s.twdb.ExecContext(ctx, `DELETE FROM samples_recent WHERE (at, tenant_id, device_id) IN
			(SELECT at, tenant_id, device_id FROM samples_recent WHERE at < ? AND batch <= ? LIMIT ?)`, ts(end), batch, MaxDeleteChunk)
		if err != nil {
			return s.fail(err, "delete moved samples")
		}
		n, err := affected(res)
		if err != nil || n < MaxDeleteChunk {
			return s.fail(err, "delete moved samples")
		}
	}
}

// minuteKey is a minute bucket of one series.
type minuteKey struct {
	tenantID, deviceID, metric string
	at                         int64 // Unix microseconds
}

// minuteBucket is what a minute bucket sums.
type minuteBucket struct {
	min, max, sum float64
	count         int64
}

// sumRecentMinutes sums the samples of samples_recent in [from, to) per
// minute bucket: one range scan in time order, summed in memory. It
// replaced a GROUP BY over the readings' expanded metrics, which sorted
// every sample of the minute (7–13 s of the writer's time a minute at
// 80,000 samples/s on SQLite); a minute holds as many buckets as series,
// 100,000 for 10,000 devices of 10 metrics.
func (s *Store) sumRecentMinutes(ctx context.Context, from, to time.Time) (map[minuteKey]*minuteBucket, error) {
	rows, err := s.query(ctx, `SELECT tenant_id, device_id, at, metrics FROM samples_recent WHERE at >= ? AND at < ?`, ts(from), ts(to))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	buckets := map[minuteKey]*minuteBucket{}
	var tenant, device string
	var at time.Time
	var raw []byte
	var metrics []metricValue
	for rows.Next() {
		if err := rows.Scan(&tenant, &device, timeCol{&at}, &raw); err != nil {
			return nil, err
		}
		if metrics, err = readingMetrics(raw, metrics[:0]); err != nil {
			return nil, fmt.Errorf("device %s at %s: %w", device, at, err)
		}
		minute := at.Truncate(time.Minute).UnixMicro()
		for _, m := range metrics {
			k := minuteKey{tenant, device, m.name, minute}
			if b := buckets[k]; b != nil {
				b.min, b.max, b.sum, b.count = min(b.min, m.value), max(b.max, m.value), b.sum+m.value, b.count+1
			} else {
				buckets[k] = &minuteBucket{m.value, m.value, m.value, 1}
			}
		}
	}
	return buckets, rows.Err()
}

// putMinuteBuckets writes minute buckets, replacing any there, in key order.
func (s *Store) putMinuteBuckets(ctx context.Context, buckets map[minuteKey]*minuteBucket) error {
	keys := slices.Collect(maps.Keys(buckets))
	slices.SortFunc(keys, func(a, b minuteKey) int {
		return cmp.Or(strings.Compare(a.tenantID, b.tenantID), strings.Compare(a.deviceID, b.deviceID),
			strings.Compare(a.metric, b.metric), cmp.Compare(a.at, b.at))
	})
	_, err := s.insertChunks(len(keys), 8, `INSERT INTO samples_1m (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count) `,
		onRollup, func(args []any, i int) []any {
			k, b := keys[i], buckets[keys[i]]
			return append(args, k.tenantID, k.deviceID, k.metric, time.UnixMicro(k.at).UTC(), b.min, b.max, b.sum, b.count)
		}, func(q string, args ...any) (sql.Result, error) { return s.exec(ctx, q, args...) })
	return err
}

// RollupWatermark implements steward.Store.
func (s *Store) RollupWatermark(ctx context.Context) (time.Time, error) {
	var at time.Time
	err := s.queryRow(ctx, `SELECT at FROM rollup_watermark WHERE id = 1`).Scan(timeCol{&at})
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, nil
	}
	return at, s.fail(err, "rollup watermark")
}

// ListRollups implements steward.Store.
func (s *Store) ListRollups(ctx context.Context, tenantID, deviceID, metric string, resolution time.Duration, from, to time.Time, limit int) ([]steward.Rollup, error) {
	table, err := rollupTable(resolution)
	if err != nil {
		return nil, err
	}
	switch {
	case limit < 0:
		return nil, invalid("limit must not be negative")
	case limit == 0:
		limit = DefaultSampleLimit
	case limit > MaxSampleLimit:
		limit = MaxSampleLimit
	}
	if to.IsZero() {
		to = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
	}
	rows, err := s.query(ctx, `SELECT tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count FROM `+table+`
		WHERE tenant_id = ? AND device_id = ? AND metric = ? AND at >= ? AND at < ? ORDER BY at LIMIT ?`,
		tenantID, deviceID, metric, ts(from), ts(to), limit)
	if err != nil {
		return nil, s.fail(err, "list rollups")
	}
	return collect(rows, func(r *steward.Rollup) []any {
		return []any{&r.TenantID, &r.DeviceID, &r.Metric, timeCol{&r.At}, &r.Min, &r.Max, &r.Sum, &r.Count}
	}, s, "list rollups")
}

// DeleteSamplesBefore implements steward.Store: from samples, then, within
// the same limit, from samples_recent (late samples not yet moved). It
// counts readings (a device's samples of one time), the rows of both.
func (s *Store) DeleteSamplesBefore(ctx context.Context, before time.Time, limit int) (int, error) {
	const key = `tenant_id, device_id, at`
	n, err := s.deleteBefore(ctx, "samples", key, before, limit)
	if err != nil || n == limit {
		return n, err
	}
	recent := *s
	if s.splitTelemetry() {
		recent.w = s.twdb // only the telemetry writer writes samples_recent
	}
	m, err := recent.deleteBefore(ctx, "samples_recent", key, before, limit-n)
	return n + m, err
}

// DeleteRollupsBefore implements steward.Store.
func (s *Store) DeleteRollupsBefore(ctx context.Context, resolution time.Duration, before time.Time, limit int) (int, error) {
	table, err := rollupTable(resolution)
	if err != nil {
		return 0, err
	}
	return s.deleteBefore(ctx, table, `tenant_id, device_id, metric, at`, before, limit)
}

// deleteBefore deletes at most limit rows of table older than before. The
// chunk is chosen through the table's index on at and deleted by its
// primary key, the columns key (row values: SQLite ≥ 3.15, PostgreSQL),
// the same text on both.
func (s *Store) deleteBefore(ctx context.Context, table, key string, before time.Time, limit int) (int, error) {
	if limit <= 0 || limit > MaxDeleteChunk {
		return 0, invalid("delete limit must be from 1 to %d", MaxDeleteChunk)
	}
	if before.IsZero() {
		return 0, invalid("delete needs a time to delete before")
	}
	res, err := s.exec(ctx, `DELETE FROM `+table+` WHERE (`+key+`) IN
		(SELECT `+key+` FROM `+table+` WHERE at < ? LIMIT ?)`, ts(before), limit)
	if err != nil {
		return 0, s.fail(err, "delete old %s", table)
	}
	n, err := affected(res)
	return int(n), s.fail(err, "delete old %s", table)
}
