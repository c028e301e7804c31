-- Day rollups, retention per data class and device privacy.
--
-- samples_1d holds one bucket per UTC day, device and metric, summed from
-- the day's hours, so that long ranges (fleet analytics over a month) read
-- one row per device-day. It is filled from the hours already held, so that
-- a store upgraded with months of hour rollups answers from its first day.

CREATE TABLE samples_1d (
	tenant_id    TEXT NOT NULL,
	device_id    TEXT NOT NULL,
	metric       TEXT NOT NULL,
	at           INTEGER NOT NULL,
	min_value    REAL NOT NULL,
	max_value    REAL NOT NULL,
	sum_value    REAL NOT NULL,
	sample_count INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric, at)
) STRICT, WITHOUT ROWID;
CREATE INDEX samples_1d_at ON samples_1d (at);

INSERT INTO samples_1d (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
	SELECT tenant_id, device_id, metric, (at / 86400000000) * 86400000000, MIN(min_value), MAX(max_value), SUM(sum_value), SUM(sample_count)
	FROM samples_1h GROUP BY 1, 2, 3, 4;

-- A tenant's retention periods that differ from the server's defaults, per
-- data class (see steward.RetentionClass).
CREATE TABLE retention_overrides (
	tenant_id      TEXT NOT NULL REFERENCES tenants (id),
	class          TEXT NOT NULL,
	period_seconds INTEGER NOT NULL CHECK (period_seconds > 0),
	updated_at     INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, class)
) STRICT;

-- The retention job deletes each tenant's rows by time: an index on
-- (tenant_id, time) for each table it prunes.
CREATE INDEX device_events_tenant_at ON device_events (tenant_id, at);
CREATE INDEX presence_events_tenant_at ON presence_events (tenant_id, at);
CREATE INDEX security_events_tenant_at ON security_events (tenant_id, at);
CREATE INDEX lifecycle_events_tenant_at ON lifecycle_events (tenant_id, at);
CREATE INDEX alerts_resolved ON alerts (tenant_id, resolved_at) WHERE state = 'resolved';

-- Consent of a device that belongs to a person: the data classes its
-- person agreed to. Data of a class not granted is not kept.
CREATE TABLE device_consent (
	tenant_id  TEXT NOT NULL,
	device_id  TEXT NOT NULL,
	personal   INTEGER NOT NULL CHECK (personal IN (0, 1)),
	granted    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(granted)),
	updated_at INTEGER NOT NULL,
	PRIMARY KEY (tenant_id, device_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
CREATE INDEX device_consent_personal ON device_consent (tenant_id) WHERE personal = 1;

-- What is left of an erased device: its ID, when and by whom, and the
-- serials of its certificates (all revoked), so that a revocation list can
-- still name them.
CREATE TABLE device_tombstones (
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	device_id  TEXT NOT NULL,
	erased_at  INTEGER NOT NULL,
	erased_by  TEXT NOT NULL DEFAULT '',
	serials    TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(serials)),
	PRIMARY KEY (tenant_id, device_id)
) STRICT;
