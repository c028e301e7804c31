-- Device transfers between tenants, and individual enrollments: a factory
-- certificate pinned to one tenant, which the device plane consults before
-- the enrollment groups.

CREATE TABLE device_transfers (
	tenant_id        TEXT COLLATE "C" NOT NULL,
	id               TEXT NOT NULL,
	device_id        TEXT NOT NULL,
	target_tenant_id TEXT COLLATE "C" NOT NULL,
	reason           TEXT NOT NULL,
	policy           TEXT NOT NULL CHECK (policy IN ('delete', 'anonymise', 'keep')),
	retention_days   INTEGER NOT NULL DEFAULT 0,
	state            TEXT NOT NULL CHECK (state IN ('pending', 'accepted', 'cancelled', 'expired')),
	code_hash        TEXT NOT NULL,
	factory_id       TEXT NOT NULL,
	model            TEXT NOT NULL DEFAULT '',
	serial           TEXT NOT NULL DEFAULT '',
	hardware         TEXT NOT NULL DEFAULT '',
	requested_by     TEXT NOT NULL,
	approval_id      TEXT NOT NULL DEFAULT '',
	created_at       TIMESTAMPTZ NOT NULL,
	expires_at       TIMESTAMPTZ NOT NULL,
	updated_at       TIMESTAMPTZ NOT NULL,
	finished_by      TEXT NOT NULL DEFAULT '',
	finished_at      TIMESTAMPTZ,
	target_device_id TEXT NOT NULL DEFAULT '',
	decommission_id  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE UNIQUE INDEX device_transfers_code ON device_transfers (code_hash);
-- One pending transfer of a device at a time.
CREATE UNIQUE INDEX device_transfers_pending ON device_transfers (tenant_id, device_id) WHERE state = 'pending';
CREATE INDEX device_transfers_expiry ON device_transfers (expires_at) WHERE state = 'pending';
CREATE INDEX device_transfers_target ON device_transfers (target_tenant_id, created_at) WHERE state = 'accepted';

CREATE TABLE individual_enrollments (
	tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	device_id   TEXT NOT NULL,
	factory_id  TEXT NOT NULL,
	model       TEXT NOT NULL DEFAULT '',
	serial      TEXT NOT NULL DEFAULT '',
	transfer_id TEXT NOT NULL DEFAULT '',
	created_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, device_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
-- A factory certificate names one tenant.
CREATE UNIQUE INDEX individual_enrollments_factory ON individual_enrollments (factory_id);
