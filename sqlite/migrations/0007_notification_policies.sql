-- Notification policies (routing, grouping, escalation, actions), the
-- durable state of their groups, and once-per-alert actions.
-- spec is the policy's settings as a JSON object.

CREATE TABLE notification_policies (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	position   INTEGER NOT NULL,
	spec       TEXT NOT NULL CHECK (json_valid(spec) AND json_type(spec) = 'object'),
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, id)
) STRICT;

CREATE TABLE notification_groups (
	tenant_id     TEXT NOT NULL,
	policy_id     TEXT NOT NULL,
	group_key     TEXT NOT NULL,
	labels        TEXT NOT NULL CHECK (json_valid(labels) AND json_type(labels) = 'object'),
	alerts        TEXT NOT NULL CHECK (json_valid(alerts) AND json_type(alerts) = 'array'),
	changed       INTEGER NOT NULL CHECK (changed IN (0, 1)),
	next_flush_at INTEGER NOT NULL,
	last_sent_at  INTEGER,
	created_at    INTEGER NOT NULL,
	version       INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, policy_id, group_key),
	FOREIGN KEY (tenant_id, policy_id) REFERENCES notification_policies (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX notification_groups_due ON notification_groups (next_flush_at);

CREATE TABLE alert_actions (
	tenant_id    TEXT NOT NULL,
	alert_id     TEXT NOT NULL,
	policy_id    TEXT NOT NULL,
	kind         TEXT NOT NULL CHECK (kind IN ('escalate', 'quarantine')),
	notification TEXT NOT NULL,
	due_at       INTEGER NOT NULL,
	done_at      INTEGER,
	result       TEXT NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, alert_id, policy_id, kind),
	FOREIGN KEY (tenant_id, policy_id) REFERENCES notification_policies (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX alert_actions_due ON alert_actions (due_at) WHERE done_at IS NULL;
