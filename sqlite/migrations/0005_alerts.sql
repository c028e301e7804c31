-- Alert rules and alerts. A rule's condition (threshold, absence, event or
-- rate, by kind) is one JSON object: the evaluator reads it whole and
-- nothing queries into it. At most one alert per rule and device is open
-- (pending or firing): the partial unique index alerts_open is what makes
-- PutAlert's upsert update the open alert rather than add a second one.

CREATE TABLE alert_rules (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	id         TEXT NOT NULL,
	name       TEXT NOT NULL,
	kind       TEXT NOT NULL CHECK (kind IN ('threshold', 'absence', 'event', 'rate')),
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

CREATE TABLE alerts (
	tenant_id         TEXT NOT NULL,
	id                TEXT NOT NULL,
	rule_id           TEXT NOT NULL,
	device_id         TEXT NOT NULL DEFAULT '',
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
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, rule_id) REFERENCES alert_rules (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, rule_id, device_id) WHERE state <> 'resolved';
CREATE INDEX alerts_started ON alerts (tenant_id, started_at);
