-- Operators of the management plane: users (password or OpenID Connect
-- login), service accounts, custom roles, console sessions, and the owner,
-- scopes and expiry of API tokens. Tokens without an owner (the tenant's
-- admin and system tokens) keep their own role.

CREATE TABLE users (
	tenant_id     TEXT NOT NULL REFERENCES tenants (id),
	id            TEXT NOT NULL,
	email         TEXT NOT NULL,
	name          TEXT NOT NULL DEFAULT '',
	role          TEXT NOT NULL,
	disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	password_hash TEXT NOT NULL DEFAULT '',
	oidc_subject  TEXT,
	failed_logins INTEGER NOT NULL DEFAULT 0,
	locked_until  INTEGER,
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, email),
	UNIQUE (tenant_id, oidc_subject)
) STRICT;

CREATE TABLE service_accounts (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	name       TEXT NOT NULL,
	role       TEXT NOT NULL,
	disabled   INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE custom_roles (
	tenant_id   TEXT NOT NULL REFERENCES tenants (id),
	name        TEXT NOT NULL,
	description TEXT NOT NULL DEFAULT '',
	permissions TEXT NOT NULL CHECK (json_valid(permissions)),
	query       TEXT NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, name)
) STRICT;

CREATE TABLE sessions (
	hash       TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL,
	user_id    TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
CREATE INDEX sessions_expiry ON sessions (expires_at);

-- SQLite cannot add a table constraint to an existing table, so the
-- owner of a token has no foreign key here: the store deletes an owner's
-- tokens with the owner, in one transaction.
ALTER TABLE api_tokens ADD COLUMN user_id TEXT;
ALTER TABLE api_tokens ADD COLUMN service_account_id TEXT;
ALTER TABLE api_tokens ADD COLUMN scopes TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(scopes));
ALTER TABLE api_tokens ADD COLUMN expires_at INTEGER;
CREATE INDEX api_tokens_user ON api_tokens (tenant_id, user_id);
CREATE INDEX api_tokens_service_account ON api_tokens (tenant_id, service_account_id);
