package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// metric_latest holds one row per device: at, the newest time of any of its
// metrics, and metrics, a JSON object {"metric": [at, value], …} with at in
// Unix microseconds (a float64 holds those exactly until the year 2255).
// The writer reads the batch's devices, merges in Go and writes each
// device once: with ten metrics per message, one upsert per metric was a
// third of the server's CPU (docs/benchmarks.md).

// latestValue is a metric's latest value and its time in Unix microseconds.
type latestValue struct {
	at    int64
	value float64
}

// deviceLatest is one device's stored latest values.
type deviceLatest map[string]latestValue

// encodeLatest writes a device's latest values as stored, metrics in order.
func encodeLatest(m deviceLatest) []byte {
	b := make([]byte, 0, 16+len(m)*40)
	b = append(b, '{')
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ":["...)
		b = strconv.AppendInt(b, m[k].at, 10)
		b = append(b, ',')
		b = strconv.AppendFloat(b, m[k].value, 'g', -1, 64)
		b = append(b, ']')
	}
	return append(b, '}')
}

// decodeLatest reads a device's latest values as stored. The writer reads
// every device of every batch, so the object is scanned by hand (a tenth of
// encoding/json's time); anything it does not expect — escapes in a name,
// another shape — goes to encoding/json, which also gives the errors.
func decodeLatest(b []byte) (deviceLatest, error) {
	if m, ok := scanLatest(b); ok {
		return m, nil
	}
	var raw map[string][]float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("latest values: %w", err)
	}
	m := make(deviceLatest, len(raw))
	for k, v := range raw {
		if len(v) != 2 {
			return nil, fmt.Errorf("latest values: metric %s: want [time, value], got %d numbers", k, len(v))
		}
		m[k] = latestValue{at: int64(v[0]), value: v[1]}
	}
	return m, nil
}

// scanLatest reads {"name": [at, value], …} (see scanObject) with at an
// integer.
func scanLatest(b []byte) (deviceLatest, bool) {
	m := deviceLatest{}
	ok := scanObject(b, func(name string, sc *objScanner) bool {
		if !sc.expect('[') {
			return false
		}
		at, err := strconv.ParseInt(sc.token(), 10, 64)
		if err != nil || !sc.expect(',') {
			return false
		}
		v, err := strconv.ParseFloat(sc.token(), 64)
		if err != nil || !sc.expect(']') {
			return false
		}
		m[name] = latestValue{at, v}
		return true
	})
	if !ok {
		return nil, false
	}
	return m, true
}

// latestBatch is a batch's newest samples of one device.
type latestBatch struct {
	tenantID, deviceID string
	samples            []steward.Sample
}

// latestReadChunk is how many devices one SELECT of writeLatest reads.
const latestReadChunk = 500

// latestCacheDevices is how many devices' latest values latestCache keeps
// at most (about 100 MB with ten metrics each); past it, an arbitrary one
// makes room for each new one.
const latestCacheDevices = 200000

// latestCache keeps the devices' rows of metric_latest as last committed,
// decoded, where the telemetry tables have a writer of their own (SQLite):
// that writer is then the only one of those rows, so what it committed is
// what they hold, and the writer need not read them back for every batch
// (8.5 % of the server's CPU at 130,000 samples/s, profile of
// bench/telemetry). mu is held across each batch's transaction, from the
// cache's read to its update after the commit, and across every delete of
// those rows, so that no batch merges into values another has replaced.
// PostgreSQL has none: other nodes write the same rows.
type latestCache struct {
	mu   sync.Mutex
	devs map[[2]string]deviceLatest
}

// put keeps the rows a batch committed. The caller holds mu.
func (c *latestCache) put(rows map[[2]string]deviceLatest) {
	for k, m := range rows {
		if _, ok := c.devs[k]; !ok && len(c.devs) >= latestCacheDevices {
			for old := range c.devs { // Go's map order is random enough
				delete(c.devs, old)
				break
			}
		}
		c.devs[k] = m
	}
}

// forget drops a device's row, or a whole tenant's (deviceID empty). The
// caller holds mu.
func (c *latestCache) forget(tenantID, deviceID string) {
	if deviceID != "" {
		delete(c.devs, [2]string{tenantID, deviceID})
		return
	}
	for k := range c.devs {
		if k[0] == tenantID {
			delete(c.devs, k)
		}
	}
}

// writeLatest merges latest (from latestOf: sorted by tenant, device and
// metric) into the devices' rows of metric_latest: a metric moves only
// forward in time, `>` keeping the first of equal times. The rows are
// read with Dialect.ForUpdate, so that no other node's batch changes them
// before this one's commit; a device new to the table is inserted without
// overwriting, and if another writer inserted it first (PostgreSQL), it is
// read and merged again. With a latestCache (whose mu the caller holds),
// the rows it holds are not read, and writeLatest returns every row of the
// batch's devices as it leaves them, for the cache once committed.
func (s *Store) writeLatest(ctx context.Context, tx *sql.Tx, latest []steward.Sample) (map[[2]string]deviceLatest, error) {
	cache := s.shared.latest
	var rows map[[2]string]deviceLatest
	if cache != nil {
		rows = make(map[[2]string]deviceLatest, len(latest)/4+1)
	}
	var devs []latestBatch
	for i := 0; i < len(latest); {
		j := i + 1
		for j < len(latest) && latest[j].TenantID == latest[i].TenantID && latest[j].DeviceID == latest[i].DeviceID {
			j++
		}
		devs = append(devs, latestBatch{latest[i].TenantID, latest[i].DeviceID, latest[i:j]})
		i = j
	}
	for attempt := 0; len(devs) > 0; attempt++ {
		if attempt == 3 {
			return nil, steward.Errorf(steward.CodeUnavailable, "write latest samples: devices' rows kept changing under this batch")
		}
		read, cached := devs, map[[2]string]deviceLatest{}
		if cache != nil {
			read = nil
			for _, d := range devs {
				k := [2]string{d.tenantID, d.deviceID}
				if m, ok := cache.devs[k]; ok {
					cached[k] = maps.Clone(m) // the cache changes only once committed
				} else {
					read = append(read, d)
				}
			}
		}
		stored, err := s.readLatest(ctx, tx, read)
		if err != nil {
			return nil, s.fail(err, "read latest samples")
		}
		maps.Copy(stored, cached)
		var update, insert []reading
		var inserted []latestBatch
		for _, d := range devs {
			m, ok := stored[[2]string{d.tenantID, d.deviceID}]
			changed := !ok
			if !ok {
				m = make(deviceLatest, len(d.samples))
			}
			for _, sm := range d.samples {
				at := ts(sm.At).UnixMicro()
				if v, ok := m[sm.Metric]; !ok || at > v.at {
					m[sm.Metric], changed = latestValue{at, sm.Value}, true
				}
			}
			if rows != nil {
				rows[[2]string{d.tenantID, d.deviceID}] = m
			}
			if !changed {
				continue
			}
			var newest int64
			for _, v := range m {
				newest = max(newest, v.at)
			}
			r := reading{tenantID: d.tenantID, deviceID: d.deviceID, at: time.UnixMicro(newest).UTC(), metrics: encodeLatest(m)}
			if ok {
				update = append(update, r)
			} else {
				insert, inserted = append(insert, r), append(inserted, d)
			}
		}
		if _, err := s.putReadings(ctx, tx, insertLatest, onLatest, update, -1); err != nil {
			return nil, s.fail(err, "write latest samples")
		}
		n, err := s.putReadings(ctx, tx, insertLatest, onNewLatest, insert, -1)
		if err != nil {
			return nil, s.fail(err, "write latest samples")
		}
		devs = nil
		if int(n) < len(insert) {
			// Another writer inserted some of them since the read: merge
			// all of the new ones again (those inserted here merge into
			// themselves, changing nothing).
			devs = inserted
		}
	}
	return rows, nil
}

// readLatest reads the stored latest values of devs, keyed by tenant and
// device.
func (s *Store) readLatest(ctx context.Context, tx *sql.Tx, devs []latestBatch) (map[[2]string]deviceLatest, error) {
	out := make(map[[2]string]deviceLatest, len(devs))
	for len(devs) > 0 {
		n := min(latestReadChunk, len(devs))
		args := make([]any, 0, 2*n)
		for _, d := range devs[:n] {
			args = append(args, d.tenantID, d.deviceID)
		}
		rows, err := tx.QueryContext(ctx, s.q(`SELECT tenant_id, device_id, metrics FROM metric_latest
			WHERE (tenant_id, device_id) IN (`+multiRow(n, 2)+`) ORDER BY tenant_id, device_id`+s.d.ForUpdate), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var tenant, device string
			var metrics []byte
			if err := rows.Scan(&tenant, &device, &metrics); err != nil {
				_ = rows.Close()
				return nil, err
			}
			m, err := decodeLatest(metrics)
			if err != nil {
				// The row is derived from samples the store keeps: one it
				// cannot read is rewritten from this batch rather than
				// refusing every batch that names the device.
				s.log.Warn("latest samples unreadable, replaced", "tenant", tenant, "device", device, "err", err)
				m = deviceLatest{}
			}
			out[[2]string{tenant, device}] = m
		}
		if err := rows.Close(); err != nil {
			return nil, err
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		devs = devs[n:]
	}
	return out, nil
}

// LatestSamples implements steward.Store: the newest value of each metric
// of the device, ordered by metric.
func (s *Store) LatestSamples(ctx context.Context, tenantID, deviceID string) ([]steward.Sample, error) {
	var metrics []byte
	err := s.queryRow(ctx, `SELECT metrics FROM metric_latest WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID).Scan(&metrics)
	if errors.Is(err, sql.ErrNoRows) {
		return []steward.Sample{}, nil
	}
	if err != nil {
		return nil, s.fail(err, "latest samples")
	}
	m, err := decodeLatest(metrics)
	if err != nil {
		return nil, s.fail(err, "latest samples of %s", deviceID)
	}
	out := make([]steward.Sample, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, steward.Sample{TenantID: tenantID, DeviceID: deviceID, Metric: k, At: time.UnixMicro(m[k].at).UTC(), Value: m[k].value})
	}
	return out, nil
}
