-- Artifacts, the devices allowed to download each one, resumable uploads,
-- and the signed TUF metadata of each tenant's repository. An artifact's
-- content lives in the blob store under its digest, not here.

CREATE TABLE artifacts (
	tenant_id             TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id                    TEXT COLLATE "C" NOT NULL,
	name                  TEXT COLLATE "C" NOT NULL,
	version               TEXT COLLATE "C" NOT NULL,
	type                  TEXT COLLATE "C" NOT NULL CHECK (type IN ('firmware', 'application', 'config-bundle')),
	sha256                TEXT COLLATE "C" NOT NULL CHECK (length(sha256) = 64),
	size                  BIGINT NOT NULL CHECK (size >= 0),
	compatible_models     JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(compatible_models) = 'array'),
	min_installed_version TEXT COLLATE "C" NOT NULL DEFAULT '',
	release_notes         TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_by            TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at            TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (id),
	UNIQUE (tenant_id, name, version)
);
CREATE INDEX artifacts_sha256 ON artifacts (sha256);

CREATE TABLE artifact_grants (
	tenant_id   TEXT COLLATE "C" NOT NULL,
	artifact_id TEXT COLLATE "C" NOT NULL,
	device_id   TEXT COLLATE "C" NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
	PRIMARY KEY (tenant_id, artifact_id, device_id),
	FOREIGN KEY (tenant_id, artifact_id) REFERENCES artifacts (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX artifact_grants_device ON artifact_grants (tenant_id, device_id);

CREATE TABLE artifact_uploads (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id         TEXT COLLATE "C" NOT NULL,
	artifact   JSONB NOT NULL CHECK (jsonb_typeof(artifact) = 'object'),
	length     BIGINT NOT NULL CHECK (length >= 0),
	"offset"   BIGINT NOT NULL DEFAULT 0 CHECK ("offset" >= 0 AND "offset" <= length),
	sha256     TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_by TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (id)
);
CREATE INDEX artifact_uploads_expiry ON artifact_uploads (expires_at);

CREATE TABLE tuf_metadata (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	role       TEXT COLLATE "C" NOT NULL CHECK (role IN ('root', 'targets', 'snapshot', 'timestamp')),
	version    BIGINT NOT NULL CHECK (version > 0),
	body       BYTEA NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, role, version)
);
