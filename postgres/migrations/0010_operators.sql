-- Operators of the management plane: users (password or OpenID Connect
-- login), service accounts, custom roles, console sessions, and the owner,
-- scopes and expiry of API tokens. Tokens without an owner (the tenant's
-- admin and system tokens) keep their own role.

CREATE TABLE users (
	tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id            TEXT COLLATE "C" NOT NULL,
	email         TEXT COLLATE "C" NOT NULL,
	name          TEXT COLLATE "C" NOT NULL DEFAULT '',
	role          TEXT COLLATE "C" NOT NULL,
	disabled      BOOLEAN NOT NULL DEFAULT FALSE,
	password_hash TEXT COLLATE "C" NOT NULL DEFAULT '',
	oidc_subject  TEXT COLLATE "C",
	failed_logins INTEGER NOT NULL DEFAULT 0,
	locked_until  TIMESTAMPTZ,
	created_at    TIMESTAMPTZ NOT NULL,
	updated_at    TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, email),
	UNIQUE (tenant_id, oidc_subject)
);

CREATE TABLE service_accounts (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id         TEXT COLLATE "C" NOT NULL,
	name       TEXT COLLATE "C" NOT NULL,
	role       TEXT COLLATE "C" NOT NULL,
	disabled   BOOLEAN NOT NULL DEFAULT FALSE,
	created_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
);

CREATE TABLE custom_roles (
	tenant_id   TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name        TEXT COLLATE "C" NOT NULL,
	description TEXT COLLATE "C" NOT NULL DEFAULT '',
	permissions JSONB NOT NULL,
	query       TEXT COLLATE "C" NOT NULL DEFAULT '',
	created_at  TIMESTAMPTZ NOT NULL,
	updated_at  TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, name)
);

CREATE TABLE sessions (
	hash       TEXT COLLATE "C" PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL,
	user_id    TEXT COLLATE "C" NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	last_seen  TIMESTAMPTZ NOT NULL,
	expires_at TIMESTAMPTZ NOT NULL,
	FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

ALTER TABLE api_tokens ADD COLUMN user_id TEXT COLLATE "C";
ALTER TABLE api_tokens ADD COLUMN service_account_id TEXT COLLATE "C";
ALTER TABLE api_tokens ADD COLUMN scopes JSONB NOT NULL DEFAULT '[]';
ALTER TABLE api_tokens ADD COLUMN expires_at TIMESTAMPTZ;
ALTER TABLE api_tokens ADD FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE;
ALTER TABLE api_tokens ADD FOREIGN KEY (tenant_id, service_account_id) REFERENCES service_accounts (tenant_id, id) ON DELETE CASCADE;
CREATE INDEX api_tokens_user ON api_tokens (tenant_id, user_id);
CREATE INDEX api_tokens_service_account ON api_tokens (tenant_id, service_account_id);
