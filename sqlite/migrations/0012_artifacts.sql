-- Artifacts, the devices allowed to download each one, resumable uploads,
-- and the signed TUF metadata of each tenant's repository. An artifact's
-- content lives in the blob store under its digest, not here.

CREATE TABLE artifacts (
	tenant_id             TEXT NOT NULL REFERENCES tenants (id),
	id                    TEXT NOT NULL,
	name                  TEXT NOT NULL,
	version               TEXT NOT NULL,
	type                  TEXT NOT NULL CHECK (type IN ('firmware', 'application', 'config-bundle')),
	sha256                TEXT NOT NULL CHECK (length(sha256) = 64),
	size                  INTEGER NOT NULL CHECK (size >= 0),
	compatible_models     TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(compatible_models) AND json_type(compatible_models) = 'array'),
	min_installed_version TEXT NOT NULL DEFAULT '',
	release_notes         TEXT NOT NULL DEFAULT '',
	created_by            TEXT NOT NULL DEFAULT '',
	created_at            INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (id),
	UNIQUE (tenant_id, name, version)
) STRICT;
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

CREATE TABLE artifact_grants (
	tenant_id   TEXT NOT NULL,
	artifact_id TEXT NOT NULL,
	device_id   TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	PRIMARY KEY (tenant_id, artifact_id, device_id),
	FOREIGN KEY (tenant_id, artifact_id) REFERENCES artifacts (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX artifact_grants_device ON artifact_grants (tenant_id, device_id);

CREATE TABLE artifact_uploads (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	artifact   TEXT NOT NULL CHECK (json_valid(artifact) AND json_type(artifact) = 'object'),
	length     INTEGER NOT NULL CHECK (length >= 0),
	"offset"   INTEGER NOT NULL DEFAULT 0 CHECK ("offset" >= 0 AND "offset" <= length),
	sha256     TEXT NOT NULL DEFAULT '',
	created_by TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (id)
) STRICT;
CREATE INDEX artifact_uploads_expiry ON artifact_uploads (expires_at);

CREATE TABLE tuf_metadata (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	role       TEXT NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
	version    INTEGER NOT NULL CHECK (version > 0),
	body       BLOB NOT NULL,
	expires_at INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, role, version)
) STRICT;
