-- Telemetry rollups and retention. Minute and hour buckets per device and
-- metric hold min, max, sum and count (sum and count rather than an average,
-- so that hours add up from minutes). The rollup job reads raw samples by
-- time and the retention job deletes every table by time. Samples arrive
-- roughly in time order, so a BRIN index on at finds a time range for a
-- fraction of a B-tree's cost on the write path, the hot one; the rollup
-- tables take one write per bucket and get B-trees.

CREATE INDEX samples_at ON samples USING brin (at);

CREATE TABLE samples_1m (
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
CREATE INDEX samples_1m_at ON samples_1m (at);

CREATE TABLE samples_1h (
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
CREATE INDEX samples_1h_at ON samples_1h (at);

-- One row: the end of the time rolled up so far.
CREATE TABLE rollup_watermark (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	at TIMESTAMPTZ NOT NULL
);
