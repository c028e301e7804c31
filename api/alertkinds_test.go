package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// TestShareAndSiteRules checks the share and site_connectivity rule kinds
// and the alert fields of inhibition and suppression through the API (the
// env checks each answer against openapi.json).
func TestShareAndSiteRules(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/alert-rules"
	resolve := 0.2
	share := AlertRuleRequest{Name: "many offline", Kind: steward.RuleShare, Severity: steward.AlertCritical, Scope: "model = gw-100",
		Share: &steward.ShareCondition{Signal: "offline", Window: steward.Duration(5 * time.Minute), Share: 0.3, ResolveShare: &resolve, MinDevices: 2}}
	site := AlertRuleRequest{Name: "sites", Kind: steward.RuleSiteConnectivity, Severity: steward.AlertMajor,
		Site: &steward.SiteCondition{MinShare: 0.6, MinDevices: 5}}
	var got steward.AlertRule
	e.must(t, http.StatusCreated, "POST", base, e.system, share).decode(t, &got)
	if got.Share == nil || got.Share.Share != 0.3 || got.Kind != steward.RuleShare {
		t.Fatalf("share rule: %+v", got)
	}
	e.must(t, http.StatusCreated, "POST", base, e.system, site).decode(t, &got)
	if got.Site == nil || got.Site.MinDevices != 5 {
		t.Fatalf("site rule: %+v", got)
	}
	siteID := got.ID

	for name, bad := range map[string]AlertRuleRequest{
		"site with scope": {Name: "b1", Kind: steward.RuleSiteConnectivity, Severity: steward.AlertMajor, Scope: "site = x", Site: &steward.SiteCondition{}},
		"share of 2":      {Name: "b2", Kind: steward.RuleShare, Severity: steward.AlertMajor, Share: &steward.ShareCondition{Signal: "offline", Window: 60e9, Share: 2}},
		"share no cond":   {Name: "b3", Kind: steward.RuleShare, Severity: steward.AlertMajor},
	} {
		if p := e.must(t, http.StatusBadRequest, "POST", base, e.system, bad).problem(t); p.Detail == "" {
			t.Errorf("%s: no detail", name)
		}
	}
	var rules List[steward.AlertRule]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &rules)
	if len(rules.Items) != 2 {
		t.Fatalf("bad rules were written: %+v", rules.Items)
	}

	now := time.Now().UTC()
	for _, a := range []steward.Alert{
		{ID: "al-site", RuleID: siteID, Subject: "paris", Labels: map[string]string{"site": "paris"}},
		{ID: "al-dev", RuleID: siteID, DeviceID: "d-1", InhibitedBy: "al-site", Suppressed: "device in maintenance"},
	} {
		a.TenantID, a.State, a.Severity, a.Summary, a.StartedAt, a.FiredAt, a.LastEvaluatedAt = steward.DefaultTenant, steward.AlertFiring,
			steward.AlertMajor, "x", now, &now, now
		if _, err := e.api.cfg.Store.PutAlert(t.Context(), a); err != nil {
			t.Fatal(err)
		}
	}
	var alert steward.Alert
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts/al-dev", e.system, nil).decode(t, &alert)
	if alert.InhibitedBy != "al-site" || alert.Suppressed != "device in maintenance" {
		t.Fatalf("device alert: %+v", alert)
	}
	alert = steward.Alert{}
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts/al-site", e.system, nil).decode(t, &alert)
	if alert.Subject != "paris" || alert.DeviceID != "" {
		t.Fatalf("site alert: %+v", alert)
	}
}
