-- Approval policies and requests (the two-person rule), and the status of
-- a tenant (active or suspended).
-- A policy's spec is its settings as a JSON object; a request's payload is
-- kept as the requester's text, its attributes and decisions as JSON.

CREATE TABLE approval_policies (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	spec       TEXT NOT NULL CHECK (json_valid(spec) AND json_type(spec) = 'object'),
	created_by TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	UNIQUE (tenant_id, name)
) STRICT;

CREATE TABLE approval_requests (
	id                  TEXT PRIMARY KEY,
	tenant_id           TEXT NOT NULL REFERENCES tenants (id),
	action              TEXT NOT NULL,
	target              TEXT NOT NULL,
	payload             TEXT,
	reason              TEXT NOT NULL,
	requester           TEXT NOT NULL,
	attributes          TEXT NOT NULL CHECK (json_valid(attributes) AND json_type(attributes) = 'object'),
	approvals           INTEGER NOT NULL CHECK (approvals >= 1),
	policy_id           TEXT NOT NULL,
	approver_permission TEXT NOT NULL,
	approver_role       TEXT NOT NULL,
	state               TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
	decisions           TEXT NOT NULL CHECK (json_valid(decisions) AND json_type(decisions) = 'array'),
	created_at          INTEGER NOT NULL,
	expires_at          INTEGER NOT NULL
) STRICT;
CREATE INDEX approval_requests_tenant ON approval_requests (tenant_id, created_at);
CREATE INDEX approval_requests_pending ON approval_requests (expires_at) WHERE state = 'pending';

ALTER TABLE tenants ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
ALTER TABLE tenants ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN status_changed_at INTEGER;
