-- Steward's schema on PostgreSQL. Times are TIMESTAMPTZ (microseconds),
-- booleans BOOLEAN, JSON JSONB. Text compares byte by byte (COLLATE "C"), as
-- in SQLite, whatever the database's collation: keyset pagination by id and
-- firmware_key's version order depend on it.

CREATE TABLE tenants (
	id         TEXT COLLATE "C" PRIMARY KEY,
	name       TEXT COLLATE "C" NOT NULL,
	created_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE secrets (
	name  TEXT COLLATE "C" PRIMARY KEY,
	value BYTEA NOT NULL
);

CREATE TABLE api_tokens (
	id         TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name       TEXT COLLATE "C" NOT NULL,
	role       TEXT COLLATE "C" NOT NULL,
	hash       TEXT COLLATE "C" NOT NULL UNIQUE,
	created_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX api_tokens_tenant ON api_tokens (tenant_id, created_at);

CREATE TABLE enrollment_groups (
	id              TEXT COLLATE "C" PRIMARY KEY,
	tenant_id       TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name            TEXT COLLATE "C" NOT NULL,
	ca_pem          TEXT COLLATE "C" NOT NULL,
	ca_fingerprint  TEXT COLLATE "C" NOT NULL UNIQUE,
	ca_subject_hash TEXT COLLATE "C" NOT NULL,
	models          JSONB NOT NULL DEFAULT '[]',
	firmware        JSONB NOT NULL DEFAULT '{}',
	labels          JSONB NOT NULL DEFAULT '{}',
	serials         JSONB NOT NULL DEFAULT '[]',
	strict          BOOLEAN NOT NULL DEFAULT FALSE,
	created_at      TIMESTAMPTZ NOT NULL,
	UNIQUE (tenant_id, name)
);
CREATE INDEX enrollment_groups_subject ON enrollment_groups (ca_subject_hash);

CREATE TABLE devices (
	id                  TEXT COLLATE "C" PRIMARY KEY,
	tenant_id           TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	enrollment_group_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	factory_id          TEXT COLLATE "C" NOT NULL DEFAULT '',
	factory_key_id      TEXT COLLATE "C" NOT NULL DEFAULT '',
	model               TEXT COLLATE "C" NOT NULL DEFAULT '',
	serial              TEXT COLLATE "C" NOT NULL DEFAULT '',
	hardware            TEXT COLLATE "C" NOT NULL DEFAULT '',
	firmware            TEXT COLLATE "C" NOT NULL DEFAULT '',
	firmware_key        TEXT COLLATE "C" NOT NULL DEFAULT '',
	site                TEXT COLLATE "C" NOT NULL DEFAULT '',
	latitude            DOUBLE PRECISION,
	longitude           DOUBLE PRECISION,
	owner               TEXT COLLATE "C" NOT NULL DEFAULT '',
	labels              JSONB NOT NULL DEFAULT '{}',
	attributes          JSONB NOT NULL DEFAULT '{}',
	warranty_end        TIMESTAMPTZ,
	state               TEXT COLLATE "C" NOT NULL,
	state_reason        TEXT COLLATE "C" NOT NULL DEFAULT '',
	state_actor         TEXT COLLATE "C" NOT NULL DEFAULT '',
	state_changed_at    TIMESTAMPTZ NOT NULL,
	online              BOOLEAN NOT NULL DEFAULT FALSE,
	connected_since     TIMESTAMPTZ,
	last_seen           TIMESTAMPTZ,
	reconnects          BIGINT NOT NULL DEFAULT 0,
	remote_addr         TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at          TIMESTAMPTZ NOT NULL,
	updated_at          TIMESTAMPTZ NOT NULL,
	version             BIGINT NOT NULL DEFAULT 0,
	-- The target of the (tenant_id, device_id) foreign keys below: a row
	-- can only refer to a device of its own tenant.
	UNIQUE (tenant_id, id)
);
CREATE UNIQUE INDEX devices_factory_id ON devices (tenant_id, factory_id) WHERE factory_id <> '';
CREATE INDEX devices_state ON devices (tenant_id, state, id);
CREATE INDEX devices_model ON devices (tenant_id, model, id);
CREATE INDEX devices_firmware_key ON devices (tenant_id, firmware_key, id);

CREATE TABLE lifecycle_events (
	id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL,
	device_id  TEXT COLLATE "C" NOT NULL,
	from_state TEXT COLLATE "C" NOT NULL,
	to_state   TEXT COLLATE "C" NOT NULL,
	reason     TEXT COLLATE "C" NOT NULL DEFAULT '',
	actor      TEXT COLLATE "C" NOT NULL DEFAULT '',
	at         TIMESTAMPTZ NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE INDEX lifecycle_events_device ON lifecycle_events (tenant_id, device_id, id);

CREATE TABLE certificates (
	serial     TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL,
	device_id  TEXT COLLATE "C" NOT NULL,
	key_id     TEXT COLLATE "C" NOT NULL,
	not_before TIMESTAMPTZ NOT NULL,
	not_after  TIMESTAMPTZ NOT NULL,
	revoked_at TIMESTAMPTZ,
	pem        TEXT COLLATE "C" NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE INDEX certificates_device ON certificates (tenant_id, device_id);

-- Security events may come before a tenant or device is known (an unknown
-- CA, a failed handshake): no foreign keys.
CREATE TABLE security_events (
	id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL DEFAULT '',
	kind      TEXT COLLATE "C" NOT NULL,
	detail    TEXT COLLATE "C" NOT NULL DEFAULT '',
	remote    TEXT COLLATE "C" NOT NULL DEFAULT '',
	at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX security_events_tenant ON security_events (tenant_id, id);
CREATE INDEX security_events_device ON security_events (tenant_id, device_id, id);
CREATE INDEX security_events_kind ON security_events (tenant_id, kind, id);

-- Telemetry: the hot path. The primary key is also the index of a device's
-- metric over time and makes a redelivered sample a no-op. No foreign keys:
-- a check per row would slow every batch, and samples come only from
-- authenticated device sessions.
CREATE TABLE samples (
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	metric    TEXT COLLATE "C" NOT NULL,
	at        TIMESTAMPTZ NOT NULL,
	value     DOUBLE PRECISION NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric, at)
);

CREATE TABLE metric_latest (
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	metric    TEXT COLLATE "C" NOT NULL,
	at        TIMESTAMPTZ NOT NULL,
	value     DOUBLE PRECISION NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric)
);
