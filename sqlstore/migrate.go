package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Migration is one numbered schema change.
type Migration struct {
	Version int
	Name    string // the file name
	SQL     string
}

// Migrations reads the migrations at the root of fsys: files named
// NNNN_description.sql, ordered by number, each number used once.
func Migrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var out []Migration
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || path.Ext(name) != ".sql" {
			continue
		}
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(b)})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s have the same number", out[i-1].Name, out[i].Name)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no migrations found")
	}
	return out, nil
}

// Migrate applies the migrations of fsys that db has not seen, in order,
// each in its own transaction together with its row in schema_migrations,
// so that a failed migration leaves nothing behind. It returns how many it
// applied. Two processes may migrate at once: the dialect's lock (an
// advisory lock on PostgreSQL; SQLite's single writer, with transactions
// that take the write lock at BEGIN) serialises them, and each migration
// checks again inside its transaction that it is still to be applied.
func Migrate(ctx context.Context, db *sql.DB, d *Dialect, fsys fs.FS, logger *slog.Logger) (int, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ms, err := Migrations(fsys)
	if err != nil {
		return 0, err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close()
	if d.LockMigrations != nil {
		unlock, err := d.LockMigrations(ctx, conn)
		if err != nil {
			return 0, fmt.Errorf("migrate: lock: %w", err)
		}
		defer func() {
			// A fresh context: the lock must be released even when ctx is done.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			if err := unlock(uctx); err != nil {
				logger.Warn("migrate: unlock failed", "backend", d.Name, "err", err)
			}
		}()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		applied_at TEXT NOT NULL)`); err != nil {
		return 0, fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	applied := 0
	for _, m := range ms {
		done, err := applyMigration(ctx, conn, d, m)
		if err != nil {
			return applied, fmt.Errorf("migration %s: %w", m.Name, err)
		}
		if done {
			applied++
			logger.Info("migration applied", "backend", d.Name, "migration", m.Name)
		}
	}
	return applied, nil
}

// applyMigration applies m unless it is recorded, and reports whether it did.
func applyMigration(ctx context.Context, conn *sql.Conn, d *Dialect, m Migration) (bool, error) {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var one int
	err = tx.QueryRowContext(ctx, d.Rebind(`SELECT 1 FROM schema_migrations WHERE version = ?`, 1), m.Version).Scan(&one)
	if err == nil {
		return false, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, fmt.Errorf("check: %w", err)
	}
	if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, d.Rebind(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`, 1),
		m.Version, m.Name, time.Now().UTC().Format(time.RFC3339Nano)); err != nil {
		return false, fmt.Errorf("record: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}
