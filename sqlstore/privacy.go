package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// PutDeviceConsent implements steward.PrivacyStore.
func (s *Store) PutDeviceConsent(ctx context.Context, c steward.DeviceConsent) error {
	if err := c.Validate(); err != nil {
		return err
	}
	granted, err := jsonText(c.Granted, "[]")
	if err != nil {
		return invalid("consent: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO device_consent (tenant_id, device_id, personal, granted, updated_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, device_id) DO UPDATE SET personal = excluded.personal, granted = excluded.granted, updated_at = excluded.updated_at`,
		c.TenantID, c.DeviceID, c.Personal, granted, ts(c.UpdatedAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "device %s not found", c.DeviceID)
	}
	return s.fail(err, "put consent of device %s", c.DeviceID)
}

const consentCols = `tenant_id, device_id, personal, granted, updated_at`

func scanConsent(c *steward.DeviceConsent) []any {
	return []any{&c.TenantID, &c.DeviceID, &c.Personal, jsonCol{&c.Granted}, timeCol{&c.UpdatedAt}}
}

// GetDeviceConsent implements steward.PrivacyStore.
func (s *Store) GetDeviceConsent(ctx context.Context, tenantID, deviceID string) (steward.DeviceConsent, error) {
	var c steward.DeviceConsent
	err := s.queryRow(ctx, `SELECT `+consentCols+` FROM device_consent WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID).
		Scan(scanConsent(&c)...)
	if errors.Is(err, sql.ErrNoRows) {
		return c, notFound("no consent recorded for device %s", deviceID)
	}
	if c.Granted == nil {
		c.Granted = []string{}
	}
	return c, s.fail(err, "get consent of device %s", deviceID)
}

// WithheldDevices implements steward.PrivacyStore: the tenant's personal
// devices (a partial index holds them) whose grants lack class.
func (s *Store) WithheldDevices(ctx context.Context, tenantID, class string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT `+consentCols+` FROM device_consent WHERE tenant_id = ? AND personal = ? ORDER BY device_id`, tenantID, true)
	if err != nil {
		return nil, s.fail(err, "withheld devices")
	}
	all, err := collect(rows, scanConsent, s, "withheld devices")
	out := []string{}
	for _, c := range all {
		if !c.Allows(class) {
			out = append(out, c.DeviceID)
		}
	}
	return out, err
}

// GetDeviceTombstone implements steward.PrivacyStore.
func (s *Store) GetDeviceTombstone(ctx context.Context, tenantID, deviceID string) (steward.DeviceTombstone, error) {
	var t steward.DeviceTombstone
	err := s.queryRow(ctx, `SELECT tenant_id, device_id, erased_at, erased_by, serials FROM device_tombstones
		WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID).
		Scan(&t.TenantID, &t.DeviceID, timeCol{&t.ErasedAt}, &t.ErasedBy, jsonCol{&t.Serials})
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("device %s was not erased", deviceID)
	}
	if t.Serials == nil {
		t.Serials = []string{}
	}
	return t, s.fail(err, "get tombstone of device %s", deviceID)
}

// deviceTable is a table with a device_id column, and whether it also has
// tenant_id.
type deviceTable struct {
	name   string
	tenant bool
}

// exportedTables are the tables ExportDevice reads into typed fields; any
// other table with a device_id column goes to DeviceExport.Other.
var exportedTables = []string{"alerts", "certificates", "device_consent", "device_events", "lifecycle_events",
	"metric_latest", "presence_events", "samples", "samples_1d", "samples_1h", "samples_1m", "samples_recent", "security_events"}

// keptOnErasure are the tables erasure leaves alone: the tombstone itself
// and the audit log, whose records of what was done to the device must
// outlive it.
func keptOnErasure(table string) bool {
	return table == "device_tombstones" || strings.HasPrefix(table, "audit")
}

// erasedAs is the name a table's erased rows are counted under in a
// tombstone: the store's layout of samples is not the tombstone's business.
func erasedAs(table string) string {
	if table == "samples_recent" {
		return "samples"
	}
	return table
}

// deviceTables lists the schema's tables with a device_id column, by name,
// from the catalog: erasure and export reach every table that names a
// device, also those added after this code. The catalogs differ, hence
// the one branch on the backend here.
func (s *Store) deviceTables(ctx context.Context) ([]deviceTable, error) {
	q := `SELECT m.name, SUM(p.name = 'tenant_id') > 0 FROM sqlite_schema m, pragma_table_info(m.name) p
		WHERE m.type = 'table' GROUP BY m.name HAVING SUM(p.name = 'device_id') > 0 ORDER BY m.name`
	if s.d.Name == "postgres" {
		q = `SELECT c.table_name, bool_or(c.column_name = 'tenant_id') FROM information_schema.columns c
			JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name
			WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE'
			GROUP BY c.table_name HAVING bool_or(c.column_name = 'device_id') ORDER BY c.table_name`
	}
	rows, err := s.query(ctx, q)
	if err != nil {
		return nil, s.fail(err, "list device tables")
	}
	return collect(rows, func(t *deviceTable) []any { return []any{&t.name, &t.tenant} }, s, "list device tables")
}

// byDevice is the WHERE clause and arguments that select a device's rows
// of t (device IDs are unique across tenants; the tenant is matched where
// the table has it).
func byDevice(t deviceTable, tenantID, deviceID string) (string, []any) {
	if t.tenant {
		return ` WHERE tenant_id = ? AND device_id = ?`, []any{tenantID, deviceID}
	}
	return ` WHERE device_id = ?`, []any{deviceID}
}

// EraseDevice implements steward.PrivacyStore. The tables that name the
// device are emptied of its rows in passes: a delete that a foreign key
// refuses (another of the device's rows still refers to it) is undone to
// its savepoint and tried again in the next pass, until all are done.
func (s *Store) EraseDevice(ctx context.Context, t steward.DeviceTombstone) (steward.DeviceTombstone, error) {
	if t.TenantID == "" || t.DeviceID == "" || t.ErasedAt.IsZero() {
		return t, invalid("an erasure needs a tenant, a device and its time")
	}
	t.Erased = map[string]int{}
	err := s.withTelemetryDeleted(ctx, t.TenantID, t.DeviceID, func(tx *Store, deleted map[string]int64) error {
		for table, n := range deleted {
			if n > 0 {
				t.Erased[erasedAs(table)] += int(n)
			}
		}
		return tx.eraseDevice(ctx, &t)
	})
	t.ErasedAt = ts(t.ErasedAt)
	return t, err
}

// eraseDevice is EraseDevice's transaction: it adds to t.Erased and sets
// t.Serials.
func (s *Store) eraseDevice(ctx context.Context, t *steward.DeviceTombstone) error {
	return s.InTx(ctx, func(st steward.Store) error {
		tx := st.(*Store)
		if _, err := tx.GetDevice(ctx, t.TenantID, t.DeviceID); err != nil {
			return err
		}
		if _, err := tx.RevokeCertificates(ctx, t.TenantID, t.DeviceID, t.ErasedAt); err != nil {
			return err
		}
		certs, err := tx.ListCertificates(ctx, t.TenantID, t.DeviceID)
		if err != nil {
			return err
		}
		t.Serials = []string{}
		for _, c := range certs {
			t.Serials = append(t.Serials, c.Serial)
		}
		tables, err := tx.deviceTables(ctx)
		if err != nil {
			return err
		}
		tables = slices.DeleteFunc(tables, func(dt deviceTable) bool { return keptOnErasure(dt.name) })
		for len(tables) > 0 {
			var left []deviceTable
			var lastErr error
			for _, dt := range tables {
				where, args := byDevice(dt, t.TenantID, t.DeviceID)
				if _, err := tx.exec(ctx, `SAVEPOINT erase_table`); err != nil {
					return s.fail(err, "erase device %s: savepoint", t.DeviceID)
				}
				res, err := tx.exec(ctx, `DELETE FROM "`+dt.name+`"`+where, args...)
				if err != nil {
					if _, rerr := tx.exec(ctx, `ROLLBACK TO SAVEPOINT erase_table`); rerr != nil {
						return s.fail(rerr, "erase device %s: roll back to savepoint", t.DeviceID)
					}
					left, lastErr = append(left, dt), fmt.Errorf("%s: %w", dt.name, err)
					continue
				}
				if _, err := tx.exec(ctx, `RELEASE SAVEPOINT erase_table`); err != nil {
					return s.fail(err, "erase device %s: release savepoint", t.DeviceID)
				}
				n, err := affected(res)
				if err != nil {
					return s.fail(err, "erase device %s", t.DeviceID)
				}
				if n > 0 {
					// Samples not yet moved out of samples_recent are
					// samples all the same (see sampleRows).
					t.Erased[erasedAs(dt.name)] += int(n)
				}
			}
			if len(left) == len(tables) {
				return s.fail(lastErr, "erase device %s", t.DeviceID)
			}
			tables = left
		}
		if _, err := tx.exec(ctx, `DELETE FROM devices WHERE tenant_id = ? AND id = ?`, t.TenantID, t.DeviceID); err != nil {
			return s.fail(err, "erase device %s", t.DeviceID)
		}
		t.Erased["devices"] = 1
		serials, err := jsonText(t.Serials, "[]")
		if err != nil {
			return s.fail(err, "erase device %s", t.DeviceID)
		}
		_, err = tx.exec(ctx, `INSERT INTO device_tombstones (tenant_id, device_id, erased_at, erased_by, serials) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (tenant_id, device_id) DO UPDATE SET erased_at = excluded.erased_at, erased_by = excluded.erased_by, serials = excluded.serials`,
			t.TenantID, t.DeviceID, ts(t.ErasedAt), t.ErasedBy, serials)
		return s.fail(err, "erase device %s: tombstone", t.DeviceID)
	})
}

// ExportDevice implements steward.PrivacyStore: every list in full, oldest
// first.
func (s *Store) ExportDevice(ctx context.Context, tenantID, deviceID string, at time.Time) (steward.DeviceExport, error) {
	x := steward.DeviceExport{ExportedAt: ts(at)}
	var err error
	if x.Device, err = s.GetDevice(ctx, tenantID, deviceID); err != nil {
		return x, err
	}
	if c, err := s.GetDeviceConsent(ctx, tenantID, deviceID); err == nil {
		x.Consent = &c
	} else if steward.ErrorCode(err) != steward.CodeNotFound {
		return x, err
	}
	if x.Certificates, err = s.ListCertificates(ctx, tenantID, deviceID); err != nil {
		return x, err
	}
	if x.Lifecycle, err = s.ListLifecycleEvents(ctx, tenantID, deviceID); err != nil {
		return x, err
	}
	if x.Latest, err = s.LatestSamples(ctx, tenantID, deviceID); err != nil {
		return x, err
	}
	args := []any{tenantID, deviceID}
	where := ` WHERE tenant_id = ? AND device_id = ?`
	if x.SecurityEvents, err = exportRows(ctx, s, `SELECT id, tenant_id, device_id, kind, detail, remote, at FROM security_events`+where+` ORDER BY id`, args,
		func(e *steward.SecurityEvent) []any {
			return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Kind, &e.Detail, &e.Remote, timeCol{&e.At}}
		}); err != nil {
		return x, err
	}
	if x.Events, err = exportRows(ctx, s, `SELECT id, tenant_id, device_id, type, severity, message, fields, at, received FROM device_events`+where+` ORDER BY at, id`, args,
		func(e *steward.DeviceEvent) []any {
			return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Type, &e.Severity, &e.Message, fieldsCol{&e.Fields}, timeCol{&e.At}, timeCol{&e.Received}}
		}); err != nil {
		return x, err
	}
	if x.Presence, err = exportRows(ctx, s, `SELECT id, tenant_id, device_id, online, at, remote_addr FROM presence_events`+where+` ORDER BY at, id`, args,
		func(e *steward.PresenceEvent) []any {
			return []any{&e.ID, &e.TenantID, &e.DeviceID, &e.Online, timeCol{&e.At}, &e.RemoteAddr}
		}); err != nil {
		return x, err
	}
	rows, rowArgs := s.sampleRows(false, `r.tenant_id = ? AND r.device_id = ?`, tenantID, deviceID)
	if x.Samples, err = exportRows(ctx, s, `SELECT tenant_id, device_id, metric, at, value FROM (`+rows+`) x ORDER BY metric, at`, rowArgs, scanSample); err != nil {
		return x, err
	}
	for _, r := range []struct {
		table string
		into  *[]steward.Rollup
	}{{"samples_1m", &x.Minutes}, {"samples_1h", &x.Hours}, {"samples_1d", &x.Days}} {
		if *r.into, err = exportRows(ctx, s, `SELECT tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count FROM `+r.table+where+` ORDER BY metric, at`, args,
			func(r *steward.Rollup) []any {
				return []any{&r.TenantID, &r.DeviceID, &r.Metric, timeCol{&r.At}, &r.Min, &r.Max, &r.Sum, &r.Count}
			}); err != nil {
			return x, err
		}
	}
	if x.Alerts, err = exportRows(ctx, s, `SELECT `+alertCols+` FROM alerts`+where+` ORDER BY started_at, id`, args, scanAlert); err != nil {
		return x, err
	}
	for i := range x.Alerts {
		x.Alerts[i] = normAlert(x.Alerts[i])
	}
	return x, s.exportOther(ctx, &x, tenantID, deviceID)
}

// exportRows reads every row of a query.
func exportRows[T any](ctx context.Context, s *Store, q string, args []any, fields func(*T) []any) ([]T, error) {
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(err, "export device")
	}
	return collect(rows, fields, s, "export device")
}

// exportOther reads the device's rows of the tables ExportDevice has no
// type for, column by column.
func (s *Store) exportOther(ctx context.Context, x *steward.DeviceExport, tenantID, deviceID string) error {
	tables, err := s.deviceTables(ctx)
	if err != nil {
		return err
	}
	for _, dt := range tables {
		if slices.Contains(exportedTables, dt.name) || dt.name == "device_tombstones" {
			continue
		}
		where, args := byDevice(dt, tenantID, deviceID)
		rows, err := s.query(ctx, `SELECT * FROM "`+dt.name+`"`+where, args...)
		if err != nil {
			return s.fail(err, "export device: %s", dt.name)
		}
		out, err := genericRows(rows)
		if err != nil {
			return s.fail(err, "export device: %s", dt.name)
		}
		if len(out) > 0 {
			if x.Other == nil {
				x.Other = map[string][]map[string]any{}
			}
			x.Other[dt.name] = out
		}
	}
	return nil
}

// genericRows reads rows as maps of column to value, bytes as text.
func genericRows(rows *sql.Rows) ([]map[string]any, error) {
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for rows.Next() {
		vals := make([]any, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		m := make(map[string]any, len(cols))
		for i, c := range cols {
			if b, ok := vals[i].([]byte); ok {
				m[c] = string(b)
			} else {
				m[c] = vals[i]
			}
		}
		out = append(out, m)
	}
	return out, rows.Err()
}
