-- Samples stored by reading: one row per device and time, holding every
-- metric of that time as a JSON object {"metric": value, …}.
--
-- One row per sample kept SQLite near its ceiling of about 100,000 rows a
-- second on two cores, before the broker, TLS and the rollup job's move had
-- any of the machine. A device reports its metrics together (10 per
-- message in the 10,000-device benchmark), so a row per reading writes,
-- moves and deletes a tenth of the rows for the same samples. Readers expand
-- the object with json_each (sqlstore.sampleRows); a metric's value keeps
-- the first one stored, as before: a merge keeps the stored keys
-- (json_patch(new, stored)).
CREATE TABLE samples_by_reading (
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	metrics   TEXT NOT NULL,
	PRIMARY KEY (tenant_id, device_id, at)
) STRICT, WITHOUT ROWID;

INSERT INTO samples_by_reading (tenant_id, device_id, at, metrics)
	SELECT tenant_id, device_id, at, json_group_object(metric, value) FROM samples
	GROUP BY tenant_id, device_id, at ORDER BY tenant_id, device_id, at;
DROP TABLE samples;
ALTER TABLE samples_by_reading RENAME TO samples;
CREATE INDEX samples_at ON samples (at);

CREATE TABLE recent_by_reading (
	at        INTEGER NOT NULL,
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	metrics   TEXT NOT NULL,
	PRIMARY KEY (at, tenant_id, device_id)
) STRICT, WITHOUT ROWID;

INSERT INTO recent_by_reading (at, tenant_id, device_id, metrics)
	SELECT at, tenant_id, device_id, json_group_object(metric, value) FROM samples_recent
	GROUP BY at, tenant_id, device_id ORDER BY at, tenant_id, device_id;
DROP TABLE samples_recent;
ALTER TABLE recent_by_reading RENAME TO samples_recent;

-- The latest value of each metric, one row per device: {"metric": [at, value]}
-- with at in Unix microseconds, and at the newest of them. The writer reads
-- a batch's devices, merges in Go (a metric moves only forward in time) and
-- writes each device once, where it upserted a row per metric: those
-- upserts were a third of the server's CPU with 10 metrics per message.
CREATE TABLE latest_by_device (
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	metrics   TEXT NOT NULL,
	PRIMARY KEY (tenant_id, device_id)
) STRICT, WITHOUT ROWID;

INSERT INTO latest_by_device (tenant_id, device_id, at, metrics)
	SELECT tenant_id, device_id, MAX(at), json_group_object(metric, json_array(at, value)) FROM metric_latest
	GROUP BY tenant_id, device_id;
DROP TABLE metric_latest;
ALTER TABLE latest_by_device RENAME TO metric_latest;
