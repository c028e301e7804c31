package postgres

import (
	"context"
	"database/sql"
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/storetest"
)

// fleetPerSeries is how many samples each of the fleet's 100,000 series
// holds before BenchmarkWriteSamplesFleet writes: 3,000,000 samples in
// 300,000 readings (rows of samples).
const fleetPerSeries = 30

// BenchmarkWriteSamplesFleet measures the telemetry writer's transactions
// into a samples table of 3,000,000 samples over 100,000 series (see
// storetest.BenchmarkWriteSamplesFleet). Each benchmark seeds its own
// schema, in SQL (generate_series), untimed. The CPU and system calls it
// reports are the client's only: the server is another process.
func BenchmarkWriteSamplesFleet(b *testing.B) {
	storetest.BenchmarkWriteSamplesFleet(b, func(b *testing.B) steward.Store {
		s := open(b)
		start := time.Now()
		if err := seedFleet(b.Context(), s.DB()); err != nil {
			b.Fatal(err)
		}
		b.Logf("seeded %d samples in %s", storetest.FleetDevices*storetest.FleetMetrics*fleetPerSeries, time.Since(start).Round(time.Millisecond))
		return s
	})
}

// seedFleet fills samples with fleetPerSeries samples of each of the
// fleet's series, 10 s apart and ending before storetest.FleetStart, and
// metric_latest with the last of each, named as the benchmark names them,
// in one INSERT … SELECT per table.
func seedFleet(ctx context.Context, db *sql.DB) error {
	first := storetest.FleetStart.Add(-fleetPerSeries * 10 * time.Second)
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// One reading per device and time, every metric in it (as the
	// intake stores them).
	if _, err := tx.ExecContext(ctx, `INSERT INTO samples (tenant_id, device_id, at, metrics)
		SELECT 'default', 'd-' || lpad(to_hex(d * 7919), 20, '0'), $1::timestamptz + k * interval '10 seconds',
			(SELECT jsonb_object_agg('metric' || m, (d + m + k)::float8) FROM generate_series(0, $3::int - 1) m)
		FROM generate_series(0, $2::int - 1) d, generate_series(0, $4::int - 1) k
		ORDER BY 2, 3`, first, storetest.FleetDevices, storetest.FleetMetrics, fleetPerSeries); err != nil {
		return fmt.Errorf("seed samples: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO metric_latest (tenant_id, device_id, at, metrics)
		SELECT 'default', 'd-' || lpad(to_hex(d * 7919), 20, '0'), $1::timestamptz + $4::int * interval '10 seconds',
			(SELECT jsonb_object_agg('metric' || m, jsonb_build_array(
				(extract(epoch FROM $1::timestamptz + $4::int * interval '10 seconds') * 1000000)::bigint, (d + m + $4::int)::float8))
			FROM generate_series(0, $3::int - 1) m)
		FROM generate_series(0, $2::int - 1) d`,
		first, storetest.FleetDevices, storetest.FleetMetrics, fleetPerSeries-1); err != nil {
		return fmt.Errorf("seed latest samples: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `ANALYZE samples`); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM samples`).Scan(&n); err != nil {
		return err
	}
	if want := storetest.FleetDevices * fleetPerSeries; n != want {
		return fmt.Errorf("seeded %d readings, want %d", n, want)
	}
	return tx.Commit()
}
