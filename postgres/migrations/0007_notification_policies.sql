-- Notification policies (routing, grouping, escalation, actions), the
-- durable state of their groups, and once-per-alert actions.
-- spec is the policy's settings as a JSON object.

CREATE TABLE notification_policies (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	position   INTEGER NOT NULL,
	spec       JSONB NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	UNIQUE (tenant_id, name),
	UNIQUE (tenant_id, id)
);

CREATE TABLE notification_groups (
	tenant_id     TEXT COLLATE "C" NOT NULL,
	policy_id     TEXT NOT NULL,
	group_key     TEXT NOT NULL,
	labels        JSONB NOT NULL CHECK (jsonb_typeof(labels) = 'object'),
	alerts        JSONB NOT NULL CHECK (jsonb_typeof(alerts) = 'array'),
	changed       BOOLEAN NOT NULL,
	next_flush_at TIMESTAMPTZ NOT NULL,
	last_sent_at  TIMESTAMPTZ,
	created_at    TIMESTAMPTZ NOT NULL,
	version       INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, policy_id, group_key),
	FOREIGN KEY (tenant_id, policy_id) REFERENCES notification_policies (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX notification_groups_due ON notification_groups (next_flush_at);

CREATE TABLE alert_actions (
	tenant_id    TEXT COLLATE "C" NOT NULL,
	alert_id     TEXT NOT NULL,
	policy_id    TEXT NOT NULL,
	kind         TEXT NOT NULL CHECK (kind IN ('escalate', 'quarantine')),
	notification TEXT NOT NULL,
	due_at       TIMESTAMPTZ NOT NULL,
	done_at      TIMESTAMPTZ,
	result       TEXT NOT NULL DEFAULT '',
	created_at   TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, alert_id, policy_id, kind),
	FOREIGN KEY (tenant_id, policy_id) REFERENCES notification_policies (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX alert_actions_due ON alert_actions (due_at) WHERE done_at IS NULL;
