-- A tenant's quarantine policy (steward.QuarantinePolicy): what a
-- quarantined device may still do, the automatic quarantine rules and the
-- webhook channel. The policy is one JSON document, checked by
-- QuarantinePolicy.Validate before it is written; a tenant without a row
-- has the default policy.
CREATE TABLE quarantine_policies (
	tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id),
	policy     TEXT NOT NULL CHECK (json_valid(policy)),
	updated_at INTEGER NOT NULL,
	updated_by TEXT NOT NULL DEFAULT ''
) STRICT;
