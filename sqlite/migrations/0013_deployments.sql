-- Deployments, their devices (one row per device and deployment, written in
-- batches) and each device's history in a deployment.
-- spec is the deployment's spec as a JSON object (target, query, phases,
-- policy, limits, gate, windows); evidence the last health gate's.
-- lease_owner and lease_until let one node at a time run a deployment.

CREATE TABLE deployments (
	id            TEXT PRIMARY KEY,
	tenant_id     TEXT NOT NULL REFERENCES tenants (id),
	name          TEXT NOT NULL,
	description   TEXT NOT NULL DEFAULT '',
	spec          TEXT NOT NULL CHECK (json_valid(spec) AND json_type(spec) = 'object'),
	state         TEXT NOT NULL CHECK (state IN ('draft', 'awaiting_approval', 'scheduled', 'running', 'paused',
	                                             'completed', 'aborted', 'rolled_back')),
	state_reason  TEXT NOT NULL DEFAULT '',
	evidence      TEXT CHECK (evidence IS NULL OR json_valid(evidence)),
	phase         INTEGER NOT NULL DEFAULT 0,
	phase_done_at INTEGER,
	rollback_of   TEXT NOT NULL DEFAULT '',
	created_by    TEXT NOT NULL,
	approved_by   TEXT NOT NULL DEFAULT '',
	approval_id   TEXT NOT NULL DEFAULT '',
	created_at    INTEGER NOT NULL,
	updated_at    INTEGER NOT NULL,
	started_at    INTEGER,
	finished_at   INTEGER,
	failed_base   INTEGER NOT NULL DEFAULT 0,
	finished_base INTEGER NOT NULL DEFAULT 0,
	tokens        REAL NOT NULL DEFAULT 0,
	tokens_at     INTEGER,
	lease_owner   TEXT NOT NULL DEFAULT '',
	lease_until   INTEGER NOT NULL DEFAULT 0,
	version       INTEGER NOT NULL DEFAULT 1,
	UNIQUE (tenant_id, id)
) STRICT;
CREATE INDEX deployments_tenant ON deployments (tenant_id, created_at);
-- The engine's work: deployments scheduled or running, by lease.
CREATE INDEX deployments_live ON deployments (lease_until) WHERE state IN ('scheduled', 'running');

CREATE TABLE deployment_devices (
	tenant_id     TEXT NOT NULL,
	deployment_id TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	phase         INTEGER NOT NULL,
	window_idx    INTEGER NOT NULL DEFAULT -1,
	state         TEXT NOT NULL CHECK (state IN ('pending', 'notified', 'downloading', 'downloaded', 'installing',
	                                             'rebooting', 'verifying', 'succeeded', 'failed', 'rolled_back',
	                                             'timed_out', 'skipped')),
	reason        TEXT NOT NULL DEFAULT '',
	transient     INTEGER NOT NULL DEFAULT 0 CHECK (transient IN (0, 1)),
	attempt       INTEGER NOT NULL DEFAULT 0,
	progress      REAL NOT NULL DEFAULT 0,
	from_version  TEXT NOT NULL DEFAULT '',
	to_version    TEXT NOT NULL DEFAULT '',
	not_before    INTEGER NOT NULL DEFAULT 0,
	deadline      INTEGER NOT NULL DEFAULT 0,
	updated_at    INTEGER NOT NULL,
	PRIMARY KEY (deployment_id, device_id),
	FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id) ON DELETE CASCADE
) STRICT;
-- Counting by phase and state, and picking the next pending devices of a
-- phase in device ID order, read this index alone.
CREATE INDEX deployment_devices_state ON deployment_devices (deployment_id, state, phase, device_id);

CREATE TABLE deployment_device_events (
	id            INTEGER PRIMARY KEY AUTOINCREMENT,
	tenant_id     TEXT NOT NULL,
	deployment_id TEXT NOT NULL,
	device_id     TEXT NOT NULL,
	attempt       INTEGER NOT NULL,
	state         TEXT NOT NULL,
	reason        TEXT NOT NULL DEFAULT '',
	progress      REAL NOT NULL DEFAULT 0,
	at            INTEGER NOT NULL,
	FOREIGN KEY (tenant_id, deployment_id) REFERENCES deployments (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX deployment_device_events_device ON deployment_device_events (deployment_id, device_id, id);
