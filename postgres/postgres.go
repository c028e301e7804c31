// Package postgres is Steward's cluster store: steward.Store on PostgreSQL
// through pgx (its database/sql driver), with the schema migrations it
// needs.
package postgres

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/steward-iot/steward/query"
	"github.com/steward-iot/steward/sqlstore"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrations returns the schema migrations of the PostgreSQL store.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		panic(err) // the directory is embedded: cannot happen
	}
	return sub
}

// SQLSTATEs the store tells apart.
const (
	uniqueViolation     = "23505"
	foreignKeyViolation = "23503"
)

// transient reports whether a SQLSTATE is worth trying again later.
func transient(state string) bool {
	switch state {
	case "40001", // serialization_failure
		"40P01", // deadlock_detected
		"55P03", // lock_not_available
		"53300", // too_many_connections
		"57P03": // cannot_connect_now
		return true
	}
	return false
}

// Dialect returns the sqlstore dialect of PostgreSQL.
func Dialect() *sqlstore.Dialect {
	return &sqlstore.Dialect{
		Name:      "postgres",
		Numbered:  true,
		Query:     query.Postgres,
		MaxParams: 65535,
		// A batch of readings as four arrays, one statement whatever its
		// size: for samples, arrays gave a tenth to a third more rows/s
		// than 100-row INSERTs (fewer parameters to bind, one plan).
		ReadingArrays: `SELECT t, d, a, m::jsonb FROM unnest(?::text[], ?::text[], ?::timestamptz[], ?::text[]) AS u(t, d, a, m)`,
		// A reading's metrics are JSONB: jsonb_each_text gives the numbers
		// as text, which float8 reads back exactly; || keeps its right
		// operand's value of a key both hold.
		EachMetric:            func(col, alias string) string { return "jsonb_each_text(" + col + ") " + alias },
		MetricValue:           func(alias string) string { return alias + ".value::float8" },
		KeepFirst:             func(incoming, stored string) string { return "(" + incoming + " || " + stored + ")" },
		IsUniqueViolation:     func(err error) bool { return sqlState(err) == uniqueViolation },
		IsForeignKeyViolation: func(err error) bool { return sqlState(err) == foreignKeyViolation },
		IsTransient:           func(err error) bool { return transient(sqlState(err)) },
		LockMigrations:        lockMigrations,
		TimeBucket: func(col string, width time.Duration) string {
			return fmt.Sprintf("date_bin('%d seconds', %s, TIMESTAMPTZ '1970-01-01 00:00:00+00')", int64(width.Seconds()), col)
		},
		LockRollups: `SELECT pg_advisory_xact_lock(` + rollupLock + `)`,
		ForUpdate:   ` FOR UPDATE`,
		SkipLocked:  ` FOR UPDATE SKIP LOCKED`,
	}
}

// sqlState returns err's SQLSTATE, or "".
func sqlState(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// migrationLock is the advisory lock key of the migrations of the
// connection's schema: deployments in different schemas of one database
// migrate independently.
const migrationLock = `hashtextextended('steward.migrate.' || coalesce(current_schema(), ''), 0)`

// rollupLock is the advisory lock key of the telemetry rollups of the
// current schema (see sqlstore.Dialect.LockRollups).
const rollupLock = `hashtextextended('steward.rollup.' || coalesce(current_schema(), ''), 0)`

// lockMigrations takes a session advisory lock, so that of two processes
// starting at once one migrates and the other then finds nothing to do.
func lockMigrations(ctx context.Context, c *sql.Conn) (func(context.Context) error, error) {
	if _, err := c.ExecContext(ctx, `SELECT pg_advisory_lock(`+migrationLock+`)`); err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		_, err := c.ExecContext(ctx, `SELECT pg_advisory_unlock(`+migrationLock+`)`)
		return err
	}, nil
}

// Open connects to the PostgreSQL database at url (a postgres:// URL or a
// key=value DSN; a search_path parameter selects the schema), brings its
// schema up to date and returns the store.
func Open(ctx context.Context, url string, logger *slog.Logger) (*sqlstore.Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password and all.
		return nil, errors.New("postgres: invalid connection URL")
	}
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(20)
	db.SetMaxIdleConns(10)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	d := Dialect()
	if _, err := sqlstore.Migrate(ctx, db, d, Migrations(), logger); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("postgres: %w", err)
	}
	logger.Debug("postgres store open", "host", cfg.Host, "database", cfg.Database)
	return sqlstore.New(db, db, d, logger), nil
}
