-- Recent samples, keyed by time first.
--
-- With 100,000 series (10,000 devices × 10 metrics) each message's samples
-- landed on leaves of samples spread over the whole table (keyed by
-- device), about one page written per sample. The telemetry writer now
-- inserts into samples_recent, whose key starts with the time, so a batch
-- appends at the right edge of one B-tree. The rollup job rolls closed
-- minutes up from here (a range scan in time order) and moves them into
-- samples sorted by its key, so that each series' tail leaf is touched once
-- per move rather than once per message. Readers see samples plus the rows
-- of samples_recent whose key samples does not hold (a redelivery of a
-- sample already moved is never seen twice); see sqlstore.sampleRows.
CREATE TABLE samples_recent (
	at        INTEGER NOT NULL,
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	metric    TEXT NOT NULL,
	value     REAL NOT NULL,
	PRIMARY KEY (at, tenant_id, device_id, metric)
) STRICT, WITHOUT ROWID;
