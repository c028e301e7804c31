package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestAlerts(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()

	in := steward.AlertRule{Name: "crash", Kind: steward.RuleEvent, Severity: steward.AlertCritical, Enabled: true,
		Event: &steward.EventCondition{Type: "crash", MinSeverity: steward.SeverityError, Window: steward.Duration(15 * time.Minute)}}
	r, err := c.CreateAlertRule(ctx, in)
	if err != nil || r.ID == "" || r.Event == nil || r.Event.MinSeverity != steward.SeverityError {
		t.Fatalf("create: %+v %v", r, err)
	}
	if _, err := c.CreateAlertRule(ctx, in); steward.ErrorCode(err) != steward.CodeConflict {
		t.Fatalf("create again: %v, want conflict", err)
	}
	in.Enabled = false
	if r, err = c.UpdateAlertRule(ctx, r.ID, in); err != nil || r.Enabled {
		t.Fatalf("update: %+v %v", r, err)
	}
	if rules, err := c.ListAlertRules(ctx); err != nil || len(rules) != 1 {
		t.Fatalf("list: %+v %v", rules, err)
	}

	now := time.Now().UTC()
	if _, err := env.Store.PutAlert(ctx, steward.Alert{ID: "al-1", TenantID: steward.DefaultTenant, RuleID: r.ID, DeviceID: "d-1",
		State: steward.AlertPending, Severity: steward.AlertCritical, StartedAt: now, LastEvaluatedAt: now}); err != nil {
		t.Fatal(err)
	}
	as, err := c.ListAlerts(ctx, steward.AlertFilter{State: steward.AlertPending, Severity: steward.AlertCritical, DeviceID: "d-1", RuleID: r.ID, Limit: 10})
	if err != nil || len(as) != 1 {
		t.Fatalf("list alerts: %+v %v", as, err)
	}
	if a, err := c.AcknowledgeAlert(ctx, "al-1"); err != nil || a.AcknowledgedBy == "" {
		t.Fatalf("ack: %+v %v", a, err)
	}
	if a, err := c.AssignAlert(ctx, "al-1", "bob"); err != nil || a.Assignee != "bob" {
		t.Fatalf("assign: %+v %v", a, err)
	}
	if a, err := c.GetAlert(ctx, "al-1"); err != nil || a.Assignee != "bob" {
		t.Fatalf("get: %+v %v", a, err)
	}
	if _, err := c.ListAlerts(ctx, steward.AlertFilter{State: "open"}); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("bad state: %v", err)
	}
	if err := c.DeleteAlertRule(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetAlert(ctx, "al-1"); !steward.IsNotFound(err) {
		t.Fatalf("after deleting the rule: %v", err)
	}
}
