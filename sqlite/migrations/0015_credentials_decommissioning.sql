-- Credential rotation, revocation and decommissioning: device CA
-- generations, revocation reasons, CRL numbers and the latest CRL of each
-- issuing CA, revoked manufacturer CAs, decommissioning records.

CREATE TABLE ca_generations (
	tenant_id     TEXT NOT NULL REFERENCES tenants (id),
	generation    INTEGER NOT NULL CHECK (generation >= 0),
	key_id        TEXT NOT NULL,
	state         TEXT NOT NULL CHECK (state IN ('active', 'previous', 'retired')),
	overlap_until INTEGER,
	retired_at    INTEGER,
	approval_id   TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, generation)
) STRICT;

-- Why a certificate was revoked; certificates revoked without a reason
-- (a whole device at once) have no row and are listed as unspecified. The
-- device_id column lets an erasure of the device find the rows.
CREATE TABLE certificate_revocations (
	serial    TEXT PRIMARY KEY REFERENCES certificates (serial),
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	reason    TEXT NOT NULL,
	actor     TEXT NOT NULL DEFAULT '',
	at        INTEGER NOT NULL
) STRICT;
CREATE INDEX certificates_revoked ON certificates (tenant_id, revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_not_after ON certificates (tenant_id, not_after) WHERE revoked_at IS NULL;

CREATE TABLE crl_numbers (
	tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
	number    INTEGER NOT NULL
) STRICT;

CREATE TABLE crls (
	tenant_id     TEXT NOT NULL REFERENCES tenants (id),
	issuer_key_id TEXT NOT NULL,
	number        INTEGER NOT NULL,
	this_update   INTEGER NOT NULL,
	next_update   INTEGER NOT NULL,
	digest        TEXT NOT NULL,
	der           BLOB NOT NULL,
	PRIMARY KEY (tenant_id, issuer_key_id)
) STRICT;

CREATE TABLE revoked_cas (
	tenant_id   TEXT NOT NULL REFERENCES tenants (id),
	fingerprint TEXT NOT NULL,
	group_id    TEXT NOT NULL,
	reason      TEXT NOT NULL DEFAULT '',
	actor       TEXT NOT NULL DEFAULT '',
	at          INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, fingerprint)
) STRICT;

CREATE TABLE decommissions (
	tenant_id    TEXT NOT NULL,
	id           TEXT NOT NULL,
	device_id    TEXT NOT NULL,
	reason       TEXT NOT NULL,
	policy       TEXT NOT NULL CHECK (policy IN ('delete', 'anonymise', 'keep')),
	retain_until INTEGER,
	state        TEXT NOT NULL CHECK (state IN ('awaiting_approval', 'running', 'completed', 'failed')),
	steps        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(steps)),
	requested_by TEXT NOT NULL,
	approval_id  TEXT NOT NULL DEFAULT '',
	certificate  TEXT NOT NULL DEFAULT '',
	purged       INTEGER NOT NULL DEFAULT 0 CHECK (purged IN (0, 1)),
	created_at   INTEGER NOT NULL,
	updated_at   INTEGER NOT NULL,
	finished_at  INTEGER,
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
-- One decommissioning of a device at a time: a failed one may be tried again.
CREATE UNIQUE INDEX decommissions_device ON decommissions (tenant_id, device_id) WHERE state <> 'failed';
CREATE INDEX decommissions_retained ON decommissions (retain_until) WHERE policy = 'keep' AND purged = 0;
