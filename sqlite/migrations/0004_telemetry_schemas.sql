-- Telemetry schemas: per tenant and device model, the metrics its devices
-- may send (data minimisation). allow is a JSON array of metric names and
-- prefixes ending in ".*"; a model without a row may send anything.

CREATE TABLE telemetry_schemas (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	model      TEXT NOT NULL,
	allow      TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(allow) AND json_type(allow) = 'array'),
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, model)
) STRICT, WITHOUT ROWID;
