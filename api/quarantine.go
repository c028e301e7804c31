package api

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
)

// QuarantinePolicyService keeps the tenants' quarantine policies
// (quarantine.Service implements it).
type QuarantinePolicyService interface {
	Policy(ctx context.Context, tenantID string) (steward.QuarantinePolicy, error)
	SetPolicy(ctx context.Context, p steward.QuarantinePolicy, actor string) (steward.QuarantinePolicy, error)
}

// QuarantinePolicyRequest is the body of PUT /api/v1/quarantine-policy: the
// whole policy, where a field left out takes its default (of
// steward.DefaultQuarantinePolicy, field by field within rules).
type QuarantinePolicyRequest struct {
	MayPublish     []steward.Channel       `json:"may_publish"`
	MaySubscribe   []steward.Channel       `json:"may_subscribe"`
	Rules          steward.QuarantineRules `json:"rules"`
	WebhookChannel string                  `json:"webhook_channel"`
}

func (s *Server) registerQuarantine() {
	s.handle("GET", "/api/v1/quarantine-policy", steward.PermDevicesRead, s.getQuarantinePolicy)
	s.handle("PUT", "/api/v1/quarantine-policy", steward.PermQuarantinePolicy, s.putQuarantinePolicy)
}

func (s *Server) quarantinePolicies() (QuarantinePolicyService, error) {
	if s.cfg.Quarantine == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "quarantine policies are not enabled on this server")
	}
	return s.cfg.Quarantine, nil
}

func (s *Server) getQuarantinePolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.quarantinePolicies()
	if err != nil {
		return err
	}
	pol, err := svc.Policy(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pol)
}

func (s *Server) putQuarantinePolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.quarantinePolicies()
	if err != nil {
		return err
	}
	def := steward.DefaultQuarantinePolicy(p.tenantID)
	req := QuarantinePolicyRequest{MayPublish: def.MayPublish, MaySubscribe: def.MaySubscribe, Rules: def.Rules}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	pol, err := svc.SetPolicy(r.Context(), steward.QuarantinePolicy{TenantID: p.tenantID, MayPublish: req.MayPublish, MaySubscribe: req.MaySubscribe,
		Rules: req.Rules, WebhookChannel: req.WebhookChannel}, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pol)
}
