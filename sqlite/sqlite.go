// Package sqlite is Steward's embedded store: steward.Store on a SQLite
// file through modernc.org/sqlite (pure Go, no cgo), with the schema
// migrations it needs.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"runtime"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/steward-iot/steward/query"
	"github.com/steward-iot/steward/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the SQLite store.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded: cannot happen
	}
	return sub
}

// Dialect returns the sqlstore dialect of SQLite.
func Dialect() *sqlstore.Dialect {
	return &sqlstore.Dialect{
		Name:      "sqlite",
		Query:     query.SQLite,
		MaxParams: 32766, // SQLITE_MAX_VARIABLE_NUMBER since 3.32
		// Times are INTEGER Unix microseconds, never negative for a sample.
		TimeBucket: func(col string, width time.Duration) string {
			us := width.Microseconds()
			return fmt.Sprintf("((%s / %d) * %d)", col, us, us)
		},
		IsUniqueViolation: func(err error) bool {
			c := code(err)
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		},
		IsForeignKeyViolation: func(err error) bool { return code(err) == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY },
		IsTransient: func(err error) bool {
			c := code(err) & 0xff // the primary code of an extended one
			return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
		},
		// No lock needed: the write connection begins every transaction
		// with BEGIN IMMEDIATE, which already excludes any other writer,
		// in this process or another.
	}
}

// code returns the (extended) SQLite result code of err, or 0.
func code(err error) int {
	var e *sqlitedrv.Error
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// The connection settings. Every connection: wait up to 10 s for a lock
// held by another process, enforce foreign keys, fsync at each commit
// (synchronous=FULL: an acknowledged write survives a power cut), and bind
// time.Time as Unix microseconds (the schema's time encoding).
const common = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=synchronous(FULL)&_time_integer_format=unix_micro"

// writer is the write connection's own settings: transactions that take
// the write lock at BEGIN (see Open), and, for the telemetry hot path, a
// page cache (64 MiB) that holds the tail page of every busy series, and a
// WAL checkpointed every 10,000 pages (about 40 MiB) rather than every
// 1,000: a batch of samples dirties one index page per series, and the
// next batches dirty the same pages again, so a rarer checkpoint copies
// each of them once for many commits (measured: about a quarter more rows/s
// in BenchmarkWriteSamples/spread). The WAL file is cut back to 64 MiB
// after a checkpoint.
const writer = "_pragma=journal_mode(WAL)&_txlock=immediate&_pragma=cache_size(-65536)&_pragma=wal_autocheckpoint(10000)&_pragma=journal_size_limit(67108864)"

// Open opens (creating it if need be) the SQLite database at path, brings
// its schema up to date and returns the store. The directory must exist.
//
// SQLite has one writer at a time, so the store gets two pools. Writes and
// transactions go through a pool of exactly one connection whose
// transactions start with BEGIN IMMEDIATE: writers queue in Go, in
// database/sql, instead of contending for the file lock and failing with
// SQLITE_BUSY when a deferred transaction tries to upgrade its read lock
// (which no busy timeout can cure). That one connection also keeps the hot
// path's prepared statements. Plain reads go through a pool of read-only
// connections, which WAL lets run alongside the writer.
func Open(ctx context.Context, path string, logger *slog.Logger) (*sqlstore.Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	d := Dialect()
	wdb, err := openWriter(ctx, path)
	if err != nil {
		return nil, err
	}
	if _, err := sqlstore.Migrate(ctx, wdb, d, Migrations(), logger); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", path, err)
	}

	rdb, err := sql.Open("sqlite", uri(path)+"?"+common+"&_query_only=1")
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	if err := rdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("sqlite: open %s for reading: %w", path, err)
	}
	logger.Debug("sqlite store open", "path", path, "readers", readers)
	return sqlstore.New(wdb, rdb, d, logger), nil
}

// uri returns the file: URI of path, so that any path (with '?' or '#' in
// it) names the file.
func uri(path string) string { return "file:" + (&url.URL{Path: path}).EscapedPath() }

// openWriter opens the pool of one connection that takes every write.
func openWriter(ctx context.Context, path string) (*sql.DB, error) {
	wdb, err := sql.Open("sqlite", uri(path)+"?"+common+"&"+writer)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	if err := wdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return wdb, nil
}
