-- Credential rotation, revocation and decommissioning: device CA
-- generations, revocation reasons, CRL numbers and the latest CRL of each
-- issuing CA, revoked manufacturer CAs, decommissioning records.

CREATE TABLE ca_generations (
	tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	generation    INTEGER NOT NULL CHECK (generation >= 0),
	key_id        TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
	overlap_until TIMESTAMPTZ,
	retired_at    TIMESTAMPTZ,
	approval_id   TEXT NOT NULL DEFAULT '',
	created_at    TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, generation)
);

-- Why a certificate was revoked; certificates revoked without a reason
-- (a whole device at once) have no row and are listed as unspecified. The
-- device_id column lets an erasure of the device find the rows.
CREATE TABLE certificate_revocations (
	serial    TEXT PRIMARY KEY REFERENCES certificates (serial),
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT NOT NULL,
	reason    TEXT NOT NULL,
	actor     TEXT NOT NULL DEFAULT '',
	at        TIMESTAMPTZ NOT NULL
);
CREATE INDEX certificates_revoked ON certificates (tenant_id, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_not_after ON certificates (tenant_id, not_after) WHERE revoked_at IS NULL;

CREATE TABLE crl_numbers (
	tenant_id TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
	number    BIGINT NOT NULL
);

CREATE TABLE crls (
	tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	issuer_key_id TEXT NOT NULL,
	number        BIGINT NOT NULL,
	this_update   TIMESTAMPTZ NOT NULL,
	next_update   TIMESTAMPTZ NOT NULL,
	digest        TEXT NOT NULL,
	der           BYTEA NOT NULL,
	PRIMARY KEY (tenant_id, issuer_key_id)
);

CREATE TABLE revoked_cas (
	tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	fingerprint TEXT NOT NULL,
	group_id    TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	actor       TEXT NOT NULL DEFAULT '',
	at          TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, fingerprint)
);

CREATE TABLE decommissions (
	tenant_id    TEXT COLLATE "C" NOT NULL,
	id           TEXT NOT NULL,
	device_id    TEXT NOT NULL,
	reason       TEXT NOT NULL,
	policy       TEXT NOT NULL CHECK (policy IN ('delete', 'anonymise', 'keep')),
	retain_until TIMESTAMPTZ,
	state        TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'running', 'completed', 'failed')),
	steps        JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(steps) = 'array'),
	requested_by TEXT NOT NULL,
	approval_id  TEXT NOT NULL DEFAULT '',
	certificate  TEXT NOT NULL DEFAULT '',
	purged       BOOLEAN NOT NULL DEFAULT FALSE,
	created_at   TIMESTAMPTZ NOT NULL,
	updated_at   TIMESTAMPTZ NOT NULL,
	finished_at  TIMESTAMPTZ,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
-- One decommissioning of a device at a time: a failed one may be tried again.
CREATE UNIQUE INDEX decommissions_device ON decommissions (tenant_id, device_id) WHERE state <> 'failed';
CREATE INDEX decommissions_retained ON decommissions (retain_until) WHERE policy = 'keep' AND NOT purged;
