package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/steward-iot/steward"
)

// alertRuleBody is the request body of a rule: the fields an operator
// chooses (the server sets ID, tenant and times).
type alertRuleBody struct {
	Name      string                      `json:"name"`
	Kind      steward.AlertRuleKind       `json:"kind"`
	Severity  steward.AlertSeverity       `json:"severity"`
	Labels    map[string]string           `json:"labels,omitempty"`
	Scope     string                      `json:"scope,omitempty"`
	For       steward.Duration            `json:"for"`
	Enabled   bool                        `json:"enabled"`
	Threshold *steward.ThresholdCondition `json:"threshold,omitempty"`
	Absence   *steward.AbsenceCondition   `json:"absence,omitempty"`
	Event     *steward.EventCondition     `json:"event,omitempty"`
	Rate      *steward.RateCondition      `json:"rate,omitempty"`
	Share     *steward.ShareCondition     `json:"share,omitempty"`
	Site      *steward.SiteCondition      `json:"site,omitempty"`
}

func ruleBody(r steward.AlertRule) alertRuleBody {
	return alertRuleBody{Name: r.Name, Kind: r.Kind, Severity: r.Severity, Labels: r.Labels, Scope: r.Scope, For: r.For,
		Enabled: r.Enabled, Threshold: r.Threshold, Absence: r.Absence, Event: r.Event, Rate: r.Rate,
		Share: r.Share, Site: r.Site}
}

// CreateAlertRule creates an alert rule from r's operator-chosen fields
// (name, kind, severity, labels, scope, for, enabled, condition).
func (c *Client) CreateAlertRule(ctx context.Context, r steward.AlertRule) (steward.AlertRule, error) {
	var out steward.AlertRule
	err := c.do(ctx, http.MethodPost, "/api/v1/alert-rules", nil, ruleBody(r), &out)
	return out, err
}

// UpdateAlertRule replaces the rule id with r's operator-chosen fields.
func (c *Client) UpdateAlertRule(ctx context.Context, id string, r steward.AlertRule) (steward.AlertRule, error) {
	var out steward.AlertRule
	err := c.do(ctx, http.MethodPut, "/api/v1/alert-rules/"+seg(id), nil, ruleBody(r), &out)
	return out, err
}

// GetAlertRule returns an alert rule.
func (c *Client) GetAlertRule(ctx context.Context, id string) (steward.AlertRule, error) {
	var out steward.AlertRule
	err := c.do(ctx, http.MethodGet, "/api/v1/alert-rules/"+seg(id), nil, nil, &out)
	return out, err
}

// ListAlertRules returns the tenant's alert rules, by name.
func (c *Client) ListAlertRules(ctx context.Context) ([]steward.AlertRule, error) {
	var out list[steward.AlertRule]
	err := c.do(ctx, http.MethodGet, "/api/v1/alert-rules", nil, nil, &out)
	return out.Items, err
}

// DeleteAlertRule deletes an alert rule and its alerts.
func (c *Client) DeleteAlertRule(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/alert-rules/"+seg(id), nil, nil, nil)
}

// ListAlerts returns the tenant's alerts matching f (Open is not sent:
// filter by State), newest first.
func (c *Client) ListAlerts(ctx context.Context, f steward.AlertFilter) ([]steward.Alert, error) {
	q := url.Values{}
	for k, v := range map[string]string{"state": string(f.State), "severity": string(f.Severity), "device": f.DeviceID, "rule": f.RuleID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.Alert]
	err := c.do(ctx, http.MethodGet, "/api/v1/alerts", q, nil, &out)
	return out.Items, err
}

// GetAlert returns an alert.
func (c *Client) GetAlert(ctx context.Context, id string) (steward.Alert, error) {
	var out steward.Alert
	err := c.do(ctx, http.MethodGet, "/api/v1/alerts/"+seg(id), nil, nil, &out)
	return out, err
}

// AcknowledgeAlert acknowledges an alert in the name of the client's token.
func (c *Client) AcknowledgeAlert(ctx context.Context, id string) (steward.Alert, error) {
	var out steward.Alert
	err := c.do(ctx, http.MethodPost, "/api/v1/alerts/"+seg(id)+"/ack", nil, nil, &out)
	return out, err
}

// AssignAlert assigns an alert (an empty assignee unassigns).
func (c *Client) AssignAlert(ctx context.Context, id, assignee string) (steward.Alert, error) {
	req := struct {
		Assignee string `json:"assignee"`
	}{assignee}
	var out steward.Alert
	err := c.do(ctx, http.MethodPost, "/api/v1/alerts/"+seg(id)+"/assign", nil, req, &out)
	return out, err
}
