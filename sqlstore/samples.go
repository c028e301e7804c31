package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Sample list limits of ListSamples.
const (
	DefaultSampleLimit = 1000
	MaxSampleLimit     = 10000
)

// sampleChunk is how many rows one INSERT of WriteSamples carries (without
// Dialect.ReadingArrays). Measured with BenchmarkWriteSamples on SQLite: 100
// rows did as well as or better than 50, 250 and 1000 (the commit, not the
// statements, dominates); the statement is prepared once per connection.
const sampleChunk = 100

// WriteSamples implements steward.Store: the batch lands in one transaction
// (the caller's, inside InTx; where the telemetry tables have a writer of
// their own, see SetTelemetryWriter, one of that writer's once the caller's
// has committed, and none if it rolls back), in multi-row INSERTs or,
// where the dialect has them, one INSERT from arrays. A sample already
// stored (same tenant, device, metric and time, as a redelivered message
// brings) is kept as it was, so writing a batch again changes nothing. The
// latest value of each metric only moves forward in time. A batch with an
// invalid sample is refused whole.
func (s *Store) WriteSamples(ctx context.Context, samples []steward.Sample) error {
	if len(samples) == 0 {
		return nil
	}
	for i := range samples {
		sm := &samples[i]
		if sm.TenantID == "" || sm.DeviceID == "" || sm.Metric == "" {
			return invalid("sample %d: tenant, device and metric are required", i)
		}
		if math.IsNaN(sm.Value) || math.IsInf(sm.Value, 0) {
			return invalid("sample %d: metric %s is not a finite number", i, sm.Metric)
		}
		if sm.At.IsZero() {
			return invalid("sample %d: time is required", i)
		}
	}
	readings, latest := readingsOf(samples), latestOf(samples)
	if s.tx != nil {
		if !s.splitTelemetry() {
			_, err := s.writeSamples(ctx, s.tx, readings, latest)
			return err
		}
		// The caller's transaction cannot write the telemetry database:
		// the batch is written when it has committed, and not if it rolls
		// back.
		root := *s
		root.w, root.r, root.tx, root.afterCommit = s.wdb, s.rdb, nil, nil
		*s.afterCommit = append(*s.afterCommit, func(ctx context.Context) error { return root.commitSamples(ctx, readings, latest) })
		return nil
	}
	return s.commitSamples(ctx, readings, latest)
}

// commitSamples writes a batch in a transaction of the telemetry writer.
func (s *Store) commitSamples(ctx context.Context, readings []reading, latest []steward.Sample) error {
	if err := s.prepareSamples(ctx); err != nil {
		return s.fail(err, "write samples: prepare")
	}
	cache := s.shared.latest
	if cache != nil {
		cache.mu.Lock()
		defer cache.mu.Unlock()
	}
	tx, err := s.TelemetryDB().BeginTx(ctx, nil)
	if err != nil {
		return s.fail(err, "write samples: begin")
	}
	rows, err := s.writeSamples(ctx, tx, readings, latest)
	if err == nil {
		err = s.fail(tx.Commit(), "write samples: commit")
	} else {
		_ = tx.Rollback()
	}
	if cache != nil {
		if err != nil {
			// A failed commit may have committed all the same: read
			// these devices again next time.
			for _, sm := range latest {
				cache.forget(sm.TenantID, sm.DeviceID)
			}
		} else {
			cache.put(rows)
		}
	}
	return err
}

// latestOf returns the newest sample of each (tenant, device, metric) of a
// batch, the first of equal times, sorted by key: PostgreSQL refuses an
// upsert that touches one row twice, and a fixed order keeps concurrent
// batches from deadlocking on each other's rows. Samples are grouped by
// device first, each device's few metrics found by a linear search (a map
// once it has more than a handful): a map keyed by all three strings and a
// sort of every sample took 4 % of the server's CPU at 100,000 samples/s.
func latestOf(samples []steward.Sample) []steward.Sample {
	type device struct{ t, d string }
	type group struct {
		newest []steward.Sample
		byName map[string]int // index in newest, once it is long
	}
	idx := make(map[device]int, len(samples)/8+1)
	var groups []group
	prev := -1 // samples come by message, so mostly the previous one's device
	for _, sm := range samples {
		g := prev
		if g < 0 || groups[g].newest[0].TenantID != sm.TenantID || groups[g].newest[0].DeviceID != sm.DeviceID {
			k := device{sm.TenantID, sm.DeviceID}
			var ok bool
			if g, ok = idx[k]; !ok {
				g = len(groups)
				idx[k] = g
				groups = append(groups, group{})
			}
		}
		prev = g
		gr := &groups[g]
		i := -1
		if gr.byName != nil {
			if j, ok := gr.byName[sm.Metric]; ok {
				i = j
			}
		} else {
			for j := range gr.newest {
				if gr.newest[j].Metric == sm.Metric {
					i = j
					break
				}
			}
		}
		switch {
		case i >= 0:
			if ts(sm.At).After(ts(gr.newest[i].At)) { // as stored: to the microsecond
				gr.newest[i] = sm
			}
		default:
			gr.newest = append(gr.newest, sm)
			if gr.byName != nil {
				gr.byName[sm.Metric] = len(gr.newest) - 1
			} else if len(gr.newest) > 16 {
				gr.byName = make(map[string]int, 2*len(gr.newest))
				for j, o := range gr.newest {
					gr.byName[o.Metric] = j
				}
			}
		}
	}
	slices.SortFunc(groups, func(a, b group) int {
		return cmp.Or(strings.Compare(a.newest[0].TenantID, b.newest[0].TenantID), strings.Compare(a.newest[0].DeviceID, b.newest[0].DeviceID))
	})
	out := make([]steward.Sample, 0, len(samples))
	for _, g := range groups {
		slices.SortFunc(g.newest, func(a, b steward.Sample) int { return strings.Compare(a.Metric, b.Metric) })
		out = append(out, g.newest...)
	}
	return out
}

// reading is the samples of one device at one time, as stored: one row,
// its metrics a JSON object.
type reading struct {
	tenantID, deviceID string
	at                 time.Time
	metrics            []byte
}

// readingsOf groups a batch's samples into readings, in the order their
// first samples come; a metric given twice for one time keeps its first
// value, as the store keeps the first stored.
func readingsOf(samples []steward.Sample) []reading {
	type key struct {
		t, d string
		at   time.Time
	}
	idx := make(map[key]int, len(samples)/4+1)
	var out []reading
	var seen [][]string // the metrics of each reading so far
	for _, sm := range samples {
		at := ts(sm.At)
		k := key{sm.TenantID, sm.DeviceID, at}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, reading{tenantID: sm.TenantID, deviceID: sm.DeviceID, at: at, metrics: make([]byte, 0, 64)})
			seen = append(seen, nil)
		}
		if slices.Contains(seen[i], sm.Metric) {
			continue
		}
		seen[i] = append(seen[i], sm.Metric)
		m := out[i].metrics
		if len(m) == 0 {
			m = append(m, '{')
		} else {
			m[len(m)-1] = ','
		}
		m = appendJSONString(m, sm.Metric)
		m = append(m, ':')
		m = strconv.AppendFloat(m, sm.Value, 'g', -1, 64)
		out[i].metrics = append(m, '}')
	}
	return out
}

// appendJSONString appends s as a JSON string. Metric names are letters,
// digits, '_', '-' and '.' (steward.ValidMetricName), which need no
// escaping; anything else goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			q, _ := json.Marshal(s) // a string always marshals
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// The statements of a batch: readings go to samples_recent, keyed by time
// first so that a batch appends at the right edge of one B-tree (the
// rollup job moves them into samples, see RollupSamples); a reading already
// there keeps the values of its metrics and takes the others (a redelivery
// changes nothing; one whose original was moved already is hidden by
// sampleRows and merged the same way by the move). metric_latest is
// written by writeLatest.
const (
	insertReadings = `INSERT INTO samples_recent (tenant_id, device_id, at, metrics) `
	// insertBatchReadings is insertReadings with the batch number, where
	// the telemetry tables have a writer of their own.
	insertBatchReadings = `INSERT INTO samples_recent (tenant_id, device_id, at, metrics, batch) `
	insertLatest        = `INSERT INTO metric_latest (tenant_id, device_id, at, metrics) `
	onLatest            = ` ON CONFLICT (tenant_id, device_id) DO UPDATE SET at = excluded.at, metrics = excluded.metrics`
	onNewLatest         = ` ON CONFLICT (tenant_id, device_id) DO NOTHING`
)

// onReading is the conflict clause of a reading written to table.
func (s *Store) onReading(table string) string {
	return ` ON CONFLICT (tenant_id, device_id, at) DO UPDATE SET metrics = ` + s.d.KeepFirst("excluded.metrics", table+".metrics")
}

// multiRow returns the VALUES of n rows of cols values.
func multiRow(n, cols int) string {
	row := "(?" + strings.Repeat(",?", cols-1) + ")"
	var b strings.Builder
	b.Grow(7 + n*(len(row)+1))
	b.WriteString("VALUES ")
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(row)
	}
	return b.String()
}

// chunkRows is how many rows of cols values one INSERT of WriteSamples
// carries.
func (s *Store) chunkRows(cols int) int { return min(sampleChunk, s.d.MaxParams/cols) }

// prepareSamples prepares the full-chunk INSERTs, once per store.
func (s *Store) prepareSamples(ctx context.Context) error {
	if s.d.ReadingArrays != "" {
		return nil // one statement per batch; the driver caches it
	}
	head, tail, cols := s.recentInsert()
	for _, q := range []string{head + multiRow(s.chunkRows(cols), cols) + tail,
		insertLatest + multiRow(s.chunkRows(4), 4) + onLatest, insertLatest + multiRow(s.chunkRows(4), 4) + onNewLatest} {
		if err := s.prepareOn(ctx, true, q); err != nil {
			return err
		}
	}
	return nil
}

// recentInsert returns the INSERT head and conflict clause of a batch's
// readings in samples_recent, and how many values a row has: with a
// telemetry writer of its own, each row carries the number of the batch
// that wrote it last (see moveRecent).
func (s *Store) recentInsert() (head, tail string, cols int) {
	if s.splitTelemetry() {
		return insertBatchReadings, s.onReading("samples_recent") + `, batch = excluded.batch`, 5
	}
	return insertReadings, s.onReading("samples_recent"), 4
}

// writeSamples writes a batch in tx; with a latestCache it returns the
// batch's devices' rows of metric_latest, for the cache (see writeLatest).
func (s *Store) writeSamples(ctx context.Context, tx *sql.Tx, readings []reading, latest []steward.Sample) (map[[2]string]deviceLatest, error) {
	batch := int64(-1)
	if s.splitTelemetry() {
		if err := tx.QueryRowContext(ctx, `UPDATE telemetry_batch SET n = n + 1 WHERE id = 1 RETURNING n`).Scan(&batch); err != nil {
			return nil, s.fail(err, "write samples: number the batch")
		}
	}
	head, tail, _ := s.recentInsert()
	if _, err := s.putReadings(ctx, tx, head, tail, readings, batch); err != nil {
		return nil, s.fail(err, "write samples")
	}
	return s.writeLatest(ctx, tx, latest)
}

// putReadings writes rows of (tenant_id, device_id, at, metrics), and the
// batch number when it is not negative, with the INSERT head and the
// conflict clause tail, in a transaction of the telemetry writer
// (TelemetryDB): from arrays where the dialect has them, else in multi-row
// INSERTs, the full ones prepared. It returns how many rows were written.
func (s *Store) putReadings(ctx context.Context, tx *sql.Tx, head, tail string, rows []reading, batch int64) (int64, error) {
	if s.d.ReadingArrays != "" && batch < 0 {
		n := len(rows)
		tenants, devices, ats, metrics := make([]string, n), make([]string, n), make([]time.Time, n), make([]string, n)
		for i, r := range rows {
			tenants[i], devices[i], ats[i], metrics[i] = r.tenantID, r.deviceID, r.at, string(r.metrics)
		}
		res, err := tx.ExecContext(ctx, s.q(head+s.d.ReadingArrays+tail), tenants, devices, ats, metrics)
		if err != nil {
			return 0, err
		}
		return affected(res)
	}
	cols := 4
	if batch >= 0 {
		cols = 5
	}
	return s.insertChunks(len(rows), cols, head, tail, func(args []any, i int) []any {
		r := rows[i]
		args = append(args, r.tenantID, r.deviceID, r.at, string(r.metrics))
		if batch >= 0 {
			args = append(args, batch)
		}
		return args
	}, func(q string, args ...any) (sql.Result, error) { return s.execOn(ctx, tx, true, q, args...) })
}

// insertChunks writes n rows of cols values with multi-row INSERTs made of
// head, VALUES and tail, at most chunkRows(cols) rows each: row appends the
// values of row i to args, exec runs a statement (the full-chunk one
// prepared where prepareSamples prepared it). It returns the rows written.
func (s *Store) insertChunks(n, cols int, head, tail string, row func(args []any, i int) []any,
	exec func(q string, args ...any) (sql.Result, error)) (int64, error) {
	var written int64
	chunk := s.chunkRows(cols)
	args := make([]any, 0, cols*min(chunk, n))
	for from := 0; from < n; from += chunk {
		k := min(chunk, n-from)
		args = args[:0]
		for i := from; i < from+k; i++ {
			args = row(args, i)
		}
		res, err := exec(head+multiRow(k, cols)+tail, args...)
		if err != nil {
			return written, err
		}
		m, err := affected(res)
		if err != nil {
			return written, err
		}
		written += m
	}
	return written, nil
}

// ListSamples implements steward.Store: samples in [from, to), oldest
// first; a zero to means no upper bound. limit 0 means 1000; at most 10000.
func (s *Store) ListSamples(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, limit int) ([]steward.Sample, error) {
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
	q, args := s.sampleRows(false, `r.tenant_id = ? AND r.device_id = ? AND j.key = ? AND r.at >= ? AND r.at < ?`,
		tenantID, deviceID, metric, ts(from), ts(to))
	rows, err := s.query(ctx, `SELECT tenant_id, device_id, metric, at, value FROM (`+q+`) x ORDER BY at LIMIT ?`, append(args, limit)...)
	if err != nil {
		return nil, s.fail(err, "list samples")
	}
	return collect(rows, scanSample, s, "list samples")
}

func scanSample(sm *steward.Sample) []any {
	return []any{&sm.TenantID, &sm.DeviceID, &sm.Metric, timeCol{&sm.At}, &sm.Value}
}

// sampleRows is the one definition of the samples every reader sees: the
// metrics of the readings of samples, then those of samples_recent (where
// WriteSamples puts them until the rollup job moves them) that samples does
// not hold for the same device and time, so that a redelivered sample
// whose original was moved already is not seen twice. It returns a
// compound SELECT of the columns tenant_id, device_id, metric, at and
// value, to be used as a derived table, and its arguments.
//
// cond is the reader's condition on the columns of r (r.tenant_id,
// r.device_id, r.at) and j.key, the metric, with args its arguments; it
// goes into both branches, so that each table is read on its own key —
// samples by device, samples_recent by time — and the arguments come back
// twice, in the order of the text. With perDevice (for a condition on a
// tenant, not a device) the samples branch walks the tenant's devices and
// reads each one's range on the primary key, in that order (CROSS JOIN
// fixes it on SQLite, whose planner, without statistics, would otherwise
// scan every row of the tenant for a range of a few minutes).
// samples_recent is always read as one range of time, whatever the reader:
// it holds the minute or two of samples not yet moved, and late ones.
func (s *Store) sampleRows(perDevice bool, cond string, args ...any) (string, []any) {
	cols := `r.tenant_id, r.device_id, j.key AS metric, r.at, ` + s.d.MetricValue("j") + ` AS value`
	from := `samples r CROSS JOIN ` + s.d.EachMetric("r.metrics", "j") + ` WHERE `
	if perDevice {
		from = `devices dv CROSS JOIN samples r CROSS JOIN ` + s.d.EachMetric("r.metrics", "j") +
			` WHERE r.tenant_id = dv.tenant_id AND r.device_id = dv.id AND `
	}
	q := `SELECT ` + cols + ` FROM ` + from + cond +
		` UNION ALL SELECT ` + cols + ` FROM samples_recent r CROSS JOIN ` + s.d.EachMetric("r.metrics", "j") + ` WHERE ` + cond +
		` AND NOT EXISTS (SELECT 1 FROM samples o CROSS JOIN ` + s.d.EachMetric("o.metrics", "k") + `
			WHERE o.tenant_id = r.tenant_id AND o.device_id = r.device_id AND o.at = r.at AND k.key = j.key)`
	return q, append(slices.Clip(args), args...)
}
