package sqlstore

import (
	"context"
	"database/sql"
	"errors"

	"github.com/steward-iot/steward"
)

const schemaCols = `tenant_id, model, allow, updated_at`

func scanSchema(s *steward.TelemetrySchema) []any {
	return []any{&s.TenantID, &s.Model, jsonCol{&s.Allow}, timeCol{&s.UpdatedAt}}
}

// PutTelemetrySchema implements steward.Store: an upsert, so that two
// operators setting the same model leave the last one's list.
func (s *Store) PutTelemetrySchema(ctx context.Context, sc steward.TelemetrySchema) error {
	if err := sc.Validate(); err != nil {
		return err
	}
	allow, err := jsonText(sc.Allow, "[]")
	if err != nil {
		return invalid("telemetry schema allow list: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO telemetry_schemas (`+schemaCols+`) VALUES (?, ?, ?, ?)
		ON CONFLICT (tenant_id, model) DO UPDATE SET allow = excluded.allow, updated_at = excluded.updated_at`,
		sc.TenantID, sc.Model, allow, ts(sc.UpdatedAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", sc.TenantID)
	}
	return s.fail(err, "put telemetry schema %s", sc.Model)
}

// GetTelemetrySchema implements steward.Store.
func (s *Store) GetTelemetrySchema(ctx context.Context, tenantID, model string) (steward.TelemetrySchema, error) {
	var out steward.TelemetrySchema
	err := s.queryRow(ctx, `SELECT `+schemaCols+` FROM telemetry_schemas WHERE tenant_id = ? AND model = ?`, tenantID, model).
		Scan(scanSchema(&out)...)
	if errors.Is(err, sql.ErrNoRows) {
		return out, notFound("telemetry schema of model %q not found", model)
	}
	if out.Allow == nil {
		out.Allow = []string{}
	}
	return out, s.fail(err, "get telemetry schema %s", model)
}

// ListTelemetrySchemas implements steward.Store.
func (s *Store) ListTelemetrySchemas(ctx context.Context, tenantID string) ([]steward.TelemetrySchema, error) {
	rows, err := s.query(ctx, `SELECT `+schemaCols+` FROM telemetry_schemas WHERE tenant_id = ? ORDER BY model`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list telemetry schemas")
	}
	out, err := collect(rows, scanSchema, s, "list telemetry schemas")
	for i := range out {
		if out[i].Allow == nil {
			out[i].Allow = []string{}
		}
	}
	return out, err
}

// DeleteTelemetrySchema implements steward.Store.
func (s *Store) DeleteTelemetrySchema(ctx context.Context, tenantID, model string) error {
	res, err := s.exec(ctx, `DELETE FROM telemetry_schemas WHERE tenant_id = ? AND model = ?`, tenantID, model)
	if err != nil {
		return s.fail(err, "delete telemetry schema %s", model)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete telemetry schema %s", model)
	}
	if n == 0 {
		return notFound("telemetry schema of model %q not found", model)
	}
	return nil
}
