package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestAlertRulesAndAlerts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/alert-rules"
	req := AlertRuleRequest{Name: "hot", Kind: steward.RuleThreshold, Severity: steward.AlertMajor, Scope: "model = gw-100",
		For: steward.Duration(5 * time.Minute), Labels: map[string]string{"team": "ops"},
		Threshold: &steward.ThresholdCondition{Metric: "temperature", Aggregation: "avg", Window: steward.Duration(10 * time.Minute), Operator: ">", Value: 80}}
	var rule steward.AlertRule
	e.must(t, http.StatusCreated, "POST", base, e.system, req).decode(t, &rule)
	if rule.ID == "" || rule.TenantID != steward.DefaultTenant || !rule.Enabled || rule.For.D() != 5*time.Minute || rule.CreatedAt.IsZero() {
		t.Fatalf("POST answered %+v", rule)
	}
	e.must(t, http.StatusConflict, "POST", base, e.system, req).problem(t)

	// Bad rules are refused and nothing is written.
	for name, mut := range map[string]func(r *AlertRuleRequest){
		"bad severity": func(r *AlertRuleRequest) { r.Severity = "urgent" },
		"bad scope":    func(r *AlertRuleRequest) { r.Scope = "model = = x" },
		"no condition": func(r *AlertRuleRequest) { r.Threshold = nil },
		"hysteresis": func(r *AlertRuleRequest) {
			v := 90.0
			r.Threshold = &steward.ThresholdCondition{Metric: "cpu", Aggregation: "avg", Window: 60e9, Operator: ">", Value: 80, ResolveValue: &v}
		},
	} {
		bad := req
		bad.Name = "bad " + name
		mut(&bad)
		if p := e.must(t, http.StatusBadRequest, "POST", base, e.system, bad).problem(t); p.Detail == "" {
			t.Errorf("%s: no detail", name)
		}
	}
	e.must(t, http.StatusBadRequest, "POST", base, e.system, map[string]any{"name": "x", "kind": "threshold", "severity": "info", "for": "soon"}).problem(t)
	var rules List[steward.AlertRule]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &rules)
	if len(rules.Items) != 1 {
		t.Fatalf("bad rules were written: %+v", rules.Items)
	}

	disabled := false
	req.Enabled, req.Severity = &disabled, steward.AlertCritical
	e.must(t, http.StatusOK, "PUT", base+"/"+rule.ID, e.system, req).decode(t, &rule)
	if rule.Enabled || rule.Severity != steward.AlertCritical {
		t.Fatalf("PUT answered %+v", rule)
	}

	// An alert of the rule, as the evaluator would write it.
	now := time.Now().UTC()
	alert, err := e.api.cfg.Store.PutAlert(t.Context(), steward.Alert{ID: "al-1", TenantID: steward.DefaultTenant, RuleID: rule.ID,
		DeviceID: "d-1", State: steward.AlertFiring, Severity: steward.AlertCritical, Summary: "hot", Value: 85,
		StartedAt: now, FiredAt: &now, LastEvaluatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	var alerts List[steward.Alert]
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts?state=firing&severity=critical&device=d-1", e.system, nil).decode(t, &alerts)
	if len(alerts.Items) != 1 || alerts.Items[0].ID != alert.ID {
		t.Fatalf("alerts %+v", alerts.Items)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts?state=resolved", e.system, nil).decode(t, &alerts)
	if len(alerts.Items) != 0 {
		t.Fatalf("resolved alerts %+v", alerts.Items)
	}
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/alerts?state=open", e.system, nil).problem(t)
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/alerts?colour=red", e.system, nil).problem(t)
	e.must(t, http.StatusOK, "POST", "/api/v1/alerts/al-1/ack", e.system, nil).decode(t, &alert)
	if alert.AcknowledgedBy == "" || alert.AcknowledgedAt == nil {
		t.Fatalf("ack answered %+v", alert)
	}
	e.must(t, http.StatusOK, "POST", "/api/v1/alerts/al-1/assign", e.system, AlertAssignRequest{Assignee: "bob"}).decode(t, &alert)
	if alert.Assignee != "bob" {
		t.Fatalf("assign answered %+v", alert)
	}

	// Another tenant sees none of it and changes nothing.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &rules)
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts", other, nil).decode(t, &alerts)
	if len(rules.Items) != 0 || len(alerts.Items) != 0 {
		t.Fatalf("other tenant sees %+v %+v", rules.Items, alerts.Items)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/"+rule.ID, other, nil).problem(t)
	e.must(t, http.StatusNotFound, "PUT", base+"/"+rule.ID, other, req).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", base+"/"+rule.ID, other, nil).problem(t)
	e.must(t, http.StatusNotFound, "GET", "/api/v1/alerts/al-1", other, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", "/api/v1/alerts/al-1/ack", other, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", "/api/v1/alerts/al-1/assign", other, AlertAssignRequest{Assignee: "mallory"}).problem(t)
	e.must(t, http.StatusOK, "GET", "/api/v1/alerts/al-1", e.system, nil).decode(t, &alert)
	if alert.Assignee != "bob" {
		t.Fatalf("other tenant changed %+v", alert)
	}

	e.must(t, http.StatusNoContent, "DELETE", base+"/"+rule.ID, e.system, nil)
	e.must(t, http.StatusNotFound, "GET", "/api/v1/alerts/al-1", e.system, nil).problem(t)
}
