-- Configuration as a device twin: templates per layer (base, model,
-- customer, site, device), their immutable versions, each device's twin
-- (desired and reported state) and the versions each device was last in
-- sync with (the rollback targets).

CREATE TABLE config_templates (
	tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id             TEXT NOT NULL,
	name           TEXT NOT NULL,
	layer          TEXT NOT NULL CHECK (layer IN ('base', 'model', 'customer', 'site', 'device')),
	selector       TEXT COLLATE "C" NOT NULL DEFAULT '',
	description    TEXT NOT NULL DEFAULT '',
	latest_version INTEGER NOT NULL DEFAULT 0,
	created_at     TIMESTAMPTZ NOT NULL,
	updated_at     TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, layer, selector)
);
CREATE UNIQUE INDEX config_templates_id ON config_templates (id);

-- Versions are never updated: the store has no statement that does.
CREATE TABLE config_versions (
	tenant_id   TEXT COLLATE "C" NOT NULL,
	id          TEXT NOT NULL,
	template_id TEXT NOT NULL,
	version     INTEGER NOT NULL CHECK (version > 0),
	layer       TEXT NOT NULL,
	selector    TEXT NOT NULL DEFAULT '',
	document    JSONB NOT NULL CHECK (jsonb_typeof(document) = 'object'),
	schema      JSONB,
	author      TEXT NOT NULL,
	message     TEXT NOT NULL,
	created_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, template_id, version),
	FOREIGN KEY (tenant_id, template_id) REFERENCES config_templates (tenant_id, id)
);
CREATE UNIQUE INDEX config_versions_id ON config_versions (id);

CREATE TABLE twins (
	tenant_id        TEXT COLLATE "C" NOT NULL,
	device_id        TEXT COLLATE "C" NOT NULL,
	desired          JSONB NOT NULL CHECK (jsonb_typeof(desired) = 'object'),
	desired_version  BIGINT NOT NULL CHECK (desired_version >= 0),
	sources          JSONB NOT NULL DEFAULT '[]',
	override         JSONB,
	desired_by       TEXT NOT NULL DEFAULT '',
	desired_at       TIMESTAMPTZ NOT NULL,
	reported         JSONB,
	reported_version BIGINT NOT NULL DEFAULT 0 CHECK (reported_version >= 0),
	report_errors    JSONB NOT NULL DEFAULT '{}',
	reported_at      TIMESTAMPTZ,
	drift_since      TIMESTAMPTZ,
	drifted          BOOLEAN NOT NULL DEFAULT FALSE,
	created_at       TIMESTAMPTZ NOT NULL,
	updated_at       TIMESTAMPTZ NOT NULL,
	rev              BIGINT NOT NULL CHECK (rev > 0),
	PRIMARY KEY (tenant_id, device_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
-- The drift check: twins out of sync not yet flagged, flagged ones.
CREATE INDEX twins_drift_since ON twins (drift_since) WHERE drift_since IS NOT NULL AND NOT drifted;
CREATE INDEX twins_drifted ON twins (tenant_id, device_id) WHERE drifted;

CREATE TABLE twin_known_good (
	tenant_id   TEXT COLLATE "C" NOT NULL,
	device_id   TEXT COLLATE "C" NOT NULL,
	template_id TEXT NOT NULL,
	version_id  TEXT NOT NULL,
	at          TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, device_id, template_id, version_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
