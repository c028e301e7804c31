-- Device events (dev/{id}/events) and the presence history (every connect
-- and disconnect). Both refer to a device of their own tenant, and both are
-- read per device over time, newest first: hence the (tenant, device, at)
-- indexes, with id to break ties in arrival order.

CREATE TABLE device_events (
	id        INTEGER PRIMARY KEY,
	tenant_id TEXT NOT NULL,
	device_id TEXT NOT NULL,
	type      TEXT NOT NULL,
	severity  TEXT NOT NULL CHECK (severity IN ('debug', 'info', 'notice', 'warning', 'error', 'critical')),
	message   TEXT NOT NULL DEFAULT '',
	fields    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fields)),
	at        INTEGER NOT NULL,
	received  INTEGER NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
CREATE INDEX device_events_device_at ON device_events (tenant_id, device_id, at, id);
CREATE INDEX device_events_device_type_at ON device_events (tenant_id, device_id, type, at, id);

CREATE TABLE presence_events (
	id          INTEGER PRIMARY KEY,
	tenant_id   TEXT NOT NULL,
	device_id   TEXT NOT NULL,
	online      INTEGER NOT NULL CHECK (online IN (0, 1)),
	at          INTEGER NOT NULL,
	remote_addr TEXT NOT NULL DEFAULT '',
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
) STRICT;
CREATE INDEX presence_events_device_at ON presence_events (tenant_id, device_id, at, id);
