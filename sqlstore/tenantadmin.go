package sqlstore

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/steward-iot/steward"
)

// SetTenantStatus implements steward.TenantStore.
func (s *Store) SetTenantStatus(ctx context.Context, id, status, reason string, at time.Time) (steward.Tenant, error) {
	if status != steward.TenantActive && status != steward.TenantSuspended {
		return steward.Tenant{}, invalid("tenant status %q: want %s or %s", status, steward.TenantActive, steward.TenantSuspended)
	}
	if len(reason) > 1024 {
		return steward.Tenant{}, invalid("a status reason is at most 1024 bytes")
	}
	res, err := s.exec(ctx, `UPDATE tenants SET status = ?, status_reason = ?, status_changed_at = ? WHERE id = ?`, status, reason, ts(at), id)
	if err != nil {
		return steward.Tenant{}, s.fail(err, "set status of tenant %s", id)
	}
	if n, err := affected(res); err != nil {
		return steward.Tenant{}, s.fail(err, "set status of tenant %s", id)
	} else if n == 0 {
		return steward.Tenant{}, notFound("tenant %s not found", id)
	}
	return s.GetTenant(ctx, id)
}

// tenantTables returns, from the schema itself, the tables that have a
// tenant_id column, children before the parents their foreign keys refer
// to, so that deleting in that order never breaks a reference. Reading the
// catalog rather than a list kept here means a table added by a later
// migration is deleted too. They are the main database's: the telemetry
// database's, where it is one of its own, DeleteTenant deletes through its
// writer (withTelemetryDeleted).
func (s *Store) tenantTables(ctx context.Context) ([]string, error) {
	var tablesQ, fkQ string
	switch s.d.Name {
	case "sqlite":
		tablesQ = `SELECT m.name FROM sqlite_master m JOIN pragma_table_info(m.name) c
			WHERE m.type = 'table' AND c.name = 'tenant_id' ORDER BY m.name`
		fkQ = `SELECT m.name, f."table" FROM sqlite_master m JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'`
	case "postgres":
		// Partitions are left out: deleting from their parent reaches them.
		tablesQ = `SELECT c.relname FROM pg_attribute a
			JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE n.nspname = current_schema() AND a.attname = 'tenant_id' AND NOT a.attisdropped
				AND c.relkind IN ('r', 'p') AND NOT c.relispartition
			ORDER BY c.relname`
		fkQ = `SELECT c.relname, r.relname FROM pg_constraint k
			JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class r ON r.oid = k.confrelid
			JOIN pg_namespace n ON n.oid = c.relnamespace
			WHERE k.contype = 'f' AND n.nspname = current_schema()`
	default:
		return nil, steward.Errorf(steward.CodeInternal, "tenant tables: unknown backend %q", s.d.Name)
	}
	rows, err := s.query(ctx, tablesQ)
	if err != nil {
		return nil, s.fail(err, "list tenant tables")
	}
	tables, err := collect(rows, func(n *string) []any { return []any{n} }, s, "list tenant tables")
	if err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, steward.Errorf(steward.CodeInternal, "no table has a tenant_id column: the catalog query is wrong")
	}
	rows, err = s.query(ctx, fkQ)
	if err != nil {
		return nil, s.fail(err, "list foreign keys")
	}
	type edge struct{ child, parent string }
	edges, err := collect(rows, func(e *edge) []any { return []any{&e.child, &e.parent} }, s, "list foreign keys")
	if err != nil {
		return nil, err
	}
	// Depth-first: a table comes after every table that refers to it.
	referrers := map[string][]string{}
	for _, e := range edges {
		if e.child != e.parent {
			referrers[e.parent] = append(referrers[e.parent], e.child)
		}
	}
	in := map[string]bool{}
	for _, t := range tables {
		in[t] = true
	}
	var order []string
	state := map[string]int{} // 1: visiting, 2: done
	var visit func(t string)
	visit = func(t string) {
		if state[t] != 0 {
			return // done, or a cycle (only cascades could make one work)
		}
		state[t] = 1
		rs := slices.Clone(referrers[t])
		slices.Sort(rs)
		for _, c := range rs {
			if in[c] {
				visit(c)
			}
		}
		state[t] = 2
		order = append(order, t)
	}
	for _, t := range tables {
		visit(t)
	}
	return order, nil
}

// DeleteTenant implements steward.TenantStore.
func (s *Store) DeleteTenant(ctx context.Context, id string) error {
	if id == "" {
		return invalid("tenant id is required")
	}
	return s.withTelemetryDeleted(ctx, id, "", func(tx *Store, _ map[string]int64) error { return tx.deleteTenant(ctx, id) })
}

// deleteTenant is DeleteTenant's transaction.
func (s *Store) deleteTenant(ctx context.Context, id string) error {
	return s.InTx(ctx, func(txs steward.Store) error {
		tx := txs.(*Store)
		if _, err := tx.GetTenant(ctx, id); err != nil {
			return err
		}
		tables, err := tx.tenantTables(ctx)
		if err != nil {
			return err
		}
		for _, t := range tables {
			// t comes from the catalog, never from a caller.
			if _, err := tx.exec(ctx, fmt.Sprintf(`DELETE FROM %s WHERE tenant_id = ?`, quoteIdent(t)), id); err != nil {
				return tx.fail(err, "delete tenant %s: table %s", id, t)
			}
		}
		// The device CA and its rotated generations (pki names them
		// pki/device-ca/<tenant> and pki/device-ca/<tenant>/<n>; a tenant
		// ID has no '/', '%' or '_').
		if _, err := tx.exec(ctx, `DELETE FROM secrets WHERE name = ? OR name LIKE ?`,
			"pki/device-ca/"+id, "pki/device-ca/"+id+"/%"); err != nil {
			return tx.fail(err, "delete tenant %s: secrets", id)
		}
		if _, err := tx.exec(ctx, `DELETE FROM tenants WHERE id = ?`, id); err != nil {
			return tx.fail(err, "delete tenant %s", id)
		}
		return nil
	})
}

// TenantRows implements steward.TenantStore.
func (s *Store) TenantRows(ctx context.Context, id string) (map[string]int64, error) {
	tables, err := s.tenantTables(ctx)
	if err != nil {
		return nil, err
	}
	more, err := s.telemetryDeviceTables(ctx)
	if err != nil {
		return nil, err
	}
	for _, t := range more {
		if t.tenant {
			tables = append(tables, t.name)
		}
	}
	out := make(map[string]int64, len(tables))
	for _, t := range tables {
		var n int64
		if err := s.queryRow(ctx, fmt.Sprintf(`SELECT COUNT(*) FROM %s WHERE tenant_id = ?`, quoteIdent(t)), id).Scan(&n); err != nil {
			return nil, s.fail(err, "count rows of tenant %s in %s", id, t)
		}
		out[t] = n
	}
	return out, nil
}

// quoteIdent quotes an SQL identifier (the same syntax in both backends).
func quoteIdent(name string) string {
	out := []byte{'"'}
	for i := 0; i < len(name); i++ {
		if name[i] == '"' {
			out = append(out, '"')
		}
		out = append(out, name[i])
	}
	return string(append(out, '"'))
}
