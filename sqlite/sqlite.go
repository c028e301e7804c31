// Package sqlite is Steward's embedded store: steward.Store on a SQLite
// file through modernc.org/sqlite (pure Go, no cgo), with the schema
// migrations it needs.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	sqlitedrv "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/steward-iot/steward/query"
	"github.com/steward-iot/steward/sqlstore"
)

//go:embed migrations/*.sql telemetry/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the SQLite store's main
// database.
func Migrations() fs.FS { return embedded("migrations") }

// TelemetryMigrations returns the schema migrations of its telemetry
// database (TelemetryPath).
func TelemetryMigrations() fs.FS { return embedded("telemetry") }

func embedded(dir string) fs.FS {
	sub, err := fs.Sub(migrationFiles, dir)
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
		// A reading's metrics are JSON text; json_each gives a number as
		// INTEGER or REAL, hence the cast.
		EachMetric:  func(col, alias string) string { return "json_each(" + col + ") " + alias },
		MetricValue: func(alias string) string { return "CAST(" + alias + ".value AS REAL)" },
		KeepFirst:   func(incoming, stored string) string { return "json_patch(" + incoming + ", " + stored + ")" },
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
// the write lock at BEGIN (see Open), and a WAL checkpointed every 10,000
// pages (about 40 MiB) rather than every 1,000: a batch of samples dirties
// one index page per series, and the next batches dirty the same pages
// again, so a rarer checkpoint copies each of them once for many commits
// (measured: about a quarter more rows/s in BenchmarkWriteSamples/spread).
// The WAL file is cut back to 64 MiB after a checkpoint. Its page cache is
// Options.CacheSize.
const writer = "_pragma=journal_mode(WAL)&_txlock=immediate&_pragma=wal_autocheckpoint(10000)&_pragma=journal_size_limit(67108864)"

// DefaultCacheSize is the write connection's page cache (Options.CacheSize):
// 256 MiB. With 10,000 devices × 10 metrics the telemetry writer touches
// a different leaf of samples for each device; with SQLite's 64 MiB of
// before, half the pages a batch touched had to be read again
// (BenchmarkWriteSamplesFleet: 1.01 reads per sample with 64 MiB, 0.53
// with 256 MiB, the rest being the WAL checkpoint's; see
// docs/benchmarks.md). SQLite allocates the cache as pages are used, so a
// small database uses little of it.
const DefaultCacheSize = 256 << 20

// Options tunes the SQLite store; the zero value is the defaults.
type Options struct {
	// CacheSize is the most memory, in bytes, the write connection's page
	// cache uses (default DefaultCacheSize). Read connections keep
	// SQLite's own 2 MiB each.
	CacheSize int64
	// MmapSize, when positive, is how many bytes of the database file
	// every connection reads through a memory map instead of read system
	// calls (default none: it did not change the writer's cost in
	// BenchmarkWriteSamplesFleet once the cache holds its pages, and an
	// I/O error on a mapped page is a signal that kills the process
	// rather than an error).
	MmapSize int64
}

// pragmas returns the DSN parameters of o for the writer (all) or a
// reader (the memory map only).
func (o Options) pragmas(writer bool) string {
	p := fmt.Sprintf("&_pragma=mmap_size(%d)", max(o.MmapSize, 0))
	if writer {
		cache := o.CacheSize
		if cache <= 0 {
			cache = DefaultCacheSize
		}
		p += fmt.Sprintf("&_pragma=cache_size(%d)", -max(cache/1024, 1)) // negative: KiB
	}
	return p
}

// Open opens (creating it if need be) the SQLite database at path, brings
// its schema up to date and returns the store, with the default Options.
// The directory must exist.
//
// SQLite has one writer at a time per database file. Writes and
// transactions go through a pool of exactly one connection whose
// transactions start with BEGIN IMMEDIATE: writers queue in Go, in
// database/sql, instead of contending for the file lock and failing with
// SQLITE_BUSY when a deferred transaction tries to upgrade its read lock
// (which no busy timeout can cure). Plain reads go through a pool of
// read-only connections, which WAL lets run alongside the writer.
//
// The tables the telemetry intake writes (sqlstore.TelemetryTables) are
// in a second file, TelemetryPath(path), with a writer connection of its
// own, which also keeps the hot path's prepared statements: the intake's
// commits never wait for the main writer, which the rollup job holds for
// seconds each minute at 100,000 samples/s, and the two writers use both
// cores. Every connection of the main database attaches the telemetry one
// read-only, so readers and the rollup job read both in one snapshot.
func Open(ctx context.Context, path string, logger *slog.Logger) (*sqlstore.Store, error) {
	return OpenWith(ctx, path, Options{}, logger)
}

// OpenWith is Open with Options.
func OpenWith(ctx context.Context, path string, opts Options, logger *slog.Logger) (*sqlstore.Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if path == "" {
		return nil, errors.New("sqlite: empty database path")
	}
	d := Dialect()
	tpath := TelemetryPath(path)
	twdb, err := openWriterWith(ctx, tpath, opts)
	if err != nil {
		return nil, err
	}
	if _, err := sqlstore.Migrate(ctx, twdb, d, TelemetryMigrations(), logger); err != nil {
		_ = twdb.Close()
		return nil, fmt.Errorf("sqlite: %s: %w", tpath, err)
	}
	if err := migrateMain(ctx, path, tpath, opts, logger); err != nil {
		_ = twdb.Close()
		return nil, err
	}
	// The main writer attaches the telemetry database read-only: its
	// transactions (BEGIN IMMEDIATE) then take no lock the intake waits for.
	wdb := sql.OpenDB(attaching{dsn: uri(path) + "?" + common + "&" + writer + opts.pragmas(true), telemetry: uri(tpath) + "?mode=ro"})
	singleConn(wdb)
	rdb := sql.OpenDB(attaching{dsn: uri(path) + "?" + common + "&_query_only=1" + opts.pragmas(false), telemetry: uri(tpath) + "?mode=ro"})
	readers := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(readers)
	rdb.SetMaxIdleConns(readers)
	for _, db := range []*sql.DB{wdb, rdb} {
		if err := db.PingContext(ctx); err != nil {
			_ = twdb.Close()
			_ = wdb.Close()
			_ = rdb.Close()
			return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
		}
	}
	logger.Debug("sqlite store open", "path", path, "telemetry", tpath, "readers", readers)
	s := sqlstore.New(wdb, rdb, d, logger)
	s.SetTelemetryWriter(twdb)
	return s, nil
}

// migrateMain brings the main database's schema up to date, on a write
// connection of its own, and moves the telemetry tables' rows that the
// main database still holds (from before they had a database of their
// own) into the telemetry database.
func migrateMain(ctx context.Context, path, tpath string, opts Options, logger *slog.Logger) error {
	mdb, err := openWriterWith(ctx, path, opts)
	if err != nil {
		return err
	}
	defer mdb.Close()
	if _, err := sqlstore.Migrate(ctx, mdb, Dialect(), Migrations(), logger); err != nil {
		return fmt.Errorf("sqlite: %s: %w", path, err)
	}
	if err := adoptTelemetry(ctx, mdb, uri(tpath), logger); err != nil {
		return fmt.Errorf("sqlite: %s: move telemetry tables to %s: %w", path, tpath, err)
	}
	return nil
}

// adoptTelemetry moves the rows of samples_recent and metric_latest from
// the main database, where migrations 0017 and 0021 made them, into the
// telemetry database, and drops the main database's tables. It copies in
// one transaction, which writes only the telemetry database, and drops in
// another, which writes only the main one: SQLite commits a transaction
// over two WAL databases one file at a time, so one transaction doing both
// could, cut short by a crash, drop the rows it had not yet copied. A
// crash between the two leaves the rows in both, and the next open copies
// again (a row already copied is kept) and drops. mdb is one connection.
func adoptTelemetry(ctx context.Context, mdb *sql.DB, telemetryURI string, logger *slog.Logger) error {
	var n int
	if err := mdb.QueryRowContext(ctx, `SELECT count(*) FROM main.sqlite_schema
		WHERE type = 'table' AND name IN ('samples_recent', 'metric_latest')`).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	if _, err := mdb.ExecContext(ctx, `ATTACH DATABASE ? AS `+sqlstore.TelemetrySchema, telemetryURI); err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	defer func() {
		_, _ = mdb.ExecContext(context.WithoutCancel(ctx), `DETACH DATABASE `+sqlstore.TelemetrySchema)
	}()
	tx, err := mdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `INSERT INTO telemetry.samples_recent (at, tenant_id, device_id, metrics)
		SELECT at, tenant_id, device_id, metrics FROM main.samples_recent WHERE true ON CONFLICT DO NOTHING`)
	if err != nil {
		return fmt.Errorf("copy samples_recent: %w", err)
	}
	readings, _ := res.RowsAffected()
	if res, err = tx.ExecContext(ctx, `INSERT INTO telemetry.metric_latest (tenant_id, device_id, at, metrics)
		SELECT tenant_id, device_id, at, metrics FROM main.metric_latest WHERE true ON CONFLICT DO NOTHING`); err != nil {
		return fmt.Errorf("copy metric_latest: %w", err)
	}
	devices, _ := res.RowsAffected()
	if err := tx.Commit(); err != nil {
		return err
	}
	if tx, err = mdb.BeginTx(ctx, nil); err != nil {
		return err
	}
	for _, table := range []string{"samples_recent", "metric_latest"} {
		if _, err := tx.ExecContext(ctx, `DROP TABLE main.`+table); err != nil {
			return fmt.Errorf("drop %s: %w", table, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	logger.Info("telemetry tables moved to their own database", "readings", readings, "devices", devices)
	return nil
}

// TelemetryPath returns where the store at path keeps its telemetry
// database: steward.db's is steward-telemetry.db, beside it. A backup
// takes both files (docs/operations.md).
func TelemetryPath(path string) string {
	ext := filepath.Ext(path)
	return strings.TrimSuffix(path, ext) + "-telemetry" + ext
}

// attaching is a connector of the sqlite driver whose connections attach
// the telemetry database as sqlstore.TelemetrySchema. database/sql opens
// connections when it likes, so a connector, not an ATTACH run once,
// makes sure every one of them sees it.
type attaching struct {
	dsn       string // the main database
	telemetry string // the telemetry database's URI
}

// Connect implements driver.Connector.
func (a attaching) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := a.Driver().Open(a.dsn)
	if err != nil {
		return nil, err
	}
	ex, ok := conn.(driver.ExecerContext)
	if !ok {
		_ = conn.Close()
		return nil, errors.New("sqlite: the driver's connection cannot execute statements")
	}
	if _, err := ex.ExecContext(ctx, `ATTACH DATABASE ? AS `+sqlstore.TelemetrySchema, []driver.NamedValue{{Ordinal: 1, Value: a.telemetry}}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("sqlite: attach the telemetry database: %w", err)
	}
	return conn, nil
}

// Driver implements driver.Connector.
func (attaching) Driver() driver.Driver { return &sqlitedrv.Driver{} }

// uri returns the file: URI of path, so that any path (with '?' or '#' in
// it) names the file.
func uri(path string) string { return "file:" + (&url.URL{Path: path}).EscapedPath() }

// singleConn makes db a pool of one connection, kept open.
func singleConn(db *sql.DB) {
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
}

// openWriter opens the pool of one connection that takes every write,
// with the default Options.
func openWriter(ctx context.Context, path string) (*sql.DB, error) {
	return openWriterWith(ctx, path, Options{})
}

// openWriterWith opens the pool of one connection that takes every write.
func openWriterWith(ctx context.Context, path string, opts Options) (*sql.DB, error) {
	wdb, err := sql.Open("sqlite", uri(path)+"?"+common+"&"+writer+opts.pragmas(true))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	singleConn(wdb)
	if err := wdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	return wdb, nil
}
