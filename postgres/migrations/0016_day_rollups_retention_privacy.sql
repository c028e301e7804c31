-- Day rollups, retention per data class and device privacy.
--
-- samples_1d holds one bucket per UTC day, device and metric, summed from
-- the day's hours, so that long ranges (fleet analytics over a month) read
-- one row per device-day. It is filled from the hours already held, so that
-- a store upgraded with months of hour rollups answers from its first day.

CREATE TABLE samples_1d (
	tenant_id    TEXT COLLATE "C" NOT NULL,
	device_id    TEXT COLLATE "C" NOT NULL,
	metric       TEXT COLLATE "C" NOT NULL,
	at           TIMESTAMPTZ NOT NULL,
	min_value    DOUBLE PRECISION NOT NULL,
	max_value    DOUBLE PRECISION NOT NULL,
	sum_value    DOUBLE PRECISION NOT NULL,
	sample_count BIGINT NOT NULL,
	PRIMARY KEY (tenant_id, device_id, metric, at)
);
CREATE INDEX samples_1d_at ON samples_1d (at);

INSERT INTO samples_1d (tenant_id, device_id, metric, at, min_value, max_value, sum_value, sample_count)
	SELECT tenant_id, device_id, metric, date_bin('86400 seconds', at, TIMESTAMPTZ '1970-01-01 00:00:00+00'),
		MIN(min_value), MAX(max_value), SUM(sum_value), SUM(sample_count)
	FROM samples_1h GROUP BY 1, 2, 3, 4;

-- A tenant's retention periods that differ from the server's defaults, per
-- data class (see steward.RetentionClass).
CREATE TABLE retention_overrides (
	tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	class          TEXT COLLATE "C" NOT NULL,
	period_seconds BIGINT NOT NULL CHECK (period_seconds > 0),
	updated_at     TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, class)
);

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
	tenant_id  TEXT COLLATE "C" NOT NULL,
	device_id  TEXT COLLATE "C" NOT NULL,
	personal   BOOLEAN NOT NULL,
	granted    JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(granted) = 'array'),
	updated_at TIMESTAMPTZ NOT NULL,
	PRIMARY KEY (tenant_id, device_id),
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE INDEX device_consent_personal ON device_consent (tenant_id) WHERE personal;

-- What is left of an erased device: its ID, when and by whom, and the
-- serials of its certificates (all revoked), so that a revocation list can
-- still name them.
CREATE TABLE device_tombstones (
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	device_id  TEXT COLLATE "C" NOT NULL,
	erased_at  TIMESTAMPTZ NOT NULL,
	erased_by  TEXT NOT NULL DEFAULT '',
	serials    JSONB NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(serials) = 'array'),
	PRIMARY KEY (tenant_id, device_id)
);
