// Package sqlstore implements steward.Store over database/sql, once for every
// SQL backend. A Dialect holds the few differences (placeholders, error
// classification, the fleet query dialect, bulk sample writes, the
// migration lock); the sqlite and postgres packages set up their driver,
// keep their migrations (applied with Migrate) and hand this package a
// Dialect.
//
// Tenant isolation lives in the SQL: every tenant-scoped statement matches
// tenant_id, and rows that refer to a device (certificates, lifecycle
// events) carry a foreign key on (tenant_id, device_id), so another
// tenant's ID finds nothing and writes nothing.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/steward-iot/steward"
)

// Store is a steward.Store over database/sql.
type Store struct {
	d   *Dialect
	log *slog.Logger

	// wdb takes writes and transactions, rdb plain reads. They are the same
	// pool on PostgreSQL; on SQLite wdb is one connection (SQLite has one
	// writer) and rdb a pool of read-only ones.
	wdb, rdb *sql.DB
	// twdb, when set (SetTelemetryWriter), is the one writer of the
	// telemetry tables, which then live in a database of their own.
	twdb *sql.DB

	// w and r are where this Store's statements go: the pools, or one
	// transaction for both when the Store is bound to it.
	w, r execer
	tx   *sql.Tx
	// afterCommit, in a transaction-bound Store, holds what runs once the
	// transaction has committed: writes to the telemetry tables, when
	// they have a writer of their own.
	afterCommit *[]func(context.Context) error

	// shared is the state common to a root Store and its transaction-bound
	// copies.
	shared *shared
}

type shared struct {
	// moveChunk is the most readings a transaction of the rollup's move
	// takes (SetMoveChunk; 0: DefaultMoveChunk).
	moveChunk atomic.Int64
	// snaps orders the readers' snapshots against the rollup's move (see
	// snapGate).
	snaps snapGate
	// moveHook, when set (by tests), runs in each transaction of the
	// rollup's move after its INSERT.
	moveHook func(context.Context)
	// deleteHook, when set (by tests), runs between the first pass of
	// withTelemetryDeleted and its transaction.
	deleteHook func(context.Context)
	// latest caches the rows of metric_latest, with a telemetry writer of
	// its own (see latestCache); nil otherwise.
	latest  *latestCache
	rebound sync.Map // query text → dialect text
	stmtMu  sync.Mutex
	stmts   map[stmtKey]*sql.Stmt // prepared for the hot path
}

// stmtKey names a prepared statement: its text, and whether it is
// prepared on the telemetry writer (SetTelemetryWriter) or on wdb.
type stmtKey struct {
	telemetry bool
	query     string
}

// execer is what *sql.DB and *sql.Tx have in common that the store uses.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var _ steward.Store = (*Store)(nil)

// New returns a Store that writes through wdb and reads through rdb (which
// may be wdb); d's error classifiers that are nil classify nothing. The
// schema must be in place (see Migrate). The Store owns both pools: Close
// closes them.
func New(wdb, rdb *sql.DB, d *Dialect, logger *slog.Logger) *Store {
	if rdb == nil {
		rdb = wdb
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	no := func(error) bool { return false }
	dc := *d
	for _, f := range []*func(error) bool{&dc.IsUniqueViolation, &dc.IsForeignKeyViolation, &dc.IsTransient} {
		if *f == nil {
			*f = no
		}
	}
	d = &dc
	return &Store{
		d: d, log: logger,
		wdb: wdb, rdb: rdb,
		w: wdb, r: rdb,
		shared: &shared{stmts: map[stmtKey]*sql.Stmt{}},
	}
}

// Dialect returns the store's dialect.
func (s *Store) Dialect() *Dialect { return s.d }

// DB returns the pool that takes writes, for tools and tests that need the
// database itself (on SQLite, one that only reads the telemetry tables:
// see TelemetryDB).
func (s *Store) DB() *sql.DB { return s.wdb }

// Close closes the store's pools. Calling it on a transaction-bound Store
// (inside InTx) is an error.
func (s *Store) Close() error {
	if s.tx != nil {
		return steward.Errorf(steward.CodeFailedPrecondition, "cannot close a store inside a transaction")
	}
	s.shared.stmtMu.Lock()
	for q, st := range s.shared.stmts {
		_ = st.Close()
		delete(s.shared.stmts, q)
	}
	s.shared.stmtMu.Unlock()
	err := s.wdb.Close()
	if s.rdb != s.wdb {
		err = errors.Join(err, s.rdb.Close())
	}
	if s.twdb != nil {
		err = errors.Join(err, s.twdb.Close())
	}
	return err
}

// SetTelemetryWriter gives the store a writer of its own for the tables
// the telemetry intake writes (TelemetryTables), which the SQLite store
// keeps in a database file of their own, so that the intake never waits
// for another writer (the rollup job holds the main writer for seconds a
// minute). Every write of those tables goes through db: WriteSamples, the
// rollup's delete of what it moved, retention and erasure; the main
// writer and the readers only read them. Call it before the store is
// used; the store closes db.
func (s *Store) SetTelemetryWriter(db *sql.DB) {
	s.twdb = db
	s.shared.latest = &latestCache{devs: map[[2]string]deviceLatest{}}
}

// TelemetryDB returns the pool that writes the telemetry tables: the one
// SetTelemetryWriter gave, or the one DB returns.
func (s *Store) TelemetryDB() *sql.DB {
	if s.twdb != nil {
		return s.twdb
	}
	return s.wdb
}

// TelemetryTables are the tables the telemetry intake writes, those
// SetTelemetryWriter's writer takes.
var TelemetryTables = []string{"samples_recent", "metric_latest", "telemetry_batch"}

// splitTelemetry reports whether the telemetry tables have a writer of
// their own.
func (s *Store) splitTelemetry() bool { return s.twdb != nil }

// InTx runs fn with a Store bound to one transaction, committed when fn
// returns nil and rolled back otherwise (also when fn panics). Inside a
// transaction InTx runs fn in the same transaction. fn must use the Store
// it is given: on SQLite the outer Store's writes would wait for the one
// write connection that fn's transaction holds. Where the telemetry
// tables have a writer of their own, fn's writes to them (WriteSamples)
// run once the transaction has committed; if one of those fails, InTx
// returns its error although the transaction committed.
func (s *Store) InTx(ctx context.Context, fn func(tx steward.Store) error) error {
	if s.tx != nil {
		return fn(s)
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(err, "begin transaction")
	}
	done := false
	defer func() {
		if done {
			return
		}
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			s.log.Warn("rollback failed", "backend", s.d.Name, "err", rerr)
		}
	}()
	bound := *s
	bound.w, bound.r, bound.tx = tx, tx, tx
	bound.afterCommit = new([]func(context.Context) error)
	if err := fn(&bound); err != nil {
		return err
	}
	done = true
	if err := tx.Commit(); err != nil {
		return s.fail(err, "commit transaction")
	}
	for _, f := range *bound.afterCommit {
		if err := f(ctx); err != nil {
			return fmt.Errorf("after the commit: %w", err)
		}
	}
	return nil
}

// q returns the dialect's text of a statement written with ? placeholders.
func (s *Store) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	if v, ok := s.shared.rebound.Load(query); ok {
		return v.(string)
	}
	r := s.d.Rebind(query, 1)
	s.shared.rebound.Store(query, r)
	return r
}

// exec runs a statement on the write side.
func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.w.ExecContext(ctx, s.q(query), args...)
}

// queryRow runs a one-row query on the read side.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	if s.tx == nil && s.splitTelemetry() {
		defer s.shared.snaps.exit(s.shared.snaps.enter())
	}
	return s.r.QueryRowContext(ctx, s.q(query), args...)
}

// query runs a query on the read side.
func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.queryRebound(ctx, s.q(query), args...)
}

// queryRebound is query for a statement in the dialect's placeholders
// already.
func (s *Store) queryRebound(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s.tx == nil && s.splitTelemetry() {
		defer s.shared.snaps.exit(s.shared.snaps.enter())
	}
	return s.r.QueryContext(ctx, query, args...)
}

// prepare prepares query once on the write pool, for the hot path, and
// keeps it: database/sql then keeps it prepared on each connection it runs
// on, so that its SQL is parsed once per connection, not once per batch.
// It must be called outside a transaction: on SQLite the one write
// connection would be the transaction's.
func (s *Store) prepare(ctx context.Context, query string) error {
	return s.prepareOn(ctx, false, query)
}

// prepareOn is prepare on the telemetry writer (TelemetryDB) when
// telemetry is set.
func (s *Store) prepareOn(ctx context.Context, telemetry bool, query string) error {
	key := stmtKey{telemetry && s.splitTelemetry(), s.q(query)}
	s.shared.stmtMu.Lock()
	defer s.shared.stmtMu.Unlock()
	if _, ok := s.shared.stmts[key]; ok {
		return nil
	}
	db := s.wdb
	if key.telemetry {
		db = s.twdb
	}
	st, err := db.PrepareContext(ctx, key.query)
	if err != nil {
		return err
	}
	s.shared.stmts[key] = st
	return nil
}

// execIn runs query in tx, a transaction of the write pool, through its
// prepared statement when prepare made one.
func (s *Store) execIn(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	return s.execOn(ctx, tx, false, query, args...)
}

// execOn is execIn for a transaction of the telemetry writer when
// telemetry is set.
func (s *Store) execOn(ctx context.Context, tx *sql.Tx, telemetry bool, query string, args ...any) (sql.Result, error) {
	query = s.q(query)
	s.shared.stmtMu.Lock()
	st := s.shared.stmts[stmtKey{telemetry && s.splitTelemetry(), query}]
	s.shared.stmtMu.Unlock()
	if st == nil {
		return tx.ExecContext(ctx, query, args...)
	}
	return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
}

// fail turns a database error into a steward error: a *steward.Error passes
// as it is, unique violations are CodeConflict, foreign key violations
// CodeNotFound (the row refers to something not in its tenant), transient
// ones CodeUnavailable, the rest CodeInternal. The message names the
// operation; the cause is kept for the logs.
func (s *Store) fail(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var se *steward.Error
	if errors.As(err, &se) {
		return err
	}
	msg := fmt.Sprintf(format, args...)
	switch {
	case s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "%s: already exists", msg)
	case s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "%s: refers to something that does not exist", msg)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		s.d.IsTransient(err):
		return steward.WrapError(steward.CodeUnavailable, err, "%s: try again later", msg)
	}
	return steward.WrapError(steward.CodeInternal, err, "%s: %s database error", msg, s.d.Name)
}

// notFound reports a missing row.
func notFound(format string, args ...any) error {
	return steward.Errorf(steward.CodeNotFound, format, args...)
}

// invalid reports bad input.
func invalid(format string, args ...any) error {
	return steward.Errorf(steward.CodeInvalid, format, args...)
}

// required checks that each named value is not empty.
func required(kv ...string) error {
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "" {
			return invalid("%s is required", kv[i])
		}
	}
	return nil
}

// affected returns the rows a statement changed.
func affected(res sql.Result) (int64, error) {
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("rows affected: %w", err)
	}
	return n, nil
}
