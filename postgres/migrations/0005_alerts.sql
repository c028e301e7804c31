-- Alert rules and alerts. A rule's condition (threshold, absence, event or
-- rate, by kind) is one JSON object: the evaluator reads it whole and
-- nothing queries into it. At most one alert per rule and device is open
-- (pending or firing): the partial unique index alerts_open is what makes
-- PutAlert's upsert update the open alert rather than add a second one.

CREATE TABLE alert_rules (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	id         TEXT COLLATE "C" NOT NULL,
	name       TEXT COLLATE "C" NOT NULL,
	kind       TEXT COLLATE "C" NOT NULL CHECK (kind IN ('threshold', 'absence', 'event', 'rate')),
	severity   TEXT COLLATE "C" NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning', 'info')),
	labels     JSONB NOT NULL DEFAULT '{}',
	scope      TEXT COLLATE "C" NOT NULL DEFAULT '',
	for_ns     BIGINT NOT NULL DEFAULT 0,
	enabled    BOOLEAN NOT NULL DEFAULT TRUE,
	condition  JSONB NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, id),
	UNIQUE (tenant_id, name)
);

CREATE TABLE alerts (
	tenant_id         TEXT COLLATE "C" NOT NULL,
	id                TEXT COLLATE "C" NOT NULL,
	rule_id           TEXT COLLATE "C" NOT NULL,
	device_id         TEXT COLLATE "C" NOT NULL DEFAULT '',
	state             TEXT COLLATE "C" NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
	severity          TEXT COLLATE "C" NOT NULL CHECK (severity IN ('critical', 'major', 'minor', 'warning', 'info')),
	labels            JSONB NOT NULL DEFAULT '{}',
	summary           TEXT COLLATE "C" NOT NULL DEFAULT '',
	value             DOUBLE PRECISION NOT NULL DEFAULT 0,
	started_at        TIMESTAMPTZ NOT NULL,
	fired_at          TIMESTAMPTZ,
	resolved_at       TIMESTAMPTZ,
	last_evaluated_at TIMESTAMPTZ NOT NULL,
	acknowledged_by   TEXT COLLATE "C" NOT NULL DEFAULT '',
	acknowledged_at   TIMESTAMPTZ,
	assignee          TEXT COLLATE "C" NOT NULL DEFAULT '',
	PRIMARY KEY (tenant_id, id),
	FOREIGN KEY (tenant_id, rule_id) REFERENCES alert_rules (tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, rule_id, device_id) WHERE state <> 'resolved';
CREATE INDEX alerts_started ON alerts (tenant_id, started_at);
