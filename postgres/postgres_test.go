package postgres

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/sqlstore"
	"github.com/steward-iot/steward/storetest"
)

// serverURL returns the test server's URL, or skips the test.
func serverURL(t testing.TB) string {
	t.Helper()
	u, ok := pgtest.URL()
	if !ok {
		t.Skip("STEWARD_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable): skipping the PostgreSQL store tests")
	}
	return u
}

// freshSchema creates a schema with a random name, dropped when the test
// ends, and returns a URL whose connections use it.
func freshSchema(t testing.TB) string {
	t.Helper()
	_, u := pgtest.Schema(t, serverURL(t), "storetest_")
	return u
}

// open opens a store on a fresh schema.
func open(t testing.TB) *sqlstore.Store {
	t.Helper()
	s, err := Open(t.Context(), freshSchema(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func TestStore(t *testing.T) {
	serverURL(t)
	storetest.Run(t, func(t *testing.T) steward.Store { return open(t) })
}

func TestMigrations(t *testing.T) {
	serverURL(t)
	storetest.RunMigrations(t, func(t *testing.T) func() *sql.DB {
		u := freshSchema(t)
		return func() *sql.DB {
			cfg, err := pgx.ParseConfig(u)
			if err != nil {
				t.Fatal(err)
			}
			db := stdlib.OpenDB(*cfg)
			t.Cleanup(func() { _ = db.Close() })
			return db
		}
	}, Dialect(), Migrations())
}

func TestOpenConcurrently(t *testing.T) {
	t.Parallel()
	// Nodes of a cluster starting at once on an empty database: all of
	// them come up, on one schema.
	u := freshSchema(t)
	const nodes = 4
	stores := make([]*sqlstore.Store, nodes)
	errs := make([]error, nodes)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { stores[i], errs[i] = Open(t.Context(), u, nil) })
	}
	wg.Wait()
	for i := range nodes {
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		defer stores[i].Close()
	}
	if err := stores[0].CreateTenant(t.Context(), steward.Tenant{ID: "t", Name: "T", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := stores[nodes-1].GetTenant(t.Context(), "t"); err != nil {
		t.Fatalf("another node does not see the tenant: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := Open(t.Context(), "postgres://user:secret@127.0.0.1:bad/x", nil)
	if err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("bad URL: %v (must fail without showing the password)", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	if _, err := Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5", nil); err == nil {
		t.Fatal("Open succeeded with no server")
	}
}

// BenchmarkWriteSamples measures the telemetry hot path (see
// storetest.BenchmarkWriteSamples) on PostgreSQL.
func BenchmarkWriteSamples(b *testing.B) {
	storetest.BenchmarkWriteSamples(b, func(b *testing.B) steward.Store { return open(b) })
}

// BenchmarkFleetAggregates measures the query of fleet analytics (see
// storetest.BenchmarkFleetAggregates).
func BenchmarkFleetAggregates(b *testing.B) {
	storetest.BenchmarkFleetAggregates(b, func(b *testing.B) steward.Store { return open(b) })
}

// BenchmarkRollupSamples measures the rollup job's transaction (see
// storetest.BenchmarkRollupSamples).
func BenchmarkRollupSamples(b *testing.B) {
	storetest.BenchmarkRollupSamples(b, func(b *testing.B) steward.Store { return open(b) })
}
