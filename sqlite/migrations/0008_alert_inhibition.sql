-- Alert inhibition and suppression, share and site connectivity rules.
-- SQLite cannot change a CHECK constraint in place, so alert_rules (for
-- its kinds) and alerts (for its new columns and the open-alert index,
-- which now tells apart the alerts of one rule by subject: the site of a
-- site connectivity alert) are rebuilt. The order keeps the foreign key
-- from cascading: the new alerts table references the new rules table,
-- the old alerts go before the old rules, and the renames carry the
-- reference along.

CREATE TABLE alert_rules_new (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	name       TEXT NOT NULL,
	kind       TEXT NOT NULL CHECK (kind IN ('threshold', 'absence', 'event', 'rate', 'share', 'site_connectivity')),
	severity   TEXT NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning', 'info')),
	labels     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
	scope      TEXT NOT NULL DEFAULT '',
	for_ns     INTEGER NOT NULL DEFAULT 0,
	enabled    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
	condition  TEXT NOT NULL CHECK (json_valid(condition)),
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
) STRICT;
INSERT INTO alert_rules_new SELECT tenant_id, id, name, kind, severity, labels, scope, for_ns, enabled, condition, created_at, updated_at
	FROM alert_rules;

CREATE TABLE alerts_new (
	tenant_id         TEXT NOT NULL,
	id                TEXT NOT NULL,
	rule_id           TEXT NOT NULL,
	device_id         TEXT NOT NULL DEFAULT '',
	subject           TEXT NOT NULL DEFAULT '',
	state             TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
	severity          TEXT NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning', 'info')),
	labels            TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(labels)),
	summary           TEXT NOT NULL DEFAULT '',
	value             REAL NOT NULL DEFAULT 0,
	started_at        INTEGER NOT NULL,
	fired_at          INTEGER,
	resolved_at       INTEGER,
	last_evaluated_at INTEGER NOT NULL,
	acknowledged_by   TEXT NOT NULL DEFAULT '',
	acknowledged_at   INTEGER,
	assignee          TEXT NOT NULL DEFAULT '',
	inhibited_by      TEXT NOT NULL DEFAULT '',
	suppressed        TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, rule_id) REFERENCES alert_rules_new (tenant_id, id) ON DELETE CASCADE
) STRICT;
INSERT INTO alerts_new (tenant_id, id, rule_id, device_id, state, severity, labels, summary, value, started_at, fired_at,
		resolved_at, last_evaluated_at, acknowledged_by, acknowledged_at, assignee)
	SELECT tenant_id, id, rule_id, device_id, state, severity, labels, summary, value, started_at, fired_at,
		resolved_at, last_evaluated_at, acknowledged_by, acknowledged_at, assignee FROM alerts;

DROP TABLE alerts;
DROP TABLE alert_rules;
ALTER TABLE alert_rules_new RENAME TO alert_rules;
ALTER TABLE alerts_new RENAME TO alerts;
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, rule_id, device_id, subject) WHERE state <> 'resolved';
CREATE INDEX alerts_started ON alerts (tenant_id, started_at);
