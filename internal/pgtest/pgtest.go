// Package pgtest gives tests a PostgreSQL schema of their own on the server
// named by STEWARD_TEST_POSTGRES.
package pgtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// Env names the variable holding the test server's URL.
const Env = "STEWARD_TEST_POSTGRES"

// URL returns the test server's URL, and whether one is set.
func URL() (string, bool) {
	u := os.Getenv(Env)
	return u, u != ""
}

// Schema creates a schema with a random name (prefix and 16 hex digits) on
// the server at base, dropped when the test ends, and returns its name and
// a URL whose connections use it (search_path). Cleanups run last-registered
// first, so pools a test opens on the URL afterwards are closed before the
// schema is dropped.
func Schema(t testing.TB, base, prefix string) (name, schemaURL string) {
	t.Helper()
	u, err := url.Parse(base)
	if err != nil || u.Scheme == "" {
		t.Fatalf("%s must be a postgres:// URL: %v", Env, err)
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	name = prefix + hex.EncodeToString(b)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.Close() })
	if _, err := admin.ExecContext(context.Background(), "CREATE SCHEMA "+name); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := admin.ExecContext(ctx, "DROP SCHEMA "+name+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", name, err)
		}
	})
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return name, u.String()
}
