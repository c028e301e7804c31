package storetest

import (
	"database/sql"
	"io/fs"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlstore"
)

// testAlertMigration checks that migration 0008 (which SQLite applies by
// rebuilding the alert tables) keeps the alerts and rules written before
// it, their acknowledgements, the uniqueness of open alerts and the
// cascade from rules to alerts.
func testAlertMigration(t *testing.T, fresh func(t *testing.T) func() *sql.DB, d *sqlstore.Dialect, migrations fs.FS) {
	c := ctx(t)
	db, s := migratedBefore(t, fresh, d, migrations, "0008")
	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A", CreatedAt: t0}))
	r := alertRule(tenantA, "r1", "hot")
	must(t, s.CreateAlertRule(c, r))
	when := t0.UTC()
	_, err := db.ExecContext(c, d.Rebind(`INSERT INTO alerts (tenant_id, id, rule_id, device_id, state, severity, labels, summary, value,
		started_at, fired_at, last_evaluated_at, acknowledged_by) VALUES (?, 'al-old', 'r1', 'd-1', 'firing', 'major', '{}', 'hot', 85, ?, ?, ?, 'alice')`, 1),
		tenantA, when, when, when)
	must(t, err)

	_, err = sqlstore.Migrate(c, db, d, migrations, nil)
	must(t, err)
	a, err := s.GetAlert(c, tenantA, "al-old")
	must(t, err)
	if a.State != steward.AlertFiring || a.AcknowledgedBy != "alice" || a.Subject != "" || a.InhibitedBy != "" || !a.FiredAt.Equal(stored(t0)) {
		t.Fatalf("alert after the migration: %+v", a)
	}
	if got, err := s.GetAlertRule(c, tenantA, "r1"); err != nil || got.Name != "hot" {
		t.Fatalf("rule after the migration: %+v %v", got, err)
	}
	again := openAlert(tenantA, "al-new", "r1", "d-1")
	again.State, again.FiredAt = steward.AlertFiring, &when
	got, err := s.PutAlert(c, again)
	must(t, err)
	if got.ID != "al-old" {
		t.Fatalf("a second open alert of the rule and device: %+v", got)
	}
	site := steward.AlertRule{ID: "r-site", TenantID: tenantA, Name: "sites", Kind: steward.RuleSiteConnectivity,
		Severity: steward.AlertMajor, Enabled: true, Site: &steward.SiteCondition{}, CreatedAt: t0, UpdatedAt: t0.Add(time.Second)}
	must(t, s.CreateAlertRule(c, site))
	must(t, s.DeleteAlertRule(c, tenantA, "r1"))
	_, err = s.GetAlert(c, tenantA, "al-old")
	wantCode(t, err, steward.CodeNotFound)
}

// migratedBefore opens a fresh database with the migrations numbered
// before version applied (their file names sort before it), and a store
// on it.
func migratedBefore(t *testing.T, fresh func(t *testing.T) func() *sql.DB, d *sqlstore.Dialect, migrations fs.FS, version string) (*sql.DB, *sqlstore.Store) {
	t.Helper()
	db := fresh(t)()
	before := fstest.MapFS{}
	entries, err := fs.ReadDir(migrations, ".")
	must(t, err)
	for _, e := range entries {
		if e.Name() >= version || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := fs.ReadFile(migrations, e.Name())
		must(t, err)
		before[e.Name()] = &fstest.MapFile{Data: b}
	}
	_, err = sqlstore.Migrate(ctx(t), db, d, before, nil)
	must(t, err)
	return db, sqlstore.New(db, nil, d, nil)
}
