package storetest

import (
	"database/sql"
	"io/fs"
	"reflect"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlstore"
)

// testReadingsMigration writes samples in the layout of one row per
// sample, in both tables, and latest values in one row per metric, then
// applies migration 0021, which groups samples into one row per device and
// time and latest values into one row per device: every sample and latest
// value reads back with its value and time, and the rows are the readings.
func testReadingsMigration(t *testing.T, fresh func(t *testing.T) func() *sql.DB, d *sqlstore.Dialect, migrations fs.FS) {
	c := ctx(t)
	db, s := migratedBefore(t, fresh, d, migrations, "0021")
	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A", CreatedAt: t0}))
	at := stored(t0)
	old := []struct {
		table, device, metric string
		at                    time.Time
		value                 float64
	}{
		{"samples", "d-1", "cpu", at, 1.5},
		{"samples", "d-1", "mem", at, 2},
		{"samples", "d-1", "cpu", at.Add(time.Second), 3},
		{"samples", "d-2", "cpu", at, 4},
		{"samples_recent", "d-1", "cpu", at.Add(2 * time.Minute), 5.25},
		{"samples_recent", "d-1", "mem", at.Add(2 * time.Minute), 1e20},
	}
	for _, o := range old {
		_, err := db.ExecContext(c, d.Rebind(`INSERT INTO `+o.table+` (tenant_id, device_id, metric, at, value) VALUES (?, ?, ?, ?, ?)`, 1),
			tenantA, o.device, o.metric, o.at, o.value)
		must(t, err)
	}

	for _, o := range []struct {
		metric string
		at     time.Time
		value  float64
	}{{"cpu", at.Add(2 * time.Minute), 5.25}, {"mem", at.Add(time.Minute), 1e20}} {
		_, err := db.ExecContext(c, d.Rebind(`INSERT INTO metric_latest (tenant_id, device_id, metric, at, value) VALUES (?, 'd-1', ?, ?, ?)`, 1),
			tenantA, o.metric, o.at, o.value)
		must(t, err)
	}

	_, err := sqlstore.Migrate(c, db, d, migrations, nil)
	must(t, err)
	latest, err := s.LatestSamples(c, tenantA, "d-1")
	must(t, err)
	if want := []steward.Sample{
		{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", At: at.Add(2 * time.Minute), Value: 5.25},
		{TenantID: tenantA, DeviceID: "d-1", Metric: "mem", At: at.Add(time.Minute), Value: 1e20},
	}; !reflect.DeepEqual(latest, want) {
		t.Fatalf("latest samples after the migration: %+v, want %+v", latest, want)
	}
	for _, o := range old {
		got, err := s.ListSamples(c, tenantA, o.device, o.metric, o.at, o.at.Add(time.Millisecond), 0)
		must(t, err)
		if len(got) != 1 || got[0].Value != o.value || !got[0].At.Equal(o.at) {
			t.Fatalf("%s of %s at %s after the migration: %+v, want %v", o.metric, o.device, o.at, got, o.value)
		}
	}
	all, err := s.ListSamples(c, tenantA, "d-1", "cpu", at.Add(-time.Hour), time.Time{}, 0)
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("d-1 has %d cpu samples after the migration, want 3: %+v", len(all), all)
	}
	if moved, recent := sampleTables(t, s, tenantA); moved != 3 || recent != 1 {
		t.Fatalf("after the migration: %d readings in samples and %d in samples_recent, want 3 and 1", moved, recent)
	}
}
