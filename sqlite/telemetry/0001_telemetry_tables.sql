-- The telemetry database: the tables the telemetry intake writes, in a file
-- of their own with a writer of their own (see sqlite.TelemetryPath), so
-- that the intake never waits for the main database's writer, which the
-- rollup job holds for seconds each minute. The main database's
-- connections attach this one read-only as "telemetry", and the
-- statements name its tables without the prefix. Changes to these tables
-- go into this directory's migrations, not the main database's. Their
-- rows were in the main database before (its migrations 0017 and 0021):
-- sqlite.Open copies them over and drops them there.

-- Readings not yet moved into samples, keyed by time first (see the main
-- migration 0017). batch is the number of the intake's batch that wrote
-- the row last: the rollup's move reads them in a transaction of the main
-- writer while the intake goes on, then deletes only the batches its
-- snapshot held (sqlstore.Store.deleteMoved).
CREATE TABLE samples_recent (
	at        INTEGER NOT NULL,
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	metrics   TEXT NOT NULL,
	batch     INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (at, tenant_id, device_id)
) STRICT, WITHOUT ROWID;

-- The latest value of each metric, one row per device (main migration 0021).
CREATE TABLE metric_latest (
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	at        INTEGER NOT NULL,
	metrics   TEXT NOT NULL,
	PRIMARY KEY (tenant_id, device_id)
) STRICT, WITHOUT ROWID;

-- The number of the intake's last batch.
CREATE TABLE telemetry_batch (
	id INTEGER PRIMARY KEY CHECK (id = 1),
	n  INTEGER NOT NULL
) STRICT;
INSERT INTO telemetry_batch (id, n) VALUES (1, 0);
