-- Samples stored by reading: one row per device and time, holding every
-- metric of that time as a JSONB object {"metric": value, …}.
--
-- A device reports its metrics together (10 per message in the
-- 10,000-device benchmark), so a row per reading writes, moves and deletes
-- a tenth of the rows for the same samples. Readers expand the object with
-- jsonb_each_text (sqlstore.sampleRows); a metric's value keeps the first
-- one stored, as before: a merge keeps the stored keys (new || stored).
CREATE TABLE samples_by_reading (
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	at        TIMESTAMPTZ NOT NULL,
	metrics   JSONB NOT NULL,
	PRIMARY KEY (tenant_id, device_id, at)
);

INSERT INTO samples_by_reading (tenant_id, device_id, at, metrics)
	SELECT tenant_id, device_id, at, jsonb_object_agg(metric, value) FROM samples
	GROUP BY tenant_id, device_id, at;
DROP TABLE samples;
ALTER TABLE samples_by_reading RENAME TO samples;
ALTER INDEX samples_by_reading_pkey RENAME TO samples_pkey;
CREATE INDEX samples_at ON samples USING brin (at);

CREATE TABLE recent_by_reading (
	at        TIMESTAMPTZ NOT NULL,
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	metrics   JSONB NOT NULL,
	PRIMARY KEY (at, tenant_id, device_id)
);

INSERT INTO recent_by_reading (at, tenant_id, device_id, metrics)
	SELECT at, tenant_id, device_id, jsonb_object_agg(metric, value) FROM samples_recent
	GROUP BY at, tenant_id, device_id;
DROP TABLE samples_recent;
ALTER TABLE recent_by_reading RENAME TO samples_recent;
ALTER INDEX recent_by_reading_pkey RENAME TO samples_recent_pkey;

-- The latest value of each metric, one row per device: {"metric": [at, value]}
-- with at in Unix microseconds, and at the newest of them. The writer reads
-- a batch's devices FOR UPDATE, merges in Go (a metric moves only forward
-- in time) and writes each device once, where it upserted a row per metric.
CREATE TABLE latest_by_device (
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	at        TIMESTAMPTZ NOT NULL,
	metrics   JSONB NOT NULL,
	PRIMARY KEY (tenant_id, device_id)
);

INSERT INTO latest_by_device (tenant_id, device_id, at, metrics)
	SELECT tenant_id, device_id, MAX(at),
		jsonb_object_agg(metric, jsonb_build_array((extract(epoch FROM at) * 1000000)::bigint, value))
	FROM metric_latest GROUP BY tenant_id, device_id;
DROP TABLE metric_latest;
ALTER TABLE latest_by_device RENAME TO metric_latest;
ALTER INDEX latest_by_device_pkey RENAME TO metric_latest_pkey;
