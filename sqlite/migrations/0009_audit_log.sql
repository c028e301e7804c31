-- The tamper-evident audit log (see audit/ and docs/security.md). One
-- append-only log per tenant, and the system log under tenant_id ''.
-- The logs are not tied to the tenants table: they outlive a tenant.
--
-- audit_logs holds each log's size; an append locks its row (an upsert
-- that changes nothing) so that appends to one log run one at a time.
-- audit_records keeps each record's canonical JSON (data, the exact bytes
-- the Merkle tree hashes) and the tree hashes its append stored (hashes,
-- 32-byte hashes concatenated, in tlog.StoredHashes order); the other
-- columns are copies of the record's fields for search, which the
-- verifier checks against data. audit_checkpoints keeps the signed note
-- of each size the log had.

CREATE TABLE audit_logs (
	tenant_id TEXT PRIMARY KEY,
	size      INTEGER NOT NULL CHECK (size >= 0)
) STRICT;

CREATE TABLE audit_records (
	tenant_id  TEXT NOT NULL,
	idx        INTEGER NOT NULL CHECK (idx >= 0),
	actor      TEXT NOT NULL,
	action     TEXT NOT NULL,
	target     TEXT NOT NULL DEFAULT '',
	outcome    TEXT NOT NULL,
	request_id TEXT NOT NULL DEFAULT '',
	at         INTEGER NOT NULL,
	data       BLOB NOT NULL,
	hashes     BLOB NOT NULL,
	PRIMARY KEY (tenant_id, idx)
) STRICT;
CREATE INDEX audit_records_actor ON audit_records (tenant_id, actor, idx);
CREATE INDEX audit_records_action ON audit_records (tenant_id, action, idx);
CREATE INDEX audit_records_target ON audit_records (tenant_id, target, idx);
CREATE INDEX audit_records_at ON audit_records (tenant_id, at);

CREATE TABLE audit_checkpoints (
	tenant_id  TEXT NOT NULL,
	size       INTEGER NOT NULL CHECK (size > 0),
	note       TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, size)
) STRICT;
