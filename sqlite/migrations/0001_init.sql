-- Steward's schema on SQLite. Times are INTEGER Unix microseconds (UTC),
-- booleans INTEGER 0/1, JSON TEXT (checked with json_valid). STRICT tables
-- refuse a value of the wrong type instead of storing it.

CREATE TABLE tenants (
	id         TEXT PRIMARY KEY,
	name       TEXT NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE secrets (
	name  TEXT PRIMARY KEY,
	value BLOB NOT NULL
) STRICT;

CREATE TABLE api_tokens (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	hash       TEXT NOT NULL UNIQUE,
	created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at);

CREATE TABLE enrollment_groups (
	id              TEXT PRIMARY KEY,
	tenant_id       TEXT NOT NULL REFERENCES tenants (id),
	name            TEXT NOT NULL,
	ca_pem          TEXT NOT NULL,
	ca_fingerprint  TEXT NOT NULL UNIQUE,
	ca_subject_hash TEXT NOT NULL,
	models          TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(models)),
	firmware        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(firmware)),
	labels          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
	serials         TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(serials)),
	strict          INTEGER NOT NULL DEFAULT 0 CHECK (strict IN (0, 1)),
	created_at      INTEGER NOT NULL,
	UNIQUE (tenant_id, name)
) STRICT;
CREATE INDEX enrollment_groups_subject ON enrollment_groups (ca_subject_hash);

CREATE TABLE devices (
	id                  TEXT PRIMARY KEY,
	tenant_id           TEXT NOT NULL REFERENCES tenants (id),
	enrollment_group_id TEXT NOT NULL DEFAULT '',
	factory_id          TEXT NOT NULL DEFAULT '',
	factory_key_id      TEXT NOT NULL DEFAULT '',
	model               TEXT NOT NULL DEFAULT '',
	serial              TEXT NOT NULL DEFAULT '',
	hardware            TEXT NOT NULL DEFAULT '',
	firmware            TEXT NOT NULL DEFAULT '',
	firmware_key        TEXT NOT NULL DEFAULT '',
	site                TEXT NOT NULL DEFAULT '',
	latitude            REAL,
	longitude           REAL,
	owner               TEXT NOT NULL DEFAULT '',
	labels              TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
	attributes          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(attributes)),
	warranty_end        INTEGER,
	state               TEXT NOT NULL,
	state_reason        TEXT NOT NULL DEFAULT '',
	state_actor         TEXT NOT NULL DEFAULT '',
	state_changed_at    INTEGER NOT NULL,
	online              INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
	connected_since     INTEGER,
	last_seen           INTEGER,
	reconnects          INTEGER NOT NULL DEFAULT 0,
	remote_addr         TEXT NOT NULL DEFAULT '',
	created_at          INTEGER NOT NULL,
	updated_at          INTEGER NOT NULL,
	version             INTEGER NOT NULL DEFAULT 0,
	-- The target of the (tenant_id, device_id) foreign keys below: a row
	-- can only refer to a device of its own tenant.
	UNIQUE (tenant_id, id)
) STRICT;
CREATE UNIQUE INDEX devices_factory_id ON devices (tenant_id, factory_id) WHERE factory_id <> '';
CREATE INDEX devices_state ON devices (tenant_id, state, id);
CREATE INDEX devices_model ON devices (tenant_id, model, id);
CREATE INDEX devices_firmware_key ON devices (tenant_id, firmware_key, id);

CREATE TABLE lifecycle_events (
	id         INTEGER PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	from_state TEXT NOT NULL,
	to_state   TEXT NOT NULL,
	reason     TEXT NOT NULL DEFAULT '',
	actor      TEXT NOT NULL DEFAULT '',
	at         INTEGER NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
CREATE INDEX lifecycle_events_device ON lifecycle_events (tenant_id, device_id, id);

CREATE TABLE certificates (
	serial     TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	key_id     TEXT NOT NULL,
	not_before INTEGER NOT NULL,
	not_after  INTEGER NOT NULL,
	revoked_at INTEGER,
	pem        TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
CREATE INDEX certificates_device ON certificates (tenant_id, device_id);

-- Security events may come before a tenant or device is known (an unknown
-- CA, a failed handshake): no foreign keys.
CREATE TABLE security_events (
	id        INTEGER PRIMARY KEY,
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL DEFAULT '',
	kind      TEXT NOT NULL,
	detail    TEXT NOT NULL DEFAULT '',
	remote    TEXT NOT NULL DEFAULT '',
	at        INTEGER NOT NULL
) STRICT;
CREATE INDEX security_events_tenant ON security_events (tenant_id, id);
CREATE INDEX security_events_device ON security_events (tenant_id, device_id, id);
CREATE INDEX security_events_kind ON security_events (tenant_id, kind, id);

-- Telemetry: the hot path. One clustered key per sample (WITHOUT ROWID: one
-- b-tree, not a table and an index), which is also the index of a device's
-- metric over time and makes a redelivered sample a no-op. No foreign keys:
-- a check per row would slow every batch, and samples come only from
-- authenticated device sessions.
CREATE TABLE samples (
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	metric    TEXT NOT NULL,
	at        INTEGER NOT NULL,
	value     REAL NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric, at)
) STRICT, WITHOUT ROWID;

CREATE TABLE metric_latest (
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	metric    TEXT NOT NULL,
	at        INTEGER NOT NULL,
	value     REAL NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric)
) STRICT, WITHOUT ROWID;
