package sqlite

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward/sqlstore"
)

// TestTelemetryTablesMoved opens a database from before the telemetry
// database had a file of its own, whose samples_recent and metric_latest
// hold rows: Open moves them into the telemetry database, drops the main
// database's tables, and the store reads them as before. The second case
// is a crash between the copy and the drop: the telemetry database holds
// one of the rows already.
func TestTelemetryTablesMoved(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name          string
		copiedAlready bool
	}{{"fresh", false}, {"copied before a crash", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			path := filepath.Join(t.TempDir(), "steward.db")
			db, err := openWriter(ctx, path)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sqlstore.Migrate(ctx, db, Dialect(), Migrations(), nil); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`INSERT INTO samples_recent (at, tenant_id, device_id, metrics) VALUES (?1, 'acme', 'd-1', '{"cpu":1.5}'), (?1 + 1000000, 'acme', 'd-1', '{"cpu":2.5}')`,
				`INSERT INTO metric_latest (tenant_id, device_id, at, metrics) VALUES ('acme', 'd-1', ?1 + 1000000, json_object('cpu', json_array(?1 + 1000000, 2.5)))`,
			} {
				if _, err := db.ExecContext(ctx, q, at.UnixMicro()); err != nil {
					t.Fatal(err)
				}
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if tc.copiedAlready {
				tdb, err := openWriter(ctx, TelemetryPath(path))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sqlstore.Migrate(ctx, tdb, Dialect(), TelemetryMigrations(), nil); err != nil {
					t.Fatal(err)
				}
				if _, err := tdb.ExecContext(ctx, `INSERT INTO samples_recent (at, tenant_id, device_id, metrics) VALUES (?, 'acme', 'd-1', '{"cpu":1.5}')`, at.UnixMicro()); err != nil {
					t.Fatal(err)
				}
				_ = tdb.Close()
			}
			for open := range 2 { // the second open finds nothing to move
				s, err := Open(ctx, path, nil)
				if err != nil {
					t.Fatalf("open %d: %v", open, err)
				}
				var left int
				if err := s.DB().QueryRowContext(ctx, `SELECT count(*) FROM main.sqlite_schema WHERE name IN ('samples_recent', 'metric_latest')`).Scan(&left); err != nil {
					t.Fatal(err)
				}
				if left != 0 {
					t.Errorf("open %d: the main database still has %d of the telemetry tables", open, left)
				}
				got, err := s.ListSamples(ctx, "acme", "d-1", "cpu", at, time.Time{}, 0)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != 2 || got[0].Value != 1.5 || got[1].Value != 2.5 {
					t.Errorf("open %d: samples %+v, want 1.5 and 2.5", open, got)
				}
				latest, err := s.LatestSamples(ctx, "acme", "d-1")
				if err != nil {
					t.Fatal(err)
				}
				if len(latest) != 1 || latest[0].Value != 2.5 || !latest[0].At.Equal(at.Add(time.Second)) {
					t.Errorf("open %d: latest %+v, want cpu 2.5 at %s", open, latest, at.Add(time.Second))
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
