-- Configuration as a device twin: templates per layer (base, model,
-- customer, site, device), their immutable versions, each device's twin
-- (desired and reported state) and the versions each device was last in
-- sync with (the rollback targets).

CREATE TABLE config_templates (
	tenant_id      TEXT NOT NULL REFERENCES tenants (id),
	id             TEXT NOT NULL,
	name           TEXT NOT NULL,
	layer          TEXT NOT NULL CHECK (layer IN ('base', 'model', 'customer', 'site', 'device')),
	selector       TEXT NOT NULL DEFAULT '',
	description    TEXT NOT NULL DEFAULT '',
	latest_version INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	updated_at     INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, layer, selector)
) STRICT;
CREATE UNIQUE INDEX config_templates_id ON config_templates (id);

-- Versions are never updated: the store has no statement that does.
CREATE TABLE config_versions (
	tenant_id   TEXT NOT NULL,
	id          TEXT NOT NULL,
	template_id TEXT NOT NULL,
	version     INTEGER NOT NULL CHECK (version > 0),
	layer       TEXT NOT NULL,
	selector    TEXT NOT NULL DEFAULT '',
	document    TEXT NOT NULL CHECK (json_valid(document) AND json_type(document) = 'object'),
	schema      TEXT CHECK (schema IS NULL OR json_valid(schema)),
	author      TEXT NOT NULL,
	message     TEXT NOT NULL,
	created_at  INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, template_id, version),
	FOREIGN KEY (tenant_id, template_id) REFERENCES config_templates (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX config_versions_id ON config_versions (id);

CREATE TABLE twins (
	tenant_id        TEXT NOT NULL,
	device_id        TEXT NOT NULL,
	desired          TEXT NOT NULL CHECK (json_valid(desired) AND json_type(desired) = 'object'),
	desired_version  INTEGER NOT NULL CHECK (desired_version >= 0),
	sources          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(sources)),
	override         TEXT CHECK (override IS NULL OR json_valid(override)),
	desired_by       TEXT NOT NULL DEFAULT '',
	desired_at       INTEGER NOT NULL,
	reported         TEXT CHECK (reported IS NULL OR json_valid(reported)),
	reported_version INTEGER NOT NULL DEFAULT 0 CHECK (reported_version >= 0),
	report_errors    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(report_errors)),
	reported_at      INTEGER,
	drift_since      INTEGER,
	drifted          INTEGER NOT NULL DEFAULT 0 CHECK (drifted IN (0, 1)),
	created_at       INTEGER NOT NULL,
	updated_at       INTEGER NOT NULL,
	rev              INTEGER NOT NULL CHECK (rev > 0),
	PRIMARY KEY (tenant_id, device_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
-- The drift check: twins out of sync not yet flagged, flagged ones.
CREATE INDEX twins_drift_since ON twins (drift_since) WHERE drift_since IS NOT NULL AND drifted = 0;
CREATE INDEX twins_drifted ON twins (tenant_id, device_id) WHERE drifted = 1;

CREATE TABLE twin_known_good (
	tenant_id   TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	template_id TEXT NOT NULL,
	version_id  TEXT NOT NULL,
	at          INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, device_id, template_id, version_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
