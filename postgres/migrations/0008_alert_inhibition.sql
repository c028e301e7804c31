-- Alert inhibition and suppression, share and site connectivity rules:
-- the new rule kinds, the alert columns, and the open-alert index that
-- now tells apart the alerts of one rule by subject (the site of a site
-- connectivity alert).

ALTER TABLE alert_rules DROP CONSTRAINT alert_rules_kind_check;
ALTER TABLE alert_rules ADD CONSTRAINT alert_rules_kind_check
	CHECK (kind IN ('threshold', 'absence', 'event', 'rate', 'share', 'site_connectivity'));

ALTER TABLE alerts ADD COLUMN subject TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN inhibited_by TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE alerts ADD COLUMN suppressed TEXT COLLATE "C" NOT NULL DEFAULT '';
DROP INDEX alerts_open;
CREATE UNIQUE INDEX alerts_open ON alerts (tenant_id, rule_id, device_id, subject) WHERE state <> 'resolved';
