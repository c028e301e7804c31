package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/storetest"
)

// fleetPerSeries is how many samples each of the fleet's 100,000 series
// holds before BenchmarkWriteSamplesFleet writes: 3,000,000 samples in
// 300,000 readings (rows of samples), with metric_latest larger than the
// writer's page cache was before readings were stored by the row.
const fleetPerSeries = 30

// fleetTemplate is the seeded database, made once per test binary run and
// copied for each benchmark, so that -count n does not seed n times.
var fleetTemplate struct {
	once sync.Once
	dir  string
	path string
	took time.Duration
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if fleetTemplate.dir != "" {
		_ = os.RemoveAll(fleetTemplate.dir)
	}
	os.Exit(code)
}

// seededFleet returns the path of a copy of the seeded database in a
// directory of the benchmark's.
func seededFleet(b *testing.B) string {
	b.Helper()
	t := &fleetTemplate
	t.once.Do(func() {
		if t.dir, t.err = os.MkdirTemp("", "steward-fleet-"); t.err != nil {
			return
		}
		t.path = filepath.Join(t.dir, "steward.db")
		start := time.Now()
		s, err := Open(context.Background(), t.path, nil)
		if err != nil {
			t.err = err
			return
		}
		t.err = seedFleet(context.Background(), s.DB(), s.TelemetryDB())
		if err := s.Close(); t.err == nil {
			t.err = err // closing checkpoints the WAL into the file
		}
		t.took = time.Since(start)
		var size int64
		if fi, err := os.Stat(t.path); err == nil {
			size = fi.Size()
		}
		log.Printf("seeded %d samples in %s (once per run): %d MiB", storetest.FleetDevices*storetest.FleetMetrics*fleetPerSeries, t.took.Round(time.Millisecond), size>>20)
	})
	if t.err != nil {
		b.Fatalf("seed the fleet's samples: %v", t.err)
	}
	path := filepath.Join(b.TempDir(), "steward.db")
	for from, to := range map[string]string{t.path: path, TelemetryPath(t.path): TelemetryPath(path)} {
		if err := copyFile(from, to); err != nil {
			b.Fatal(err)
		}
	}
	return path
}

// seedFleet fills samples with fleetPerSeries samples of each of the
// fleet's series, 10 s apart and ending before storetest.FleetStart, and
// metric_latest with the last of each, in one INSERT … SELECT per table:
// rows made by SQLite in key order, without a round trip each, take
// seconds where the intake's batches would take minutes. Rows inserted in
// key order fill their pages, where interleaved inserts leave them partly
// empty, so the seeded table is somewhat smaller than one grown by the
// intake.
func seedFleet(ctx context.Context, db, telemetry *sql.DB) error {
	first := storetest.FleetStart.Add(-fleetPerSeries * 10 * time.Second).UnixMicro()
	ctes := fmt.Sprintf(`WITH RECURSIVE
		d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < %d),
		m(j) AS (SELECT 0 UNION ALL SELECT j + 1 FROM m WHERE j < %d),
		k(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM k WHERE n < %d)`, storetest.FleetDevices-1, storetest.FleetMetrics-1, fleetPerSeries-1)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// One reading per device and time, every metric in it (as the
	// intake stores them).
	if _, err := tx.ExecContext(ctx, `INSERT INTO samples (tenant_id, device_id, at, metrics) `+ctes+`
		SELECT 'default', printf('d-%020x', i * 7919), ?1 + n * 10000000,
			(SELECT json_group_object('metric' || j, CAST(i + j + n AS REAL)) FROM m)
		FROM d CROSS JOIN k`, first); err != nil {
		return fmt.Errorf("seed samples: %w", err)
	}
	// metric_latest is in the telemetry database, which only its own
	// writer writes.
	if _, err := telemetry.ExecContext(ctx, `INSERT INTO metric_latest (tenant_id, device_id, at, metrics) `+ctes+`
		SELECT 'default', printf('d-%020x', i * 7919), ?1 + ?2 * 10000000,
			(SELECT json_group_object('metric' || j, json_array(?1 + ?2 * 10000000, CAST(i + j + ?2 AS REAL))) FROM m)
		FROM d`, first, fleetPerSeries-1); err != nil {
		return fmt.Errorf("seed latest samples: %w", err)
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM samples`).Scan(&n); err != nil {
		return err
	}
	if want := storetest.FleetDevices * fleetPerSeries; n != want {
		return fmt.Errorf("seeded %d readings, want %d", n, want)
	}
	return tx.Commit()
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		_ = out.Close()
		return err
	}
	return out.Close()
}

// BenchmarkWriteSamplesFleet measures the telemetry writer's transactions
// into a samples table of 3,000,000 samples over 100,000 series (see
// storetest.BenchmarkWriteSamplesFleet), with the page cache of before
// (64 MiB), the default (256 MiB), and the default with a memory map.
func BenchmarkWriteSamplesFleet(b *testing.B) {
	for _, o := range []struct {
		name string
		opts Options
		// noCheckpoint turns the WAL's automatic checkpoint off, to show
		// what the checkpoints, which run in the writer's commits, cost;
		// background then checkpoints on a connection of its own every
		// 250 ms instead, as a checkpointer goroutine would.
		noCheckpoint, background bool
	}{
		{"cache=64MiB", Options{CacheSize: 64 << 20}, false, false},
		{"cache=256MiB", Options{}, false, false},
		{"cache=256MiB,mmap=1GiB", Options{MmapSize: 1 << 30}, false, false},
		{"cache=256MiB,no-checkpoint", Options{}, true, false},
		{"cache=256MiB,background-checkpoint", Options{}, true, true},
	} {
		b.Run(o.name, func(b *testing.B) {
			storetest.BenchmarkWriteSamplesFleet(b, func(b *testing.B) steward.Store {
				path := seededFleet(b)
				s, err := OpenWith(b.Context(), path, o.opts, nil)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = s.Close() })
				if o.noCheckpoint {
					if _, err := s.DB().ExecContext(b.Context(), "PRAGMA wal_autocheckpoint = 0"); err != nil {
						b.Fatal(err)
					}
				}
				if o.background {
					backgroundCheckpoints(b, path)
				}
				return s
			})
		})
	}
}

// backgroundCheckpoints checkpoints the WAL of the database at path every
// 250 ms on a connection of its own (PASSIVE: it never waits for the
// writer) until the benchmark ends.
func backgroundCheckpoints(b *testing.B, path string) {
	b.Helper()
	db, err := openWriter(b.Context(), path)
	if err != nil {
		b.Fatal(err)
	}
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if _, err := db.Exec("PRAGMA wal_checkpoint(PASSIVE)"); err != nil {
					b.Error(err)
					return
				}
			}
		}
	}()
	b.Cleanup(func() {
		close(done)
		<-stopped
		_ = db.Close()
	})
}
