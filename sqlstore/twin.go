package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/steward-iot/steward"
)

// docCol scans a JSON column (TEXT in SQLite, JSONB in PostgreSQL) into a
// json.RawMessage; NULL leaves it nil. PostgreSQL hands jsonb back in its
// own layout, so callers compare documents with steward.JSONEqual.
type docCol struct{ b *json.RawMessage }

// Scan implements sql.Scanner.
func (c docCol) Scan(src any) error {
	switch v := src.(type) {
	case nil:
		*c.b = nil
	case string:
		*c.b = json.RawMessage(v)
	case []byte:
		*c.b = append(json.RawMessage(nil), v...)
	default:
		return fmt.Errorf("scan document: unexpected %T", src)
	}
	return nil
}

// nullDoc prepares an optional JSON document: empty is NULL.
func nullDoc(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}

// layerOrder sorts templates by the order their layers apply.
const layerOrder = `CASE layer WHEN 'base' THEN 0 WHEN 'model' THEN 1 WHEN 'customer' THEN 2 WHEN 'site' THEN 3 ELSE 4 END`

const templateCols = `id, tenant_id, name, layer, selector, description, latest_version, created_at, updated_at`

func scanTemplate(t *steward.ConfigTemplate) []any {
	return []any{&t.ID, &t.TenantID, &t.Name, &t.Layer, &t.Selector, &t.Description, &t.LatestVersion, timeCol{&t.CreatedAt}, timeCol{&t.UpdatedAt}}
}

// CreateConfigTemplate implements steward.Store.
func (s *Store) CreateConfigTemplate(ctx context.Context, t steward.ConfigTemplate) error {
	if err := t.Validate(); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO config_templates (`+templateCols+`) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)`,
		t.ID, t.TenantID, t.Name, string(t.Layer), t.Selector, t.Description, ts(t.CreatedAt), ts(t.UpdatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", t.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err,
			"a configuration template with ID %s, named %q, or for %s %q already exists", t.ID, t.Name, t.Layer, t.Selector)
	}
	return s.fail(err, "create configuration template %s", t.ID)
}

// GetConfigTemplate implements steward.Store.
func (s *Store) GetConfigTemplate(ctx context.Context, tenantID, id string) (steward.ConfigTemplate, error) {
	var t steward.ConfigTemplate
	err := s.queryRow(ctx, `SELECT `+templateCols+` FROM config_templates WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanTemplate(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("configuration template %s not found", id)
	}
	return t, s.fail(err, "get configuration template %s", id)
}

// ListConfigTemplates implements steward.Store.
func (s *Store) ListConfigTemplates(ctx context.Context, tenantID string) ([]steward.ConfigTemplate, error) {
	rows, err := s.query(ctx, `SELECT `+templateCols+` FROM config_templates WHERE tenant_id = ? ORDER BY `+layerOrder+`, selector, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list configuration templates")
	}
	return collect(rows, scanTemplate, s, "list configuration templates")
}

// UpdateConfigTemplate implements steward.Store.
func (s *Store) UpdateConfigTemplate(ctx context.Context, t steward.ConfigTemplate) (steward.ConfigTemplate, error) {
	cur, err := s.GetConfigTemplate(ctx, t.TenantID, t.ID)
	if err != nil {
		return cur, err
	}
	cur.Name, cur.Description, cur.UpdatedAt = t.Name, t.Description, t.UpdatedAt
	if err := cur.Validate(); err != nil {
		return cur, err
	}
	var out steward.ConfigTemplate
	err = s.w.QueryRowContext(ctx, s.q(`UPDATE config_templates SET name = ?, description = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ? RETURNING `+templateCols),
		cur.Name, cur.Description, ts(cur.UpdatedAt), t.TenantID, t.ID).Scan(scanTemplate(&out)...)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return out, notFound("configuration template %s not found", t.ID)
	case err != nil && s.d.IsUniqueViolation(err):
		return out, steward.WrapError(steward.CodeConflict, err, "a configuration template named %q already exists", t.Name)
	}
	return out, s.fail(err, "update configuration template %s", t.ID)
}

// DeleteConfigTemplate implements steward.Store.
func (s *Store) DeleteConfigTemplate(ctx context.Context, tenantID, id string) error {
	t, err := s.GetConfigTemplate(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if t.LatestVersion > 0 {
		return steward.Errorf(steward.CodeFailedPrecondition, "configuration template %s has versions, which are kept for good", id)
	}
	res, err := s.exec(ctx, `DELETE FROM config_templates WHERE tenant_id = ? AND id = ? AND latest_version = 0`, tenantID, id)
	if err != nil {
		return s.fail(err, "delete configuration template %s", id)
	}
	if n, err := affected(res); err != nil || n == 0 {
		if err != nil {
			return s.fail(err, "delete configuration template %s", id)
		}
		return steward.Errorf(steward.CodeFailedPrecondition, "configuration template %s changed while being deleted", id)
	}
	return nil
}

const versionCols = `id, tenant_id, template_id, version, layer, selector, document, schema, author, message, created_at`

func scanVersion(v *steward.ConfigVersion) []any {
	return []any{&v.ID, &v.TenantID, &v.TemplateID, &v.Version, &v.Layer, &v.Selector, docCol{&v.Document}, docCol{&v.Schema},
		&v.Author, &v.Message, timeCol{&v.CreatedAt}}
}

// CreateConfigVersion implements steward.Store: the template's counter is
// moved on and the version inserted in one transaction, so that two
// versions made at once get two numbers.
func (s *Store) CreateConfigVersion(ctx context.Context, v steward.ConfigVersion) (steward.ConfigVersion, error) {
	if err := v.Validate(); err != nil {
		return v, err
	}
	err := s.InTx(ctx, func(tx steward.Store) error {
		st := tx.(*Store)
		err := st.w.QueryRowContext(ctx, st.q(`UPDATE config_templates SET latest_version = latest_version + 1
			WHERE tenant_id = ? AND id = ? RETURNING latest_version, layer, selector`), v.TenantID, v.TemplateID).
			Scan(&v.Version, &v.Layer, &v.Selector)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("configuration template %s not found", v.TemplateID)
		}
		if err != nil {
			return st.fail(err, "number configuration version")
		}
		_, err = st.exec(ctx, `INSERT INTO config_versions (`+versionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			v.ID, v.TenantID, v.TemplateID, v.Version, string(v.Layer), v.Selector, string(v.Document), nullDoc(v.Schema),
			v.Author, v.Message, ts(v.CreatedAt))
		if err != nil && st.d.IsUniqueViolation(err) {
			return steward.WrapError(steward.CodeConflict, err, "a configuration version with ID %s already exists", v.ID)
		}
		return st.fail(err, "create configuration version %s", v.ID)
	})
	if err != nil {
		return steward.ConfigVersion{}, err
	}
	return s.GetConfigVersion(ctx, v.TenantID, v.ID)
}

// GetConfigVersion implements steward.Store.
func (s *Store) GetConfigVersion(ctx context.Context, tenantID, id string) (steward.ConfigVersion, error) {
	var v steward.ConfigVersion
	err := s.queryRow(ctx, `SELECT `+versionCols+` FROM config_versions WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanVersion(&v)...)
	if errors.Is(err, sql.ErrNoRows) {
		return v, notFound("configuration version %s not found", id)
	}
	return v, s.fail(err, "get configuration version %s", id)
}

// ListConfigVersions implements steward.Store.
func (s *Store) ListConfigVersions(ctx context.Context, tenantID, templateID string) ([]steward.ConfigVersion, error) {
	if _, err := s.GetConfigTemplate(ctx, tenantID, templateID); err != nil {
		return nil, err
	}
	rows, err := s.query(ctx, `SELECT `+versionCols+` FROM config_versions WHERE tenant_id = ? AND template_id = ? ORDER BY version DESC`,
		tenantID, templateID)
	if err != nil {
		return nil, s.fail(err, "list configuration versions")
	}
	return collect(rows, scanVersion, s, "list configuration versions")
}

// LatestConfigVersion implements steward.Store.
func (s *Store) LatestConfigVersion(ctx context.Context, tenantID, templateID string) (steward.ConfigVersion, error) {
	var v steward.ConfigVersion
	err := s.queryRow(ctx, `SELECT `+versionCols+` FROM config_versions WHERE tenant_id = ? AND template_id = ? ORDER BY version DESC LIMIT 1`,
		tenantID, templateID).Scan(scanVersion(&v)...)
	if errors.Is(err, sql.ErrNoRows) {
		return v, notFound("configuration template %s has no version", templateID)
	}
	return v, s.fail(err, "get latest configuration version of %s", templateID)
}

const twinCols = `tenant_id, device_id, desired, desired_version, sources, override, desired_by, desired_at,
	reported, reported_version, report_errors, reported_at, drift_since, drifted, created_at, updated_at, rev`

func scanTwin(t *steward.Twin) []any {
	return []any{&t.TenantID, &t.DeviceID, docCol{&t.Desired}, &t.DesiredVersion, jsonCol{&t.Sources}, docCol{&t.Override},
		&t.DesiredBy, timeCol{&t.DesiredAt}, docCol{&t.Reported}, &t.ReportedVersion, jsonCol{&t.ReportErrors},
		timeCol{&t.ReportedAt}, timePtrCol{&t.DriftSince}, &t.Drifted, timeCol{&t.CreatedAt}, timeCol{&t.UpdatedAt}, &t.Rev}
}

// GetTwin implements steward.Store.
func (s *Store) GetTwin(ctx context.Context, tenantID, deviceID string) (steward.Twin, error) {
	var t steward.Twin
	err := s.queryRow(ctx, `SELECT `+twinCols+` FROM twins WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID).Scan(scanTwin(&t)...)
	if errors.Is(err, sql.ErrNoRows) {
		return t, notFound("twin of device %s not found", deviceID)
	}
	if err == nil && len(t.ReportErrors) == 0 {
		t.ReportErrors = nil
	}
	return t, s.fail(err, "get twin of device %s", deviceID)
}

// DeleteTwin implements steward.Store, in one transaction.
func (s *Store) DeleteTwin(ctx context.Context, tenantID, deviceID string) (bool, error) {
	var deleted bool
	err := s.InTx(ctx, func(tx steward.Store) error {
		t := tx.(*Store)
		if _, err := t.exec(ctx, `DELETE FROM twin_known_good WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID); err != nil {
			return t.fail(err, "delete known-good versions of device %s", deviceID)
		}
		res, err := t.exec(ctx, `DELETE FROM twins WHERE tenant_id = ? AND device_id = ?`, tenantID, deviceID)
		if err != nil {
			return t.fail(err, "delete twin of device %s", deviceID)
		}
		n, err := res.RowsAffected()
		deleted = n > 0
		return t.fail(err, "delete twin of device %s", deviceID)
	})
	return deleted, err
}

// PutTwin implements steward.Store.
func (s *Store) PutTwin(ctx context.Context, t steward.Twin) (steward.Twin, error) {
	if err := t.Validate(); err != nil {
		return t, err
	}
	sources, err := jsonText(t.Sources, "[]")
	if err != nil {
		return t, invalid("twin sources: %v", err)
	}
	errs, err := jsonText(t.ReportErrors, "{}")
	if err != nil {
		return t, invalid("twin report errors: %v", err)
	}
	args := []any{string(t.Desired), t.DesiredVersion, sources, nullDoc(t.Override), t.DesiredBy, ts(t.DesiredAt),
		nullDoc(t.Reported), t.ReportedVersion, errs, nullTS(t.ReportedAt), nullTSPtr(t.DriftSince), t.Drifted, ts(t.UpdatedAt)}
	if t.Rev == 0 {
		_, err := s.exec(ctx, `INSERT INTO twins (desired, desired_version, sources, override, desired_by, desired_at,
			reported, reported_version, report_errors, reported_at, drift_since, drifted, updated_at, tenant_id, device_id, created_at, rev)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`, append(args, t.TenantID, t.DeviceID, ts(t.CreatedAt))...)
		switch {
		case err != nil && s.d.IsForeignKeyViolation(err):
			return t, steward.WrapError(steward.CodeNotFound, err, "device %s not found", t.DeviceID)
		case err != nil && s.d.IsUniqueViolation(err):
			return t, steward.WrapError(steward.CodeConflict, err, "the twin of device %s was created concurrently", t.DeviceID)
		case err != nil:
			return t, s.fail(err, "create twin of device %s", t.DeviceID)
		}
		return s.GetTwin(ctx, t.TenantID, t.DeviceID)
	}
	res, err := s.exec(ctx, `UPDATE twins SET desired = ?, desired_version = ?, sources = ?, override = ?, desired_by = ?, desired_at = ?,
		reported = ?, reported_version = ?, report_errors = ?, reported_at = ?, drift_since = ?, drifted = ?, updated_at = ?, rev = rev + 1
		WHERE tenant_id = ? AND device_id = ? AND rev = ?`, append(args, t.TenantID, t.DeviceID, t.Rev)...)
	if err != nil {
		return t, s.fail(err, "update twin of device %s", t.DeviceID)
	}
	n, err := affected(res)
	if err != nil {
		return t, s.fail(err, "update twin of device %s", t.DeviceID)
	}
	if n == 0 {
		if _, gerr := s.GetTwin(ctx, t.TenantID, t.DeviceID); gerr != nil {
			return t, gerr
		}
		return t, steward.Errorf(steward.CodeConflict, "the twin of device %s changed concurrently", t.DeviceID)
	}
	return s.GetTwin(ctx, t.TenantID, t.DeviceID)
}

// ListTwins implements steward.Store.
func (s *Store) ListTwins(ctx context.Context, tenantID string, f steward.TwinFilter) ([]steward.Twin, error) {
	limit := f.Limit
	switch {
	case limit <= 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	q := `SELECT ` + twinCols + ` FROM twins WHERE tenant_id = ? AND device_id > ?`
	args := []any{tenantID, f.After}
	if f.Drifted {
		q += ` AND drifted = ?`
		args = append(args, true)
	}
	q += ` ORDER BY device_id LIMIT ?`
	rows, err := s.query(ctx, q, append(args, limit)...)
	if err != nil {
		return nil, s.fail(err, "list twins")
	}
	out, err := collect(rows, scanTwin, s, "list twins")
	for i := range out {
		if len(out[i].ReportErrors) == 0 {
			out[i].ReportErrors = nil
		}
	}
	return out, err
}

// MarkDrift implements steward.Store. Each UPDATE changes a row only when
// it still needs the change and returns what it changed, so two nodes
// running it at once report each change once; the revision moves on, so a
// service write that read the twin before retries.
func (s *Store) MarkDrift(ctx context.Context, now time.Time, grace time.Duration) ([]steward.DriftChange, error) {
	now = ts(now)
	var out []steward.DriftChange
	err := s.InTx(ctx, func(tx steward.Store) error {
		st := tx.(*Store)
		out = out[:0]
		for _, step := range []struct {
			q       string
			args    []any
			drifted bool
		}{
			{`UPDATE twins SET drifted = ?, rev = rev + 1, updated_at = ? WHERE drifted = ? AND drift_since IS NOT NULL AND drift_since <= ?
				RETURNING tenant_id, device_id, drift_since`, []any{true, now, false, now.Add(-grace)}, true},
			{`UPDATE twins SET drifted = ?, rev = rev + 1, updated_at = ? WHERE drifted = ? AND drift_since IS NULL
				RETURNING tenant_id, device_id, drift_since`, []any{false, now, true}, false},
		} {
			rows, err := st.w.QueryContext(ctx, st.q(step.q), step.args...)
			if err != nil {
				return st.fail(err, "mark drift")
			}
			got, err := collect(rows, func(c *steward.DriftChange) []any {
				return []any{&c.TenantID, &c.DeviceID, timeCol{&c.Since}}
			}, st, "mark drift")
			if err != nil {
				return err
			}
			for _, c := range got {
				c.Drifted, c.At = step.drifted, now
				out = append(out, c)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CountDrift implements steward.Store.
func (s *Store) CountDrift(ctx context.Context) ([]steward.DriftCount, error) {
	rows, err := s.query(ctx, `SELECT tenant_id, COUNT(*), COALESCE(SUM(CASE WHEN drifted = ? THEN 1 ELSE 0 END), 0)
		FROM twins GROUP BY tenant_id ORDER BY tenant_id`, true)
	if err != nil {
		return nil, s.fail(err, "count drift")
	}
	return collect(rows, func(c *steward.DriftCount) []any { return []any{&c.TenantID, &c.Twins, &c.Drifted} }, s, "count drift")
}

// RecordKnownGood implements steward.Store.
func (s *Store) RecordKnownGood(ctx context.Context, tenantID, deviceID string, sources []steward.ConfigSource, at time.Time) error {
	return s.InTx(ctx, func(tx steward.Store) error {
		st := tx.(*Store)
		for _, src := range sources {
			if err := required("template id", src.TemplateID, "version id", src.VersionID); err != nil {
				return err
			}
			_, err := st.exec(ctx, `INSERT INTO twin_known_good (tenant_id, device_id, template_id, version_id, at) VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (tenant_id, device_id, template_id, version_id) DO UPDATE SET at = excluded.at`,
				tenantID, deviceID, src.TemplateID, src.VersionID, ts(at))
			if err != nil && st.d.IsForeignKeyViolation(err) {
				return steward.WrapError(steward.CodeNotFound, err, "device %s not found", deviceID)
			}
			if err != nil {
				return st.fail(err, "record known-good configuration of device %s", deviceID)
			}
		}
		return nil
	})
}

// PreviousGoodVersion implements steward.Store.
func (s *Store) PreviousGoodVersion(ctx context.Context, tenantID, deviceID, templateID, except string) (string, error) {
	var id string
	err := s.queryRow(ctx, `SELECT version_id FROM twin_known_good WHERE tenant_id = ? AND device_id = ? AND template_id = ? AND version_id <> ?
		ORDER BY at DESC, version_id DESC LIMIT 1`, tenantID, deviceID, templateID, except).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("device %s was never in sync with another version of template %s", deviceID, templateID)
	}
	return id, s.fail(err, "find known-good configuration of device %s", deviceID)
}
