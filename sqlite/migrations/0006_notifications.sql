-- Notification channels, silences and the delivery queue and log.
-- config is the channel's kind-specific settings as a JSON object (the
-- webhook secret and SMTP password included: the API never returns them).

CREATE TABLE notification_channels (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	kind       TEXT NOT NULL CHECK (kind IN ('webhook', 'email')),
	config     TEXT NOT NULL CHECK (json_valid(config) AND json_type(config) = 'object'),
	enabled    INTEGER NOT NULL CHECK (enabled IN (0, 1)),
	created_at INTEGER NOT NULL,
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE silences (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	matchers   TEXT NOT NULL CHECK (json_valid(matchers) AND json_type(matchers) = 'array'),
	starts_at  INTEGER NOT NULL,
	ends_at    INTEGER NOT NULL,
	created_by TEXT NOT NULL,
	comment    TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	CHECK (ends_at > starts_at)
) STRICT;
CREATE INDEX silences_tenant_end ON silences (tenant_id, ends_at);

CREATE TABLE deliveries (
	id               TEXT PRIMARY KEY,
	tenant_id        TEXT NOT NULL,
	channel_id       TEXT NOT NULL,
	notification_key TEXT NOT NULL,
	payload          TEXT NOT NULL,
	attempt          INTEGER NOT NULL DEFAULT 0,
	status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
	http_status      INTEGER NOT NULL DEFAULT 0,
	smtp_reply       TEXT NOT NULL DEFAULT '',
	error            TEXT NOT NULL DEFAULT '',
	next_attempt_at  INTEGER NOT NULL,
	created_at       INTEGER NOT NULL,
	delivered_at     INTEGER,
	UNIQUE (channel_id, notification_key),
	FOREIGN KEY (tenant_id, channel_id) REFERENCES notification_channels (tenant_id, id) ON DELETE CASCADE
) STRICT;
-- The worker's queue: pending deliveries by due time.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_log ON deliveries (tenant_id, created_at);
