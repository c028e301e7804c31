package telemetry

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx database/sql driver, for the schema of a test

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/postgres"
)

// testClock is a clock the test sets.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock(t time.Time) *testClock { return &testClock{now: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

// backend opens a new empty store.
type backend struct {
	name string
	open func(t *testing.T) steward.Store
}

// backends returns SQLite and, when STEWARD_TEST_POSTGRES is set,
// PostgreSQL (on a schema of its own per test).
func backends(t *testing.T) []backend {
	t.Helper()
	out := []backend{{"sqlite", func(t *testing.T) steward.Store { return openStore(t) }}}
	base, ok := pgtest.URL()
	if !ok {
		t.Log("STEWARD_TEST_POSTGRES is not set: testing on SQLite only")
		return out
	}
	return append(out, backend{"postgres", func(t *testing.T) steward.Store {
		t.Helper()
		_, u := pgtest.Schema(t, base, "telemetrytest_")
		st, err := postgres.Open(t.Context(), u, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		return st
	}})
}

// tempDB returns a new database path in the test's directory.
func tempDB(t testing.TB) string { return filepath.Join(t.TempDir(), "s.db") }

// must fails on an error.
func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
