package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

// PolicyRequest is the body of POST /api/v1/notification-policies and
// PUT /api/v1/notification-policies/{id}: the policy's fields (see
// steward.NotificationPolicy); zero durations and an empty group_by take
// the defaults when the policy is used.
type PolicyRequest struct {
	Name             string            `json:"name"`
	Order            int               `json:"order"`
	Matchers         []steward.Matcher `json:"matchers,omitempty"`
	Channels         []string          `json:"channels,omitempty"`
	GroupBy          []string          `json:"group_by,omitempty"`
	GroupWait        steward.Duration  `json:"group_wait,omitempty"`
	GroupInterval    steward.Duration  `json:"group_interval,omitempty"`
	RepeatInterval   steward.Duration  `json:"repeat_interval,omitempty"`
	Continue         bool              `json:"continue,omitempty"`
	EscalateAfter    steward.Duration  `json:"escalate_after,omitempty"`
	EscalateChannels []string          `json:"escalate_channels,omitempty"`
	Actions          []string          `json:"actions,omitempty"`
}

func (req PolicyRequest) policy(id, tenantID string) steward.NotificationPolicy {
	return steward.NotificationPolicy{ID: id, TenantID: tenantID, Name: req.Name, Order: req.Order, Matchers: req.Matchers,
		Channels: req.Channels, GroupBy: req.GroupBy, GroupWait: req.GroupWait, GroupInterval: req.GroupInterval,
		RepeatInterval: req.RepeatInterval, Continue: req.Continue, EscalateAfter: req.EscalateAfter,
		EscalateChannels: req.EscalateChannels, Actions: req.Actions}
}

// policyView fills the nil lists so that the JSON always has arrays.
func policyView(p steward.NotificationPolicy) steward.NotificationPolicy {
	for _, l := range []*[]string{&p.Channels, &p.GroupBy, &p.EscalateChannels, &p.Actions} {
		if *l == nil {
			*l = []string{}
		}
	}
	if p.Matchers == nil {
		p.Matchers = []steward.Matcher{}
	}
	return p
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	ps, err := s.cfg.Store.ListNotificationPolicies(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	out := make([]steward.NotificationPolicy, 0, len(ps))
	for _, x := range ps {
		out = append(out, policyView(x))
	}
	return writeJSON(w, http.StatusOK, list(out))
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	var req PolicyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	x := req.policy(newID("np-"), p.tenantID)
	x.CreatedAt = s.clock.Now().UTC()
	x.UpdatedAt = x.CreatedAt
	if err := s.cfg.Store.CreateNotificationPolicy(r.Context(), x); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetNotificationPolicy(r.Context(), p.tenantID, x.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/notification-policies/"+x.ID)
	return writeJSON(w, http.StatusCreated, policyView(stored))
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	x, err := s.cfg.Store.GetNotificationPolicy(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyView(x))
}

func (s *Server) updatePolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	var req PolicyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	old, err := s.cfg.Store.GetNotificationPolicy(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	x := req.policy(old.ID, p.tenantID)
	x.CreatedAt, x.UpdatedAt = old.CreatedAt, s.clock.Now().UTC()
	if err := s.cfg.Store.UpdateNotificationPolicy(r.Context(), x); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetNotificationPolicy(r.Context(), p.tenantID, x.ID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, policyView(stored))
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.cfg.Store.DeleteNotificationPolicy(r.Context(), p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
