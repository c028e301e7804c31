package storetest

import (
	"database/sql"
	"io/fs"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/steward-iot/steward/sqlstore"
)

// RunMigrations tests a backend's migrations with sqlstore.Migrate. fresh
// returns, for each call, a new empty database and a function that opens a
// new pool on it (as another process would); the pools are the backend's
// write pools, closed by the caller's cleanup.
func RunMigrations(t *testing.T, fresh func(t *testing.T) func() *sql.DB, d *sqlstore.Dialect, migrations fs.FS) {
	ms, err := sqlstore.Migrations(migrations)
	if err != nil {
		t.Fatal(err)
	}
	count := func(t *testing.T, db *sql.DB) int {
		t.Helper()
		var n int
		if err := db.QueryRowContext(t.Context(), `SELECT COUNT(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	t.Run("twice is a no-op", func(t *testing.T) {
		t.Parallel()
		db := fresh(t)()
		n, err := sqlstore.Migrate(t.Context(), db, d, migrations, nil)
		must(t, err)
		if n != len(ms) {
			t.Fatalf("first run applied %d migrations, want %d", n, len(ms))
		}
		n, err = sqlstore.Migrate(t.Context(), db, d, migrations, nil)
		must(t, err)
		if n != 0 {
			t.Fatalf("second run applied %d migrations, want none", n)
		}
		if got := count(t, db); got != len(ms) {
			t.Fatalf("schema_migrations has %d rows, want %d", got, len(ms))
		}
	})

	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		open := fresh(t)
		const procs = 3
		applied := make([]int, procs)
		errs := make([]error, procs)
		dbs := make([]*sql.DB, procs)
		for i := range dbs {
			dbs[i] = open()
		}
		var wg sync.WaitGroup
		for i := range procs {
			wg.Go(func() { applied[i], errs[i] = sqlstore.Migrate(t.Context(), dbs[i], d, migrations, nil) })
		}
		wg.Wait()
		total := 0
		for i := range procs {
			must(t, errs[i])
			total += applied[i]
		}
		if total != len(ms) {
			t.Fatalf("processes applied %v migrations in all, want %d once", applied, len(ms))
		}
		if got := count(t, dbs[0]); got != len(ms) {
			t.Fatalf("schema_migrations has %d rows, want %d", got, len(ms))
		}
	})

	t.Run("failure leaves nothing", func(t *testing.T) {
		t.Parallel()
		db := fresh(t)()
		broken := fstest.MapFS{}
		for _, m := range ms {
			broken[m.Name] = &fstest.MapFile{Data: []byte(m.SQL)}
		}
		// Its first statement succeeds, its second fails.
		broken["9999_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE half_done (a INTEGER);
			INSERT INTO no_such_table (a) VALUES (1);`)}
		n, err := sqlstore.Migrate(t.Context(), db, d, broken, nil)
		if err == nil {
			t.Fatal("a failing migration reported success")
		}
		if n != len(ms) {
			t.Fatalf("applied %d migrations before the failing one, want %d", n, len(ms))
		}
		if _, err := db.ExecContext(t.Context(), `SELECT COUNT(*) FROM half_done`); err == nil {
			t.Fatal("the failed migration's first statement outlived it")
		}
		var one int
		err = db.QueryRowContext(t.Context(), d.Rebind(`SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, 1), 9999).Scan(&one)
		must(t, err)
		if one != 0 {
			t.Fatal("the failed migration is recorded as applied")
		}
		// Fixed, it applies.
		broken["9999_broken.sql"] = &fstest.MapFile{Data: []byte(`CREATE TABLE half_done (a INTEGER);`)}
		n, err = sqlstore.Migrate(t.Context(), db, d, broken, nil)
		must(t, err)
		if n != 1 {
			t.Fatalf("the fixed migration: applied %d, want 1", n)
		}
	})

	t.Run("0008 keeps alerts", func(t *testing.T) {
		t.Parallel()
		testAlertMigration(t, fresh, d, migrations)
	})

	t.Run("0021 keeps samples", func(t *testing.T) {
		t.Parallel()
		testReadingsMigration(t, fresh, d, migrations)
	})

	t.Run("bad names", func(t *testing.T) {
		t.Parallel()
		tests := []fstest.MapFS{
			{"init.sql": {Data: []byte("SELECT 1;")}},
			{"0001_a.sql": {Data: []byte("SELECT 1;")}, "001_b.sql": {Data: []byte("SELECT 1;")}},
			{},
		}
		for _, fsys := range tests {
			if _, err := sqlstore.Migrations(fsys); err == nil {
				t.Fatalf("migrations %v accepted", fsys)
			}
		}
	})
}
