package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func policy(tenant, id, name string, order int, channels ...string) steward.NotificationPolicy {
	return steward.NotificationPolicy{ID: id, TenantID: tenant, Name: name, Order: order,
		Matchers: []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "battery-low"}},
		Channels: channels, GroupBy: []string{"rule", "site"}, GroupWait: steward.Duration(10 * time.Second),
		EscalateAfter: steward.Duration(15 * time.Minute), EscalateChannels: channels,
		Actions: []string{steward.PolicyActionQuarantine}, Continue: true, CreatedAt: t0, UpdatedAt: t0}
}

// testPolicies checks the policy round trip, the order, update, delete
// (cascading to groups and actions), the name conflict and isolation.
func testPolicies(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-1", "hook")))
	p1, p2 := policy(tenantA, "np-1", "zeta", 1, "ch-1"), policy(tenantA, "np-2", "alpha", 2, "ch-1")
	must(t, s.CreateNotificationPolicy(c, p2))
	must(t, s.CreateNotificationPolicy(c, p1))
	got, err := s.GetNotificationPolicy(c, tenantA, "np-1")
	must(t, err)
	if got.Name != "zeta" || got.Order != 1 || len(got.Matchers) != 1 || got.Channels[0] != "ch-1" || got.GroupBy[1] != "site" ||
		got.GroupWait.D() != 10*time.Second || got.EscalateAfter.D() != 15*time.Minute || !got.Continue ||
		got.Actions[0] != steward.PolicyActionQuarantine || !got.CreatedAt.Equal(stored(t0)) {
		t.Fatalf("policy round trip: %+v", got)
	}
	list, err := s.ListNotificationPolicies(c, tenantA)
	must(t, err)
	if len(list) != 2 || list[0].ID != "np-1" || list[1].ID != "np-2" {
		t.Fatalf("ListNotificationPolicies = %+v, want by order", list)
	}
	wantCode(t, s.CreateNotificationPolicy(c, policy(tenantA, "np-3", "zeta", 3, "ch-1")), steward.CodeConflict)

	p1.Order, p1.Name, p1.UpdatedAt = 5, "omega", at(time.Hour)
	must(t, s.UpdateNotificationPolicy(c, p1))
	got, err = s.GetNotificationPolicy(c, tenantA, "np-1")
	must(t, err)
	if got.Order != 5 || got.Name != "omega" || !got.UpdatedAt.Equal(stored(at(time.Hour))) || !got.CreatedAt.Equal(stored(t0)) {
		t.Fatalf("after update: %+v", got)
	}
	p1.Name = "alpha"
	wantCode(t, s.UpdateNotificationPolicy(c, p1), steward.CodeConflict)

	// Isolation: B sees, changes and deletes nothing of A's.
	_, err = s.GetNotificationPolicy(c, tenantB, "np-1")
	wantCode(t, err, steward.CodeNotFound)
	list, err = s.ListNotificationPolicies(c, tenantB)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists A's policies: %+v", list)
	}
	bp := policy(tenantB, "np-1", "x", 0)
	bp.Channels, bp.EscalateAfter, bp.EscalateChannels = nil, 0, nil
	wantCode(t, s.UpdateNotificationPolicy(c, bp), steward.CodeNotFound)
	wantCode(t, s.DeleteNotificationPolicy(c, tenantB, "np-1"), steward.CodeNotFound)
	// B cannot route to A's channel.
	wantCode(t, s.CreateNotificationPolicy(c, policy(tenantB, "np-b", "b", 0, "ch-1")), steward.CodeInvalid)

	// Deleting the policy deletes its groups and actions.
	_, err = s.PutNotificationGroup(c, notifGroup(tenantA, "np-2", "k"))
	must(t, err)
	must(t, s.CreateAlertAction(c, alertAction(tenantA, "np-2", "al-1", steward.AlertActionEscalate)))
	must(t, s.DeleteNotificationPolicy(c, tenantA, "np-2"))
	wantCode(t, s.DeleteNotificationPolicy(c, tenantA, "np-2"), steward.CodeNotFound)
	_, err = s.GetNotificationGroup(c, tenantA, "np-2", "k")
	wantCode(t, err, steward.CodeNotFound)
	as, err := s.DueAlertActions(c, at(24*time.Hour), 10)
	must(t, err)
	if len(as) != 0 {
		t.Fatalf("actions of a deleted policy: %+v", as)
	}
}

// testPoliciesInvalid checks that bad policies are refused and nothing is written.
func testPoliciesInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-1", "hook")))
	tests := []struct {
		name string
		edit func(p *steward.NotificationPolicy)
	}{
		{"no name", func(p *steward.NotificationPolicy) { p.Name = " " }},
		{"negative order", func(p *steward.NotificationPolicy) { p.Order = -1 }},
		{"bad matcher", func(p *steward.NotificationPolicy) { p.Matchers[0].Op = "~" }},
		{"bad regexp", func(p *steward.NotificationPolicy) {
			p.Matchers[0] = steward.Matcher{Name: "rule", Op: steward.MatchRegexp, Value: "("}
		}},
		{"no channels nor actions", func(p *steward.NotificationPolicy) { p.Channels, p.Actions = nil, nil }},
		{"unknown channel", func(p *steward.NotificationPolicy) { p.Channels = []string{"ch-nope"} }},
		{"duplicate channel", func(p *steward.NotificationPolicy) { p.Channels = []string{"ch-1", "ch-1"} }},
		{"bad group_by", func(p *steward.NotificationPolicy) { p.GroupBy = []string{"a b"} }},
		{"negative wait", func(p *steward.NotificationPolicy) { p.GroupWait = steward.Duration(-time.Second) }},
		{"tiny repeat", func(p *steward.NotificationPolicy) { p.RepeatInterval = steward.Duration(time.Second) }},
		{"escalate without channels", func(p *steward.NotificationPolicy) { p.EscalateChannels = nil }},
		{"unknown action", func(p *steward.NotificationPolicy) { p.Actions = []string{"reboot"} }},
	}
	for _, tc := range tests {
		p := policy(tenantA, "np-1", "p", 0, "ch-1")
		tc.edit(&p)
		wantCode(t, s.CreateNotificationPolicy(c, p), steward.CodeInvalid)
	}
	list, err := s.ListNotificationPolicies(c, tenantA)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("bad policies were stored: %+v", list)
	}
	p := policy(tenantA, "np-1", "p", 0, "ch-1")
	must(t, s.CreateNotificationPolicy(c, p))
	p.Actions = []string{"reboot"}
	wantCode(t, s.UpdateNotificationPolicy(c, p), steward.CodeInvalid)
	got, err := s.GetNotificationPolicy(c, tenantA, "np-1")
	must(t, err)
	if got.Actions[0] != steward.PolicyActionQuarantine {
		t.Fatalf("a refused update changed the policy: %+v", got)
	}
	_, err = s.PutNotificationGroup(c, steward.NotificationGroup{TenantID: tenantA, PolicyID: "np-1"})
	wantCode(t, err, steward.CodeInvalid)
	wantCode(t, s.CreateAlertAction(c, steward.AlertAction{TenantID: tenantA, AlertID: "al", PolicyID: "np-1", Kind: "reboot",
		Notification: json.RawMessage(`{}`), DueAt: t0, CreatedAt: t0}), steward.CodeInvalid)
	_, err = s.DueNotificationGroups(c, t0, 0)
	wantCode(t, err, steward.CodeInvalid)
}

func notifGroup(tenant, policyID, key string) steward.NotificationGroup {
	return steward.NotificationGroup{TenantID: tenant, PolicyID: policyID, GroupKey: key, Labels: map[string]string{"rule": "r"},
		Alerts:  []steward.Notification{{Key: "al-1/firing", TenantID: tenant, AlertID: "al-1", Rule: "r", State: "firing", Severity: "major", StartsAt: stored(t0)}},
		Changed: true, NextFlushAt: at(30 * time.Second), CreatedAt: t0}
}

func alertAction(tenant, policyID, alertID, kind string) steward.AlertAction {
	return steward.AlertAction{TenantID: tenant, AlertID: alertID, PolicyID: policyID, Kind: kind,
		Notification: json.RawMessage(`{"alert_id":"` + alertID + `"}`), DueAt: at(time.Minute), CreatedAt: t0}
}

// testNotificationGroups checks the groups' optimistic versions, the due
// list and isolation, and the alert actions' once-only record.
func testNotificationGroups(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-1", "hook")))
	must(t, s.CreateNotificationPolicy(c, policy(tenantA, "np-1", "p", 0, "ch-1")))
	g, err := s.PutNotificationGroup(c, notifGroup(tenantA, "np-1", `{rule="r"}`))
	must(t, err)
	if g.Version != 1 || len(g.Alerts) != 1 || g.Alerts[0].AlertID != "al-1" || !g.Changed || g.LastSentAt != nil {
		t.Fatalf("created group: %+v", g)
	}
	_, err = s.PutNotificationGroup(c, notifGroup(tenantA, "np-1", `{rule="r"}`))
	wantCode(t, err, steward.CodeConflict)
	_, err = s.PutNotificationGroup(c, notifGroup(tenantA, "np-missing", "k"))
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.PutNotificationGroup(c, notifGroup(tenantB, "np-1", "k"))
	wantCode(t, err, steward.CodeNotFound)

	due, err := s.DueNotificationGroups(c, at(29*time.Second), 10)
	must(t, err)
	if len(due) != 0 {
		t.Fatalf("due before next_flush_at: %+v", due)
	}
	due, err = s.DueNotificationGroups(c, at(30*time.Second), 10)
	must(t, err)
	if len(due) != 1 || due[0].GroupKey != `{rule="r"}` {
		t.Fatalf("due = %+v", due)
	}

	sent := at(30 * time.Second)
	g.Changed, g.LastSentAt, g.NextFlushAt = false, &sent, at(time.Hour)
	g2, err := s.PutNotificationGroup(c, g)
	must(t, err)
	if g2.Version != 2 || g2.Changed || g2.LastSentAt == nil || !g2.LastSentAt.Equal(stored(sent)) {
		t.Fatalf("updated group: %+v", g2)
	}
	_, err = s.PutNotificationGroup(c, g) // stale version
	wantCode(t, err, steward.CodeConflict)
	_, err = s.GetNotificationGroup(c, tenantB, "np-1", `{rule="r"}`)
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteNotificationGroup(c, tenantB, "np-1", `{rule="r"}`, 2), steward.CodeNotFound)
	wantCode(t, s.DeleteNotificationGroup(c, tenantA, "np-1", `{rule="r"}`, 1), steward.CodeConflict)
	must(t, s.DeleteNotificationGroup(c, tenantA, "np-1", `{rule="r"}`, 2))

	// Actions: once per alert, kind and policy; due until finished.
	a := alertAction(tenantA, "np-1", "al-1", steward.AlertActionQuarantine)
	must(t, s.CreateAlertAction(c, a))
	wantCode(t, s.CreateAlertAction(c, a), steward.CodeConflict)
	must(t, s.CreateAlertAction(c, alertAction(tenantA, "np-1", "al-1", steward.AlertActionEscalate)))
	wantCode(t, s.CreateAlertAction(c, alertAction(tenantB, "np-1", "al-1", steward.AlertActionEscalate)), steward.CodeNotFound)
	as, err := s.DueAlertActions(c, at(time.Minute), 10)
	must(t, err)
	if len(as) != 2 || string(as[0].Notification) != `{"alert_id":"al-1"}` {
		t.Fatalf("due actions = %+v", as)
	}
	done := at(2 * time.Minute)
	a.DoneAt, a.Result = &done, "quarantined"
	must(t, s.FinishAlertAction(c, a))
	b := a
	b.TenantID = tenantB
	wantCode(t, s.FinishAlertAction(c, b), steward.CodeNotFound)
	a.DoneAt = nil
	wantCode(t, s.FinishAlertAction(c, a), steward.CodeInvalid)
	as, err = s.DueAlertActions(c, at(time.Hour), 10)
	must(t, err)
	if len(as) != 1 || as[0].Kind != steward.AlertActionEscalate {
		t.Fatalf("due actions after finishing one: %+v", as)
	}
}
