package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

// AlertRuleRequest is the body of POST /api/v1/alert-rules and PUT
// /api/v1/alert-rules/{id}: the parts of a rule an operator chooses (the
// server sets ID, tenant and times). Enabled defaults to true; exactly the
// condition of Kind is set.
type AlertRuleRequest struct {
	Name      string                      `json:"name"`
	Kind      steward.AlertRuleKind       `json:"kind"`
	Severity  steward.AlertSeverity       `json:"severity"`
	Labels    map[string]string           `json:"labels,omitempty"`
	Scope     string                      `json:"scope,omitempty"`
	For       steward.Duration            `json:"for,omitempty"`
	Enabled   *bool                       `json:"enabled,omitempty"`
	Threshold *steward.ThresholdCondition `json:"threshold,omitempty"`
	Absence   *steward.AbsenceCondition   `json:"absence,omitempty"`
	Event     *steward.EventCondition     `json:"event,omitempty"`
	Rate      *steward.RateCondition      `json:"rate,omitempty"`
	Share     *steward.ShareCondition     `json:"share,omitempty"`
	Site      *steward.SiteCondition      `json:"site,omitempty"`
}

// rule builds the rule the request describes.
func (req *AlertRuleRequest) rule(tenantID, id string) steward.AlertRule {
	enabled := req.Enabled == nil || *req.Enabled
	return steward.AlertRule{ID: id, TenantID: tenantID, Name: req.Name, Kind: req.Kind, Severity: req.Severity,
		Labels: req.Labels, Scope: req.Scope, For: req.For, Enabled: enabled,
		Threshold: req.Threshold, Absence: req.Absence, Event: req.Event, Rate: req.Rate, Share: req.Share, Site: req.Site}
}

// AlertAssignRequest is the body of POST /api/v1/alerts/{id}/assign; an
// empty assignee unassigns.
type AlertAssignRequest struct {
	Assignee string `json:"assignee"`
}

func (s *Server) listAlertRules(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	rules, err := s.cfg.Store.ListAlertRules(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(rules))
}

func (s *Server) createAlertRule(w http.ResponseWriter, r *http.Request, p principal) error {
	var req AlertRuleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	rule := req.rule(p.tenantID, newID("ar-"))
	rule.CreatedAt = s.clock.Now().UTC()
	rule.UpdatedAt = rule.CreatedAt
	if err := s.cfg.Store.CreateAlertRule(r.Context(), rule); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetAlertRule(r.Context(), p.tenantID, rule.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, stored)
}

func (s *Server) getAlertRule(w http.ResponseWriter, r *http.Request, p principal) error {
	rule, err := s.cfg.Store.GetAlertRule(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rule)
}

func (s *Server) putAlertRule(w http.ResponseWriter, r *http.Request, p principal) error {
	var req AlertRuleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	old, err := s.cfg.Store.GetAlertRule(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	rule := req.rule(p.tenantID, old.ID)
	rule.CreatedAt, rule.UpdatedAt = old.CreatedAt, s.clock.Now().UTC()
	if err := s.cfg.Store.UpdateAlertRule(r.Context(), rule); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetAlertRule(r.Context(), p.tenantID, rule.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, stored)
}

func (s *Server) deleteAlertRule(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.cfg.Store.DeleteAlertRule(r.Context(), p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "state", "severity", "device", "rule", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	f := steward.AlertFilter{State: steward.AlertState(q.Get("state")), Severity: steward.AlertSeverity(q.Get("severity")),
		DeviceID: q.Get("device"), RuleID: q.Get("rule"), Limit: limit}
	if f.State != "" && !f.State.Valid() {
		return invalidf("state %q: want pending, firing or resolved", f.State)
	}
	if f.Severity != "" && !f.Severity.Valid() {
		return invalidf("severity %q: want one of critical, major, minor, warning, info", f.Severity)
	}
	alerts, err := s.cfg.Store.ListAlerts(r.Context(), p.tenantID, f)
	if err != nil {
		return err
	}
	if alerts, err = inScope(s, r.Context(), p, alerts, func(a steward.Alert) string { return a.DeviceID }); err != nil { // users.go
		return err
	}
	return writeJSON(w, http.StatusOK, list(alerts))
}

func (s *Server) getAlert(w http.ResponseWriter, r *http.Request, p principal) error {
	a, err := s.cfg.Store.GetAlert(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}

func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request, p principal) error {
	a, err := s.cfg.Store.AcknowledgeAlert(r.Context(), p.tenantID, r.PathValue("id"), p.actor(), s.clock.Now().UTC())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}

func (s *Server) assignAlert(w http.ResponseWriter, r *http.Request, p principal) error {
	var req AlertAssignRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	a, err := s.cfg.Store.AssignAlert(r.Context(), p.tenantID, r.PathValue("id"), req.Assignee)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}
