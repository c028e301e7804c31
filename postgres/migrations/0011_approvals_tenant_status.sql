-- Approval policies and requests (the two-person rule), and the status of
-- a tenant (active or suspended).
-- A policy's spec is its settings as a JSON object; a request's payload is
-- kept as the requester's text (JSONB would reorder it), its attributes and
-- decisions as JSON.

CREATE TABLE approval_policies (
	id         TEXT PRIMARY KEY,
	tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	name       TEXT NOT NULL,
	spec       JSONB NOT NULL CHECK (jsonb_typeof(spec) = 'object'),
	created_by TEXT NOT NULL,
	created_at TIMESTAMPTZ NOT NULL,
	UNIQUE (tenant_id, name)
);

CREATE TABLE approval_requests (
	id                  TEXT PRIMARY KEY,
	tenant_id           TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
	action              TEXT NOT NULL,
	target              TEXT NOT NULL,
	payload             TEXT,
	reason              TEXT NOT NULL,
	requester           TEXT NOT NULL,
	attributes          JSONB NOT NULL CHECK (jsonb_typeof(attributes) = 'object'),
	approvals           INTEGER NOT NULL CHECK (approvals >= 1),
	policy_id           TEXT NOT NULL,
	approver_permission TEXT NOT NULL,
	approver_role       TEXT NOT NULL,
	state               TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'expired')),
	decisions           JSONB NOT NULL CHECK (jsonb_typeof(decisions) = 'array'),
	created_at          TIMESTAMPTZ NOT NULL,
	expires_at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX approval_requests_tenant ON approval_requests (tenant_id, created_at);
CREATE INDEX approval_requests_pending ON approval_requests (expires_at) WHERE state = 'pending';

ALTER TABLE tenants ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
ALTER TABLE tenants ADD COLUMN status_reason TEXT NOT NULL DEFAULT '';
ALTER TABLE tenants ADD COLUMN status_changed_at TIMESTAMPTZ;
