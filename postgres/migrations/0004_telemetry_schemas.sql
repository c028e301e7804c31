-- Telemetry schemas: per tenant and device model, the metrics its devices
-- may send (data minimisation). allow is a JSON array of metric names and
-- prefixes ending in ".*"; a model without a row may send anything.

CREATE TABLE telemetry_schemas (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	model      TEXT COLLATE "C" NOT NULL,
	allow      JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(allow) = 'array'),
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, model)
);
