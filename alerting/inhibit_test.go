package alerting

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlite"
)

// recorder is a Notifier that records what it is handed (the real
// notifier is tested in package notify; here the seam is what matters).
type recorder struct {
	mu   sync.Mutex
	sent []steward.Notification
}

func (r *recorder) Notify(_ context.Context, n steward.Notification) ([]steward.Delivery, *steward.Silence, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, n)
	return nil, nil, nil
}

// take returns what was sent since the last take, as "subject state"
// (subject: the device, or site:NAME), sorted.
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.sent {
		who := n.DeviceID
		if who == "" {
			who = "site:" + n.Labels["site"]
		}
		out = append(out, who+" "+n.State)
	}
	r.sent = nil
	slices.Sort(out)
	return out
}

// fleet is a SQLite store with a tenant and devices, all online at t0.
type fleet struct {
	s steward.Store
	t *testing.T
}

func newFleet(t *testing.T, devices map[string]string) *fleet {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"), nil)
	must(t, err)
	t.Cleanup(func() { _ = s.Close() })
	must(t, s.CreateTenant(t.Context(), steward.Tenant{ID: tenant, Name: "Acme", CreatedAt: t0}))
	for id, site := range devices {
		must(t, s.CreateDevice(t.Context(), steward.Device{ID: id, TenantID: tenant, Location: steward.Location{Site: site},
			State: steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0,
			Presence: steward.Presence{Online: true, LastSeen: t0}}))
	}
	return &fleet{s: s, t: t}
}

// presence sets devices online or offline (last seen at).
func (f *fleet) presence(online bool, at time.Time, ids ...string) {
	f.t.Helper()
	for _, id := range ids {
		must(f.t, f.s.UpdatePresence(f.t.Context(), tenant, id, steward.Presence{Online: online, LastSeen: at}))
	}
}

// state moves a device to a lifecycle state.
func (f *fleet) state(id string, to steward.State, at time.Time) {
	f.t.Helper()
	d, err := f.s.GetDevice(f.t.Context(), tenant, id)
	must(f.t, err)
	_, err = steward.Transition(&d, to, "test", "system", at)
	must(f.t, err)
	_, err = f.s.UpdateDevice(f.t.Context(), d)
	must(f.t, err)
}

// alerts returns the tenant's open alerts as "subject state [inhibited] [suppressed]", sorted.
func (f *fleet) alerts() []string {
	f.t.Helper()
	as, err := f.s.ListAlerts(f.t.Context(), tenant, steward.AlertFilter{Open: true})
	must(f.t, err)
	var out []string
	for _, a := range as {
		s := a.DeviceID
		if s == "" {
			s = "site:" + a.Subject
			if a.Subject == "" {
				s = "rule:" + a.RuleID
			}
		}
		s += " " + string(a.State)
		if a.InhibitedBy != "" {
			s += " inhibited"
		}
		if a.Suppressed != "" {
			s += " suppressed"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func offlineRule() steward.AlertRule {
	r := rule(steward.RuleAbsence, 0)
	r.Scope = ""
	r.Absence = &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(2 * time.Minute)}
	return r
}

func expect(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// TestSiteInhibition: a site whose four devices all go offline raises one
// site alert and four inhibited device alerts, none of them notified but
// the site's; when the site comes back but for one device, that device's
// alert is notified then.
func TestSiteInhibition(t *testing.T) {
	t.Parallel()
	f := newFleet(t, map[string]string{"d-1": "paris", "d-2": "paris", "d-3": "paris", "d-4": "paris", "d-9": "lyon"})
	must(t, f.s.CreateAlertRule(t.Context(), offlineRule()))
	clock := &testClock{now: t0}
	rec := &recorder{}
	ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})

	f.presence(false, t0, "d-1", "d-2", "d-3", "d-4")
	clock.set(t0.Add(time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "site dark, devices within their window", f.alerts(), "site:paris firing")
	expect(t, "notified", rec.take(), "site:paris firing")
	site, err := f.s.GetAlertRule(t.Context(), tenant, steward.BuiltinSiteRuleID)
	must(t, err)
	if site.Kind != steward.RuleSiteConnectivity || !site.Enabled {
		t.Fatalf("built-in rule: %+v", site)
	}

	clock.set(t0.Add(3 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "devices past their window", f.alerts(),
		"d-1 firing inhibited", "d-2 firing inhibited", "d-3 firing inhibited", "d-4 firing inhibited", "site:paris firing")
	expect(t, "notified", rec.take())
	as, err := f.s.ListAlerts(t.Context(), tenant, steward.AlertFilter{DeviceID: "d-1"})
	must(t, err)
	siteAlerts, err := f.s.ListAlerts(t.Context(), tenant, steward.AlertFilter{RuleID: steward.BuiltinSiteRuleID})
	must(t, err)
	if len(as) != 1 || len(siteAlerts) != 1 || as[0].InhibitedBy != siteAlerts[0].ID || siteAlerts[0].Labels["site"] != "paris" || siteAlerts[0].DeviceID != "" {
		t.Fatalf("d-1 %+v, site %+v", as, siteAlerts)
	}

	// Two come back: 2 of 4 offline is below the site threshold (3), so
	// the site alert resolves; the other two are stragglers of the
	// recovery, held for the recovery grace.
	f.presence(true, t0.Add(4*time.Minute), "d-1", "d-2")
	clock.set(t0.Add(4 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "site back, two stragglers", f.alerts(), "d-3 firing inhibited", "d-4 firing inhibited")
	expect(t, "notified", rec.take(), "site:paris resolved")

	// d-3 comes back within the grace: never notified.
	f.presence(true, t0.Add(5*time.Minute), "d-3")
	clock.set(t0.Add(5 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "d-4 still away, within the grace", f.alerts(), "d-4 firing inhibited")
	expect(t, "notified", rec.take())

	// The grace (2 minutes from the site's resolution) has passed: d-4,
	// offline while its peers are back, is notified on its own.
	clock.set(t0.Add(6 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "grace over", f.alerts(), "d-4 firing")
	expect(t, "notified", rec.take(), "d-4 firing")

	// d-4 comes back: its resolution is notified (its firing was).
	f.presence(true, t0.Add(7*time.Minute), "d-4")
	clock.set(t0.Add(7 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "all back", f.alerts())
	expect(t, "notified", rec.take(), "d-4 resolved")
}

// TestInhibitedResolvesQuietly: device alerts that fired inhibited and
// resolve with their site are never notified at all.
func TestInhibitedResolvesQuietly(t *testing.T) {
	t.Parallel()
	f := newFleet(t, map[string]string{"d-1": "paris", "d-2": "paris", "d-3": "paris"})
	must(t, f.s.CreateAlertRule(t.Context(), offlineRule()))
	clock := &testClock{now: t0}
	rec := &recorder{}
	ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})
	f.presence(false, t0, "d-1", "d-2", "d-3")
	clock.set(t0.Add(3 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "dark", f.alerts(), "d-1 firing inhibited", "d-2 firing inhibited", "d-3 firing inhibited", "site:paris firing")
	f.presence(true, t0.Add(4*time.Minute), "d-1", "d-2", "d-3")
	clock.set(t0.Add(4 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "back", f.alerts())
	expect(t, "notified", rec.take(), "site:paris firing", "site:paris resolved")
}

// TestSingleDeviceOffline: one device offline among online peers alerts
// on its own, at once.
func TestSingleDeviceOffline(t *testing.T) {
	t.Parallel()
	f := newFleet(t, map[string]string{"d-1": "paris", "d-2": "paris", "d-3": "paris", "d-4": "paris"})
	must(t, f.s.CreateAlertRule(t.Context(), offlineRule()))
	clock := &testClock{now: t0}
	rec := &recorder{}
	ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})
	f.presence(false, t0, "d-2")
	clock.set(t0.Add(3 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "one offline", f.alerts(), "d-2 firing")
	expect(t, "notified", rec.take(), "d-2 firing")
	if _, err := f.s.GetAlertRule(t.Context(), tenant, steward.BuiltinSiteRuleID); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("built-in site rule stored though no site went dark: %v", err)
	}
}

// TestMaintenance: a device in maintenance raises no absence alert, and
// its other alerts are recorded as suppressed, not notified, until it is
// back in service.
func TestMaintenance(t *testing.T) {
	t.Parallel()
	f := newFleet(t, map[string]string{"d-1": "paris", "d-2": "paris"})
	must(t, f.s.CreateAlertRule(t.Context(), offlineRule()))
	hot := rule(steward.RuleThreshold, 0)
	hot.ID, hot.Name, hot.Scope = "r-hot", "hot", ""
	hot.Threshold = &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggLast,
		Window: steward.Duration(10 * time.Minute), Operator: ">", Value: 80}
	must(t, f.s.CreateAlertRule(t.Context(), hot))
	clock := &testClock{now: t0}
	rec := &recorder{}
	ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})

	f.state("d-1", steward.StateMaintenance, t0)
	f.presence(false, t0, "d-1")
	must(t, f.s.WriteSamples(t.Context(), []steward.Sample{{TenantID: tenant, DeviceID: "d-1", Metric: "temperature", At: t0, Value: 90}}))
	clock.set(t0.Add(5 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "in maintenance", f.alerts(), "d-1 firing suppressed")
	expect(t, "notified", rec.take())
	as, err := f.s.ListAlerts(t.Context(), tenant, steward.AlertFilter{RuleID: hot.ID})
	must(t, err)
	if len(as) != 1 || as[0].Suppressed != maintenanceReason {
		t.Fatalf("hot alerts: %+v", as)
	}

	// Back in service, still hot and offline: both are notified now.
	f.state("d-1", steward.StateActive, t0.Add(6*time.Minute))
	clock.set(t0.Add(6 * time.Minute))
	must(t, ev.Evaluate(t.Context()))
	expect(t, "back in service", f.alerts(), "d-1 firing", "d-1 firing")
	expect(t, "notified", rec.take(), "d-1 firing", "d-1 firing")
}

// TestShareRule: a share rule fires once when enough of its scope is
// offline, and resolves only below its resolve share (hysteresis).
func TestShareRule(t *testing.T) {
	t.Parallel()
	devs := map[string]string{}
	for i := range 10 {
		devs[fmt.Sprintf("d-%02d", i)] = fmt.Sprintf("s%d", i) // one site each: no site alerts
	}
	f := newFleet(t, devs)
	r := rule(steward.RuleShare, 0)
	r.Scope = ""
	r.Share = &steward.ShareCondition{Signal: "offline", Window: steward.Duration(time.Minute), Share: 0.3, ResolveShare: val(0.1)}
	must(t, f.s.CreateAlertRule(t.Context(), r))
	clock := &testClock{now: t0}
	rec := &recorder{}
	ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})
	for i, st := range []struct {
		offline []string
		want    []string
		sent    []string
	}{
		{[]string{"d-00", "d-01"}, nil, nil},
		{[]string{"d-00", "d-01", "d-02"}, []string{"rule:r-share firing"}, []string{" firing"}},
		{[]string{"d-00", "d-01"}, []string{"rule:r-share firing"}, nil}, // 20%: above the resolve share
		{[]string{"d-00"}, []string{"rule:r-share firing"}, nil},         // 10%: not below it
		{nil, nil, []string{" resolved"}},
	} {
		now := t0.Add(time.Duration(i+1) * 10 * time.Minute)
		for id := range devs {
			f.presence(!slices.Contains(st.offline, id), now.Add(-5*time.Minute), id)
		}
		clock.set(now)
		must(t, ev.Evaluate(t.Context()))
		expect(t, fmt.Sprintf("step %d alerts", i), f.alerts(), st.want...)
		sent := rec.take()
		for j := range sent {
			sent[j] = strings.TrimPrefix(sent[j], "site:")
		}
		expect(t, fmt.Sprintf("step %d notified", i), sent, st.sent...)
	}
	as, err := f.s.ListAlerts(t.Context(), tenant, steward.AlertFilter{RuleID: r.ID})
	must(t, err)
	if len(as) != 1 || as[0].DeviceID != "" || !strings.Contains(as[0].Summary, "devices") {
		t.Fatalf("share alerts: %+v", as)
	}
}

// TestShareThreshold: a threshold share counts only devices with samples.
func TestShareThreshold(t *testing.T) {
	t.Parallel()
	f := newFleet(t, map[string]string{"d-1": "a", "d-2": "b", "d-3": "c"})
	r := rule(steward.RuleShare, 0)
	r.Scope = ""
	r.Share = &steward.ShareCondition{Signal: "threshold", Share: 0.5, Threshold: &steward.ThresholdCondition{
		Metric: "temperature", Aggregation: steward.AggMax, Window: steward.Duration(5 * time.Minute), Operator: ">", Value: 80}}
	must(t, f.s.CreateAlertRule(t.Context(), r))
	clock := &testClock{now: t0.Add(time.Minute)}
	ev := New(Config{Store: f.s, Clock: clock})
	must(t, f.s.WriteSamples(t.Context(), []steward.Sample{
		{TenantID: tenant, DeviceID: "d-1", Metric: "temperature", At: t0, Value: 90},
		{TenantID: tenant, DeviceID: "d-2", Metric: "temperature", At: t0, Value: 20},
	}))
	must(t, ev.Evaluate(t.Context()))
	as, err := f.s.ListAlerts(t.Context(), tenant, steward.AlertFilter{RuleID: r.ID})
	must(t, err)
	if len(as) != 1 || as[0].State != steward.AlertFiring || as[0].Value != 0.5 {
		t.Fatalf("threshold share (1 of 2 with samples): %+v", as)
	}
}

// TestSiteRuleConfigured: a tenant's own site_connectivity rule replaces
// the built-in default (here 2 devices and 60%), and a disabled one
// switches inhibition off.
func TestSiteRuleConfigured(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		enabled bool
		alerts  []string
		sent    []string
	}{
		{"enabled", true, []string{"d-1 firing inhibited", "d-2 firing inhibited", "site:paris firing"}, []string{"site:paris firing"}},
		{"disabled", false, []string{"d-1 firing", "d-2 firing"}, []string{"d-1 firing", "d-2 firing"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFleet(t, map[string]string{"d-1": "paris", "d-2": "paris", "d-3": "paris"})
			must(t, f.s.CreateAlertRule(t.Context(), offlineRule()))
			site := rule(steward.RuleSiteConnectivity, 0)
			site.Scope, site.Enabled, site.Site = "", tc.enabled, &steward.SiteCondition{MinShare: 0.6, MinDevices: 2}
			must(t, f.s.CreateAlertRule(t.Context(), site))
			clock := &testClock{now: t0}
			rec := &recorder{}
			ev := New(Config{Store: f.s, Clock: clock, Notifier: rec})
			f.presence(false, t0, "d-1", "d-2")
			clock.set(t0.Add(3 * time.Minute))
			must(t, ev.Evaluate(t.Context()))
			expect(t, "alerts", f.alerts(), tc.alerts...)
			expect(t, "notified", rec.take(), tc.sent...)
			if _, err := f.s.GetAlertRule(t.Context(), tenant, steward.BuiltinSiteRuleID); steward.ErrorCode(err) != steward.CodeNotFound {
				t.Fatalf("built-in rule stored beside the tenant's: %v", err)
			}
		})
	}
}
