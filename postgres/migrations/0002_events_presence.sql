-- Device events (dev/{id}/events) and the presence history (every connect
-- and disconnect). Both refer to a device of their own tenant, and both are
-- read per device over time, newest first: hence the (tenant, device, at)
-- indexes, with id to break ties in arrival order.

CREATE TABLE device_events (
	id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id TEXT COLLATE "C" NOT NULL,
	device_id TEXT COLLATE "C" NOT NULL,
	type      TEXT COLLATE "C" NOT NULL,
	severity  TEXT COLLATE "C" NOT NULL CHECK (severity IN ('debug', 'info', 'notice', 'warning', 'error', 'critical')),
	message   TEXT COLLATE "C" NOT NULL DEFAULT '',
	fields    JSONB NOT NULL DEFAULT '{}',
	at        TIMESTAMPTZ NOT NULL,
	received  TIMESTAMPTZ NOT NULL,
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE INDEX device_events_device_at ON device_events (tenant_id, device_id, at, id);
CREATE INDEX device_events_device_type_at ON device_events (tenant_id, device_id, type, at, id);

CREATE TABLE presence_events (
	id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	tenant_id   TEXT COLLATE "C" NOT NULL,
	device_id   TEXT COLLATE "C" NOT NULL,
	online      BOOLEAN NOT NULL,
	at          TIMESTAMPTZ NOT NULL,
	remote_addr TEXT COLLATE "C" NOT NULL DEFAULT '',
	FOREIGN KEY (tenant_id, device_id) REFERENCES devices (tenant_id, id)
);
CREATE INDEX presence_events_device_at ON presence_events (tenant_id, device_id, at, id);
