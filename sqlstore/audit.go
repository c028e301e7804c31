package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/steward-iot/steward"
)

// The audit log's tables are in migration 0009; the audit package does the
// hashing and signing, this file keeps the rows in order.

// LockAuditLog implements steward.Store. The upsert changes nothing, but it
// takes the row lock of the log's head (PostgreSQL) or the write lock
// (SQLite, whose transactions begin immediate), and a second appender
// waits for it and then reads the size the first one left.
func (s *Store) LockAuditLog(ctx context.Context, tenantID string) (int64, error) {
	var size int64
	err := s.w.QueryRowContext(ctx, s.q(`INSERT INTO audit_logs (tenant_id, size) VALUES (?, 0)
		ON CONFLICT (tenant_id) DO UPDATE SET size = audit_logs.size RETURNING size`), tenantID).Scan(&size)
	return size, s.fail(err, "lock audit log %q", tenantID)
}

// AppendAudit implements steward.Store.
func (s *Store) AppendAudit(ctx context.Context, tenantID string, entries []steward.AuditEntry, cp steward.AuditCheckpoint) error {
	if len(entries) == 0 {
		return invalid("append to the audit log: no records")
	}
	first := entries[0].Record.Index
	if first < 0 {
		return invalid("append to the audit log: index %d is negative", first)
	}
	for i, e := range entries {
		switch {
		case e.Record.Index != first+int64(i):
			return invalid("append to the audit log: record %d follows record %d", e.Record.Index, first+int64(i)-1)
		case e.Record.TenantID != tenantID:
			return invalid("append to the audit log of %q: record %d is of tenant %q", tenantID, e.Record.Index, e.Record.TenantID)
		case len(e.Data) == 0:
			return invalid("append to the audit log: record %d has no data", e.Record.Index)
		case len(e.Hashes) == 0 || len(e.Hashes)%steward.AuditHashSize != 0:
			return invalid("append to the audit log: record %d has %d bytes of hashes, not a whole number of %d-byte hashes", e.Record.Index, len(e.Hashes), steward.AuditHashSize)
		case e.Record.Actor == "" || e.Record.Action == "" || e.Record.Outcome == "" || e.Record.At.IsZero():
			return invalid("append to the audit log: record %d needs an actor, an action, an outcome and a time", e.Record.Index)
		}
	}
	size := first + int64(len(entries))
	if cp.TenantID != tenantID || cp.Size != size || cp.Note == "" || cp.CreatedAt.IsZero() {
		return invalid("append to the audit log: the checkpoint must be of log %q at size %d, signed, with its time", tenantID, size)
	}
	return s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		res, err := t.exec(ctx, `UPDATE audit_logs SET size = ? WHERE tenant_id = ? AND size = ?`, size, tenantID, first)
		if err != nil {
			return t.fail(err, "append to audit log %q", tenantID)
		}
		n, err := affected(res)
		if err != nil {
			return t.fail(err, "append to audit log %q", tenantID)
		}
		if n == 0 {
			if first != 0 {
				return steward.Errorf(steward.CodeConflict, "audit log %q is no longer at size %d: another append came first", tenantID, first)
			}
			if _, err := t.exec(ctx, `INSERT INTO audit_logs (tenant_id, size) VALUES (?, ?)`, tenantID, size); err != nil {
				if t.d.IsUniqueViolation(err) {
					return steward.WrapError(steward.CodeConflict, err, "audit log %q is no longer empty: another append came first", tenantID)
				}
				return t.fail(err, "append to audit log %q", tenantID)
			}
		}
		for _, e := range entries {
			r := e.Record
			_, err := t.exec(ctx, `INSERT INTO audit_records (tenant_id, idx, actor, action, target, outcome, request_id, at, data, hashes)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				tenantID, r.Index, r.Actor, r.Action, r.Target, r.Outcome, r.RequestID, ts(r.At), e.Data, e.Hashes)
			if err != nil {
				if t.d.IsUniqueViolation(err) {
					return steward.WrapError(steward.CodeConflict, err, "audit record %d of %q already exists: another append came first", r.Index, tenantID)
				}
				return t.fail(err, "append audit record %d of %q", r.Index, tenantID)
			}
		}
		_, err = t.exec(ctx, `INSERT INTO audit_checkpoints (tenant_id, size, note, created_at) VALUES (?, ?, ?, ?)`,
			tenantID, size, cp.Note, ts(cp.CreatedAt))
		if err != nil && t.d.IsUniqueViolation(err) {
			return steward.WrapError(steward.CodeConflict, err, "audit log %q already has a checkpoint at size %d", tenantID, size)
		}
		return t.fail(err, "write audit checkpoint %d of %q", size, tenantID)
	})
}

// AuditSize implements steward.Store.
func (s *Store) AuditSize(ctx context.Context, tenantID string) (int64, error) {
	var size int64
	err := s.queryRow(ctx, `SELECT size FROM audit_logs WHERE tenant_id = ?`, tenantID).Scan(&size)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return size, s.fail(err, "read audit log size of %q", tenantID)
}

// AuditLogs implements steward.Store.
func (s *Store) AuditLogs(ctx context.Context) ([]steward.AuditLogSize, error) {
	rows, err := s.query(ctx, `SELECT tenant_id, size FROM audit_logs ORDER BY tenant_id`)
	if err != nil {
		return nil, s.fail(err, "list audit logs")
	}
	return collect(rows, func(l *steward.AuditLogSize) []any { return []any{&l.TenantID, &l.Size} }, s, "list audit logs")
}

const auditEntryCols = `idx, tenant_id, actor, action, target, outcome, request_id, at, data, hashes`

func scanAuditEntry(e *steward.AuditEntry) []any {
	r := &e.Record
	return []any{&r.Index, &r.TenantID, &r.Actor, &r.Action, &r.Target, &r.Outcome, &r.RequestID, timeCol{&r.At}, &e.Data, &e.Hashes}
}

// AuditEntries implements steward.Store.
func (s *Store) AuditEntries(ctx context.Context, tenantID string, from int64, limit int) ([]steward.AuditEntry, error) {
	if limit < 1 || limit > 10000 {
		return nil, invalid("read audit entries: limit must be 1 to 10000, not %d", limit)
	}
	rows, err := s.query(ctx, `SELECT `+auditEntryCols+` FROM audit_records WHERE tenant_id = ? AND idx >= ? ORDER BY idx LIMIT ?`,
		tenantID, from, limit)
	if err != nil {
		return nil, s.fail(err, "read audit entries of %q", tenantID)
	}
	return collect(rows, scanAuditEntry, s, "read audit entries")
}

// PruneAudit implements steward.Store. A pruned row keeps idx, at and
// hashes; its data is empty and its search columns too, so that search
// (which skips rows without an outcome) never returns it.
func (s *Store) PruneAudit(ctx context.Context, tenantID string, from, to int64) (int, error) {
	if from < 0 || from > to {
		return 0, invalid("prune audit log %q: records %d to %d is not a range", tenantID, from, to)
	}
	size, err := s.AuditSize(ctx, tenantID)
	if err != nil {
		return 0, err
	}
	if to > size {
		return 0, invalid("prune audit log %q: record %d is past the log's size %d", tenantID, to-1, size)
	}
	res, err := s.exec(ctx, `UPDATE audit_records SET data = ?, actor = '', action = '', target = '', outcome = '', request_id = ''
		WHERE tenant_id = ? AND idx >= ? AND idx < ? AND outcome <> ''`, []byte{}, tenantID, from, to)
	if err != nil {
		return 0, s.fail(err, "prune audit log %q", tenantID)
	}
	n, err := affected(res)
	return int(n), s.fail(err, "prune audit log %q", tenantID)
}

// AuditEntryHashes implements steward.Store.
func (s *Store) AuditEntryHashes(ctx context.Context, tenantID string, indexes []int64) ([][]byte, error) {
	if len(indexes) == 0 {
		return [][]byte{}, nil
	}
	found := make(map[int64][]byte, len(indexes))
	// Chunks keep each statement under the backends' parameter limits.
	for chunk := range auditChunks(indexes, 500) {
		args := make([]any, 0, len(chunk)+1)
		args = append(args, tenantID)
		for _, i := range chunk {
			args = append(args, i)
		}
		rows, err := s.query(ctx, `SELECT idx, hashes FROM audit_records WHERE tenant_id = ? AND idx IN (`+auditPlaceholders(len(chunk))+`)`, args...)
		if err != nil {
			return nil, s.fail(err, "read audit hashes of %q", tenantID)
		}
		type row struct {
			idx    int64
			hashes []byte
		}
		rs, err := collect(rows, func(r *row) []any { return []any{&r.idx, &r.hashes} }, s, "read audit hashes")
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			found[r.idx] = r.hashes
		}
	}
	out := make([][]byte, len(indexes))
	for i, idx := range indexes {
		h, ok := found[idx]
		if !ok {
			return nil, notFound("audit log %q has no record %d", tenantID, idx)
		}
		out[i] = h
	}
	return out, nil
}

// auditChunks yields s in pieces of at most n.
func auditChunks[T any](s []T, n int) func(func([]T) bool) {
	return func(yield func([]T) bool) {
		for len(s) > 0 {
			k := min(n, len(s))
			if !yield(s[:k]) {
				return
			}
			s = s[k:]
		}
	}
}

// auditPlaceholders returns n comma-separated ? placeholders.
func auditPlaceholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?, ", n), ", ")
}

// auditOutcomes are the outcomes a search may ask for.
var auditOutcomes = []string{steward.AuditSuccess, steward.AuditFailure, steward.AuditDenied}

// SearchAudit implements steward.Store.
func (s *Store) SearchAudit(ctx context.Context, tenantID string, f steward.AuditFilter) ([]steward.AuditRecord, error) {
	limit := f.Limit
	switch {
	case limit == 0:
		limit = 100
	case limit < 0 || limit > 1000:
		return nil, invalid("audit search: limit must be 1 to 1000, not %d", f.Limit)
	}
	if f.Outcome != "" && !slices.Contains(auditOutcomes, f.Outcome) {
		return nil, invalid("audit search: outcome %q: want one of %s", f.Outcome, strings.Join(auditOutcomes, ", "))
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return nil, invalid("audit search: the end of the time range must be after its start")
	}
	if f.Cursor < steward.NoAuditCursor {
		return nil, invalid("audit search: cursor %d is negative", f.Cursor)
	}
	var where strings.Builder
	args := []any{tenantID}
	where.WriteString(`tenant_id = ? AND outcome <> ''`)
	add := func(cond string, v any) {
		where.WriteString(" AND " + cond)
		args = append(args, v)
	}
	if f.Actor != "" {
		add(`actor = ?`, f.Actor)
	}
	if prefix, ok := strings.CutSuffix(f.Action, "*"); ok {
		if prefix != "" {
			add(`action LIKE ? ESCAPE '\'`, auditLikeEscape(prefix)+"%")
		}
	} else if f.Action != "" {
		add(`action = ?`, f.Action)
	}
	if f.Target != "" {
		add(`target = ?`, f.Target)
	}
	if f.Outcome != "" {
		add(`outcome = ?`, f.Outcome)
	}
	if !f.From.IsZero() {
		add(`at >= ?`, ts(f.From))
	}
	if !f.To.IsZero() {
		add(`at < ?`, ts(f.To))
	}
	order := "ASC"
	if f.Desc {
		order = "DESC"
		if f.Cursor >= 0 {
			add(`idx < ?`, f.Cursor)
		}
	} else if f.Cursor >= 0 {
		add(`idx > ?`, f.Cursor)
	}
	args = append(args, limit)
	rows, err := s.query(ctx, `SELECT data FROM audit_records WHERE `+where.String()+` ORDER BY idx `+order+` LIMIT ?`, args...)
	if err != nil {
		return nil, s.fail(err, "search audit log %q", tenantID)
	}
	datas, err := collect(rows, func(b *[]byte) []any { return []any{b} }, s, "search audit log")
	if err != nil {
		return nil, err
	}
	out := make([]steward.AuditRecord, len(datas))
	for i, b := range datas {
		if err := json.Unmarshal(b, &out[i]); err != nil {
			return nil, steward.WrapError(steward.CodeInternal, fmt.Errorf("decode audit record: %w", err),
				"audit log %q holds a record that is not valid JSON: run steward audit verify", tenantID)
		}
	}
	return out, nil
}

// auditLikeEscape escapes the LIKE wildcards of s for ESCAPE '\'.
func auditLikeEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// AuditCheckpoints implements steward.Store.
func (s *Store) AuditCheckpoints(ctx context.Context, tenantID string, after int64, limit int) ([]steward.AuditCheckpoint, error) {
	if limit < 1 || limit > 10000 {
		return nil, invalid("read audit checkpoints: limit must be 1 to 10000, not %d", limit)
	}
	rows, err := s.query(ctx, `SELECT tenant_id, size, note, created_at FROM audit_checkpoints
		WHERE tenant_id = ? AND size > ? ORDER BY size LIMIT ?`, tenantID, after, limit)
	if err != nil {
		return nil, s.fail(err, "read audit checkpoints of %q", tenantID)
	}
	return collect(rows, scanCheckpoint, s, "read audit checkpoints")
}

func scanCheckpoint(c *steward.AuditCheckpoint) []any {
	return []any{&c.TenantID, &c.Size, &c.Note, timeCol{&c.CreatedAt}}
}

// AuditCheckpoint implements steward.Store.
func (s *Store) AuditCheckpoint(ctx context.Context, tenantID string, size int64) (steward.AuditCheckpoint, error) {
	var c steward.AuditCheckpoint
	var row *sql.Row
	if size < 0 {
		row = s.queryRow(ctx, `SELECT tenant_id, size, note, created_at FROM audit_checkpoints
			WHERE tenant_id = ? ORDER BY size DESC LIMIT 1`, tenantID)
	} else {
		row = s.queryRow(ctx, `SELECT tenant_id, size, note, created_at FROM audit_checkpoints
			WHERE tenant_id = ? AND size = ?`, tenantID, size)
	}
	err := row.Scan(scanCheckpoint(&c)...)
	if errors.Is(err, sql.ErrNoRows) {
		if size < 0 {
			return c, notFound("audit log %q has no checkpoint yet", tenantID)
		}
		return c, notFound("audit log %q has no checkpoint at size %d", tenantID, size)
	}
	return c, s.fail(err, "read audit checkpoint of %q", tenantID)
}
