// Package teststores opens the stores a test runs on: SQLite always, and
// PostgreSQL in a schema of the test's own when STEWARD_TEST_POSTGRES is
// set (the test says so in its log when it is not).
package teststores

import (
	"path/filepath"
	"testing"

	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/postgres"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/sqlstore"
)

// Backends returns, by name ("sqlite", "postgres"), functions that open a
// new empty store closed at the end of the test that opens it; prefix
// names the PostgreSQL schemas.
func Backends(t *testing.T, prefix string) map[string]func(t *testing.T) *sqlstore.Store {
	t.Helper()
	b := map[string]func(t *testing.T) *sqlstore.Store{"sqlite": SQLite}
	base, ok := pgtest.URL()
	if !ok {
		t.Log("STEWARD_TEST_POSTGRES is not set: PostgreSQL skipped")
		return b
	}
	b["postgres"] = func(t *testing.T) *sqlstore.Store {
		t.Helper()
		_, u := pgtest.Schema(t, base, prefix)
		s, err := postgres.Open(t.Context(), u, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	return b
}

// SQLite opens a new SQLite store in the test's temporary directory.
func SQLite(t *testing.T) *sqlstore.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
