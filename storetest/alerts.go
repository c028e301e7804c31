package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// alertRule returns a valid threshold rule of tenant.
func alertRule(tenant, id, name string) steward.AlertRule {
	resolve := 70.0
	return steward.AlertRule{
		ID: id, TenantID: tenant, Name: name, Kind: steward.RuleThreshold, Severity: steward.AlertMajor,
		Labels: map[string]string{"team": "ops"}, Scope: "site = paris", For: steward.Duration(5 * time.Minute), Enabled: true,
		Threshold: &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggAvg, Window: steward.Duration(10 * time.Minute),
			Operator: ">", Value: 80, ResolveValue: &resolve},
		CreatedAt: t0, UpdatedAt: t0,
	}
}

// openAlert returns a pending alert of a rule and device.
func openAlert(tenant, id, rule, device string) steward.Alert {
	return steward.Alert{ID: id, TenantID: tenant, RuleID: rule, DeviceID: device, State: steward.AlertPending,
		Severity: steward.AlertMajor, Labels: map[string]string{"team": "ops"}, Summary: "hot", Value: 81,
		StartedAt: t0, LastEvaluatedAt: t0}
}

// testAlertRules checks the rule round trip, the name conflict, update,
// delete, and that bad rules are refused and write nothing.
func testAlertRules(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	r := alertRule(tenantA, "r1", "hot")
	must(t, s.CreateAlertRule(c, r))
	got, err := s.GetAlertRule(c, tenantA, "r1")
	must(t, err)
	if got.Name != "hot" || got.Threshold == nil || *got.Threshold.ResolveValue != 70 || got.For.D() != 5*time.Minute ||
		got.Scope != "site = paris" || !got.Enabled || got.Labels["team"] != "ops" || !got.CreatedAt.Equal(stored(t0)) {
		t.Fatalf("rule round trip: %+v %+v", got, got.Threshold)
	}
	wantCode(t, s.CreateAlertRule(c, alertRule(tenantA, "r2", "hot")), steward.CodeConflict)
	must(t, s.CreateAlertRule(c, alertRule(tenantB, "r2", "hot"))) // another tenant may use the name

	r.Severity, r.Enabled, r.UpdatedAt = steward.AlertCritical, false, at(time.Hour)
	must(t, s.UpdateAlertRule(c, r))
	got, err = s.GetAlertRule(c, tenantA, "r1")
	must(t, err)
	if got.Severity != steward.AlertCritical || got.Enabled || !got.UpdatedAt.Equal(stored(at(time.Hour))) {
		t.Fatalf("after update: %+v", got)
	}
	wantCode(t, s.UpdateAlertRule(c, alertRule(tenantA, "nope", "other")), steward.CodeNotFound)

	bad := map[string]func(r *steward.AlertRule){
		"no name":        func(r *steward.AlertRule) { r.Name = "" },
		"bad severity":   func(r *steward.AlertRule) { r.Severity = "urgent" },
		"bad kind":       func(r *steward.AlertRule) { r.Kind = "magic" },
		"two conditions": func(r *steward.AlertRule) { r.Absence = &steward.AbsenceCondition{Signal: "offline", Window: 60e9} },
		"bad operator":   func(r *steward.AlertRule) { r.Threshold.Operator = "!=" },
		"no hysteresis":  func(r *steward.AlertRule) { v := 90.0; r.Threshold.ResolveValue = &v },
		"no window":      func(r *steward.AlertRule) { r.Threshold.Window = 0 },
		"bad scope":      func(r *steward.AlertRule) { r.Scope = "site = = paris" },
		"negative for":   func(r *steward.AlertRule) { r.For = -1 },
	}
	for name, mut := range bad {
		r := alertRule(tenantA, "rbad", "bad")
		mut(&r)
		err := s.CreateAlertRule(c, r)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		wantCode(t, err, steward.CodeInvalid)
	}
	wantCode(t, s.CreateAlertRule(c, alertRule("no-such-tenant", "r9", "x")), steward.CodeNotFound)
	rules, err := s.ListAlertRules(c, tenantA)
	must(t, err)
	if len(rules) != 1 || rules[0].ID != "r1" {
		t.Fatalf("tenant A rules: %+v", rules)
	}
	must(t, s.DeleteAlertRule(c, tenantA, "r1"))
	wantCode(t, s.DeleteAlertRule(c, tenantA, "r1"), steward.CodeNotFound)
	wantCode(t, func() error { _, err := s.GetAlertRule(c, tenantA, "r1"); return err }(), steward.CodeNotFound)
}

// testAlerts checks the one open alert per rule and device, a new one after
// resolution, filters, acknowledgement, assignment and the cascade on rule
// deletion.
func testAlerts(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateAlertRule(c, alertRule(tenantA, "r1", "hot")))
	a, err := s.PutAlert(c, openAlert(tenantA, "a1", "r1", "d-1"))
	must(t, err)
	if a.ID != "a1" || a.State != steward.AlertPending {
		t.Fatalf("put: %+v", a)
	}
	// A second open alert of the same rule and device updates the first.
	fired := at(5 * time.Minute)
	second := openAlert(tenantA, "a2", "r1", "d-1")
	second.State, second.FiredAt, second.Value, second.LastEvaluatedAt, second.StartedAt = steward.AlertFiring, &fired, 85, fired, fired
	a, err = s.PutAlert(c, second)
	must(t, err)
	if a.ID != "a1" || a.State != steward.AlertFiring || a.Value != 85 || !a.StartedAt.Equal(stored(t0)) || a.FiredAt == nil {
		t.Fatalf("upsert: %+v", a)
	}
	list, err := s.ListAlerts(c, tenantA, steward.AlertFilter{RuleID: "r1"})
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("got %d alerts, want 1", len(list))
	}
	a, err = s.AcknowledgeAlert(c, tenantA, "a1", "alice", at(6*time.Minute))
	must(t, err)
	if a.AcknowledgedBy != "alice" || a.AcknowledgedAt == nil {
		t.Fatalf("ack: %+v", a)
	}
	a, err = s.AssignAlert(c, tenantA, "a1", "bob")
	must(t, err)
	if a.Assignee != "bob" || a.AcknowledgedBy != "alice" {
		t.Fatalf("assign: %+v", a)
	}
	// Resolve, then a new open alert is a new row.
	resolved := at(10 * time.Minute)
	res := a
	res.State, res.ResolvedAt, res.LastEvaluatedAt = steward.AlertResolved, &resolved, resolved
	a, err = s.PutAlert(c, res)
	must(t, err)
	if a.ID != "a1" || a.State != steward.AlertResolved || a.Assignee != "bob" {
		t.Fatalf("resolve: %+v", a)
	}
	again := openAlert(tenantA, "a3", "r1", "d-1")
	again.StartedAt = at(20 * time.Minute)
	a, err = s.PutAlert(c, again)
	must(t, err)
	if a.ID != "a3" {
		t.Fatalf("after resolution got %+v, want a new alert a3", a)
	}
	_, err = s.PutAlert(c, openAlert(tenantA, "a4", "r1", "d-2"))
	must(t, err)

	for _, tc := range []struct {
		f    steward.AlertFilter
		want string
	}{
		{steward.AlertFilter{}, "[a3 a4 a1]"},
		{steward.AlertFilter{State: steward.AlertResolved}, "[a1]"},
		{steward.AlertFilter{Open: true}, "[a3 a4]"},
		{steward.AlertFilter{DeviceID: "d-2"}, "[a4]"},
		{steward.AlertFilter{Severity: steward.AlertMinor}, "[]"},
		{steward.AlertFilter{Limit: 1, State: steward.AlertPending}, "[a3]"},
	} {
		got, err := s.ListAlerts(c, tenantA, tc.f)
		must(t, err)
		var idl []string
		for _, a := range got {
			idl = append(idl, a.ID)
		}
		if g := fmt.Sprint(idl); g != tc.want && !(tc.want == "[]" && len(idl) == 0) {
			t.Fatalf("filter %+v: got %s, want %s", tc.f, g, tc.want)
		}
	}
	counts, err := s.CountAlerts(c)
	must(t, err)
	total := 0
	for _, n := range counts {
		total += n.Count
	}
	if total != 3 {
		t.Fatalf("counts %+v: want 3 alerts", counts)
	}

	// Bad input is refused and writes nothing.
	for name, mut := range map[string]func(a *steward.Alert){
		"bad state":       func(a *steward.Alert) { a.State = "open" },
		"firing no time":  func(a *steward.Alert) { a.State = steward.AlertFiring },
		"no id":           func(a *steward.Alert) { a.ID = "" },
		"bad severity":    func(a *steward.Alert) { a.Severity = "high" },
		"no started time": func(a *steward.Alert) { a.StartedAt = time.Time{} },
	} {
		b := openAlert(tenantA, "abad", "r1", "d-9")
		mut(&b)
		_, err := s.PutAlert(c, b)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		wantCode(t, err, steward.CodeInvalid)
	}
	_, err = s.PutAlert(c, openAlert(tenantA, "a9", "no-rule", "d-9"))
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.ListAlerts(c, tenantA, steward.AlertFilter{State: "open"})
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.AcknowledgeAlert(c, tenantA, "a1", "", t0)
	wantCode(t, err, steward.CodeInvalid)
	if got, _ := s.ListAlerts(c, tenantA, steward.AlertFilter{DeviceID: "d-9"}); len(got) != 0 {
		t.Fatalf("bad input wrote %+v", got)
	}

	must(t, s.DeleteAlert(c, tenantA, "a4"))
	wantCode(t, s.DeleteAlert(c, tenantA, "a4"), steward.CodeNotFound)
	must(t, s.DeleteAlertRule(c, tenantA, "r1"))
	if got, _ := s.ListAlerts(c, tenantA, steward.AlertFilter{}); len(got) != 0 {
		t.Fatalf("deleting the rule left %+v", got)
	}
}

// testAlertsIsolation checks that tenant B neither sees nor changes A's
// rules and alerts.
func testAlertsIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateAlertRule(c, alertRule(tenantA, "r1", "hot")))
	_, err := s.PutAlert(c, openAlert(tenantA, "a1", "r1", "d-1"))
	must(t, err)
	_, err = s.GetAlertRule(c, tenantB, "r1")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.UpdateAlertRule(c, alertRule(tenantB, "r1", "hot")), steward.CodeNotFound)
	wantCode(t, s.DeleteAlertRule(c, tenantB, "r1"), steward.CodeNotFound)
	_, err = s.PutAlert(c, openAlert(tenantB, "a2", "r1", "d-1")) // A's rule, from B
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.GetAlert(c, tenantB, "a1")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.AcknowledgeAlert(c, tenantB, "a1", "mallory", t0)
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.AssignAlert(c, tenantB, "a1", "mallory")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteAlert(c, tenantB, "a1"), steward.CodeNotFound)
	if l, _ := s.ListAlerts(c, tenantB, steward.AlertFilter{}); len(l) != 0 {
		t.Fatalf("tenant B sees %+v", l)
	}
	if l, _ := s.ListAlertRules(c, tenantB); len(l) != 0 {
		t.Fatalf("tenant B sees rules %+v", l)
	}
	a, err := s.GetAlert(c, tenantA, "a1")
	must(t, err)
	if a.AcknowledgedBy != "" || a.Assignee != "" {
		t.Fatalf("tenant B changed %+v", a)
	}
}

// testAlertSignals checks the per-device signals of one rule: the scope,
// each aggregation over the range, event counts with severity and field
// matches, and that another tenant's data never counts.
func testAlertSignals(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	mk := func(tenant, id, site string, online bool) steward.Device {
		d := device(tenant, id)
		d.Location.Site, d.Presence.Online = site, online
		return d
	}
	createDevices(t, s, mk(tenantA, "d-sig1", "paris", true), mk(tenantA, "d-sig2", "paris", false),
		mk(tenantA, "d-sig3", "lyon", true), mk(tenantB, "d-sigb", "paris", true))
	from, to := at(0), at(time.Hour)
	var samples []steward.Sample
	for i, v := range []float64{10, 30, 20} {
		samples = append(samples, steward.Sample{TenantID: tenantA, DeviceID: "d-sig1", Metric: "temperature", At: from.Add(time.Duration(i) * time.Minute), Value: v})
	}
	samples = append(samples,
		steward.Sample{TenantID: tenantA, DeviceID: "d-sig1", Metric: "temperature", At: to, Value: 1000},
		steward.Sample{TenantID: tenantB, DeviceID: "d-sigb", Metric: "temperature", At: from, Value: 1000})
	must(t, s.WriteSamples(c, samples))
	ev := func(tenant, id, typ string, sev steward.Severity, fields map[string]any) steward.DeviceEvent {
		return steward.DeviceEvent{TenantID: tenant, DeviceID: id, Type: typ, Severity: sev, Fields: fields, At: from.Add(time.Minute), Received: from.Add(time.Minute)}
	}
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{
		ev(tenantA, "d-sig2", "crash", steward.SeverityError, map[string]any{"app": "pump", "code": 7}),
		ev(tenantA, "d-sig2", "crash", steward.SeverityInfo, map[string]any{"app": "ui"}),
		ev(tenantA, "d-sig1", "reboot", steward.SeverityCritical, nil),
		ev(tenantB, "d-sigb", "crash", steward.SeverityCritical, map[string]any{"app": "pump"}),
	}))
	show := func(sigs []steward.AlertSignal) string {
		out := ""
		for _, g := range sigs {
			out += fmt.Sprintf("%s on=%v n=%d v=%g ev=%d; ", g.DeviceID, g.Online, g.Samples, g.Value, g.Events)
		}
		return out
	}
	for _, tc := range []struct {
		q    steward.AlertSignalQuery
		want string
	}{
		{steward.AlertSignalQuery{Scope: "site = paris", Metric: "temperature", Aggregation: "avg"},
			"d-sig1 on=true n=3 v=20 ev=0; d-sig2 on=false n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Scope: "site = paris", Metric: "temperature", Aggregation: "max"},
			"d-sig1 on=true n=3 v=30 ev=0; d-sig2 on=false n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Scope: "site = paris", Metric: "temperature", Aggregation: "min"},
			"d-sig1 on=true n=3 v=10 ev=0; d-sig2 on=false n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Scope: "site = paris", Metric: "temperature", Aggregation: "last"},
			"d-sig1 on=true n=3 v=20 ev=0; d-sig2 on=false n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Event: "crash"},
			"d-sig1 on=true n=0 v=0 ev=0; d-sig2 on=false n=0 v=0 ev=2; d-sig3 on=true n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Event: "crash", MinSeverity: steward.SeverityWarning},
			"d-sig1 on=true n=0 v=0 ev=0; d-sig2 on=false n=0 v=0 ev=1; d-sig3 on=true n=0 v=0 ev=0; "},
		{steward.AlertSignalQuery{Scope: "site = paris", Event: "crash", Field: "app", FieldValue: "ui"},
			"d-sig1 on=true n=0 v=0 ev=0; d-sig2 on=false n=0 v=0 ev=1; "},
		{steward.AlertSignalQuery{Scope: "site = paris", Event: "crash", Field: "code", FieldValue: "7"},
			"d-sig1 on=true n=0 v=0 ev=0; d-sig2 on=false n=0 v=0 ev=1; "},
	} {
		tc.q.From, tc.q.To = from, to
		got, err := s.AlertSignals(c, tenantA, tc.q)
		must(t, err)
		if g := show(got); g != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s", tc.q, g, tc.want)
		}
	}
	sigs, err := s.AlertSignals(c, tenantA, steward.AlertSignalQuery{Scope: "site = paris"})
	must(t, err)
	if len(sigs) != 2 || !sigs[0].LastSample.Equal(stored(to)) || !sigs[1].LastSample.IsZero() || sigs[0].LastSeen.IsZero() {
		t.Fatalf("last sample: %+v", sigs)
	}
	for name, q := range map[string]steward.AlertSignalQuery{
		"bad scope":       {Scope: "site = = x"},
		"no range":        {Metric: "temperature", Aggregation: "avg"},
		"bad aggregation": {Metric: "temperature", Aggregation: "median", From: from, To: to},
		"bad event":       {Event: "a b", From: from, To: to},
	} {
		_, err := s.AlertSignals(c, tenantA, q)
		if err == nil {
			t.Fatalf("%s: no error", name)
		}
		wantCode(t, err, steward.CodeInvalid)
	}
}
