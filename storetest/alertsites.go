package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// testAlertSubjects checks the fields of inhibition and suppression and
// that open alerts of one rule are told apart by subject (one per site),
// while a second open alert of the same rule, device and subject is
// still the first one updated.
func testAlertSubjects(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	site := steward.AlertRule{ID: "r-site", TenantID: tenantA, Name: "sites", Kind: steward.RuleSiteConnectivity,
		Severity: steward.AlertMajor, Enabled: true, Site: &steward.SiteCondition{MinShare: 0.4, MinDevices: 2}, CreatedAt: t0, UpdatedAt: t0}
	share := steward.AlertRule{ID: "r-share", TenantID: tenantA, Name: "share", Kind: steward.RuleShare, Severity: steward.AlertMinor,
		Enabled: true, Share: &steward.ShareCondition{Signal: "offline", Window: steward.Duration(time.Minute), Share: 0.3}, CreatedAt: t0, UpdatedAt: t0}
	for _, r := range []steward.AlertRule{site, share} {
		must(t, s.CreateAlertRule(c, r))
		got, err := s.GetAlertRule(c, tenantA, r.ID)
		must(t, err)
		if got.Kind != r.Kind || fmt.Sprint(got.Site) != fmt.Sprint(r.Site) || fmt.Sprint(got.Share) != fmt.Sprint(r.Share) {
			t.Fatalf("rule round trip: %+v, want %+v", got, r)
		}
	}
	fired := t0
	mk := func(id, subject string) steward.Alert {
		a := openAlert(tenantA, id, "r-site", "")
		a.Subject, a.State, a.FiredAt = subject, steward.AlertFiring, &fired
		return a
	}
	paris, err := s.PutAlert(c, mk("a-paris", "paris"))
	must(t, err)
	lyon, err := s.PutAlert(c, mk("a-lyon", "lyon"))
	must(t, err)
	if paris.ID == lyon.ID || paris.Subject != "paris" || lyon.Subject != "lyon" {
		t.Fatalf("two sites: %+v %+v", paris, lyon)
	}
	again := mk("a-paris-2", "paris")
	again.Summary = "again"
	got, err := s.PutAlert(c, again)
	must(t, err)
	if got.ID != "a-paris" || got.Summary != "again" {
		t.Fatalf("second open alert of a site: %+v", got)
	}

	dev := openAlert(tenantA, "a-dev", "r-share", "")
	dev.InhibitedBy, dev.Suppressed = "a-paris", "device in maintenance"
	got, err = s.PutAlert(c, dev)
	must(t, err)
	if got.InhibitedBy != "a-paris" || got.Suppressed != "device in maintenance" {
		t.Fatalf("inhibited and suppressed: %+v", got)
	}
	dev.InhibitedBy, dev.Suppressed, dev.State, dev.FiredAt = "", "", steward.AlertFiring, &fired
	got, err = s.PutAlert(c, dev)
	must(t, err)
	if got.InhibitedBy != "" || got.Suppressed != "" || got.State != steward.AlertFiring {
		t.Fatalf("cleared: %+v", got)
	}
	resolved := t0.Add(time.Minute)
	r := mk("a-x", "lyon")
	r.State, r.ResolvedAt, r.InhibitedBy = steward.AlertResolved, &resolved, "a-other"
	got, err = s.PutAlert(c, r)
	must(t, err)
	if got.ID != "a-lyon" || got.State != steward.AlertResolved || got.InhibitedBy != "a-other" {
		t.Fatalf("resolve by subject: %+v", got)
	}
	if p, err := s.GetAlert(c, tenantA, "a-paris"); err != nil || p.State != steward.AlertFiring {
		t.Fatalf("the other site's alert: %+v %v", p, err)
	}

	// Bad input is refused and writes nothing.
	long := make([]byte, steward.MaxAlertSubjectLen+1)
	for i := range long {
		long[i] = 'x'
	}
	bad := mk("a-bad", string(long))
	_, err = s.PutAlert(c, bad)
	wantCode(t, err, steward.CodeInvalid)
	for name, r := range map[string]steward.AlertRule{
		"site with scope": func() steward.AlertRule { r := site; r.ID, r.Name, r.Scope = "r-b1", "b1", "site = x"; return r }(),
		"share above 1": func() steward.AlertRule {
			r := share
			r.ID, r.Name = "r-b2", "b2"
			r.Share = &steward.ShareCondition{Signal: "offline", Window: steward.Duration(time.Minute), Share: 1.5}
			return r
		}(),
		"share no signal": func() steward.AlertRule {
			r := share
			r.ID, r.Name = "r-b3", "b3"
			r.Share = &steward.ShareCondition{Window: steward.Duration(time.Minute), Share: 0.5}
			return r
		}(),
		"resolve above": func() steward.AlertRule {
			r := share
			r.ID, r.Name = "r-b4", "b4"
			v := 0.9
			r.Share = &steward.ShareCondition{Signal: "offline", Window: steward.Duration(time.Minute), Share: 0.5, ResolveShare: &v}
			return r
		}(),
		"site min_share 2": func() steward.AlertRule {
			r := site
			r.ID, r.Name = "r-b5", "b5"
			r.Site = &steward.SiteCondition{MinShare: 2}
			return r
		}(),
		"threshold missing": func() steward.AlertRule {
			r := share
			r.ID, r.Name = "r-b6", "b6"
			r.Share = &steward.ShareCondition{Signal: "threshold", Share: 0.5, Window: steward.Duration(time.Minute)}
			return r
		}(),
	} {
		err := s.CreateAlertRule(c, r)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		wantCode(t, err, steward.CodeInvalid)
	}
	all, err := s.ListAlerts(c, tenantA, steward.AlertFilter{})
	must(t, err)
	rules, err := s.ListAlertRules(c, tenantA)
	must(t, err)
	if len(all) != 3 || len(rules) != 2 {
		t.Fatalf("bad input wrote: %d alerts, %d rules", len(all), len(rules))
	}
}

// testSiteConnectivity checks the grouped count of devices per site: the
// tenant's own, with a site, in service (registered, maintenance and
// decommissioned devices left out), and AlertSignals' site and state.
func testSiteConnectivity(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	mk := func(tenant, id, site string, online bool, state steward.State) steward.Device {
		d := device(tenant, id)
		d.Location.Site, d.Presence.Online, d.State = site, online, state
		return d
	}
	createDevices(t, s,
		mk(tenantA, "d-sc1", "paris", false, steward.StateActive),
		mk(tenantA, "d-sc2", "paris", false, steward.StateProvisioned),
		mk(tenantA, "d-sc3", "paris", true, steward.StateActive),
		mk(tenantA, "d-sc4", "paris", false, steward.StateMaintenance),
		mk(tenantA, "d-sc5", "paris", false, steward.StateDecommissioned),
		mk(tenantA, "d-sc6", "paris", false, steward.StateRegistered),
		mk(tenantA, "d-sc7", "lyon", true, steward.StateQuarantined),
		mk(tenantA, "d-sc8", "", false, steward.StateActive),
		mk(tenantB, "d-scb", "paris", false, steward.StateActive))
	got, err := s.SiteConnectivity(c, tenantA)
	must(t, err)
	if g := fmt.Sprint(got); g != "[{lyon 1 0} {paris 3 2}]" {
		t.Fatalf("site connectivity: %s", g)
	}
	got, err = s.SiteConnectivity(c, "nobody")
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("unknown tenant: %+v", got)
	}
	_, err = s.SiteConnectivity(c, "")
	wantCode(t, err, steward.CodeInvalid)

	sigs, err := s.AlertSignals(c, tenantA, steward.AlertSignalQuery{Scope: "site = paris"})
	must(t, err)
	var show string
	for _, g := range sigs {
		show += fmt.Sprintf("%s %s %s; ", g.DeviceID, g.Site, g.State)
	}
	if want := "d-sc1 paris active; d-sc2 paris provisioned; d-sc3 paris active; d-sc4 paris maintenance; d-sc5 paris decommissioned; d-sc6 paris registered; "; show != want {
		t.Fatalf("signals:\n got %s\nwant %s", show, want)
	}
}
