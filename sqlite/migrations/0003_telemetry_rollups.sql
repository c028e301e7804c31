-- Telemetry rollups and retention. Minute and hour buckets per device and
-- metric hold min, max, sum and count (sum and count rather than an average,
-- so that hours add up from minutes). The rollup job reads raw samples by
-- time, and the retention job deletes every table by time: hence an index on
-- at for each (the samples' primary key leads with the tenant).

CREATE INDEX samples_at ON samples (at);

CREATE TABLE samples_1m (
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
CREATE INDEX samples_1m_at ON samples_1m (at);

CREATE TABLE samples_1h (
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
CREATE INDEX samples_1h_at ON samples_1h (at);

-- One row: the end of the time rolled up so far.
CREATE TABLE rollup_watermark (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	at INTEGER NOT NULL
) STRICT;
