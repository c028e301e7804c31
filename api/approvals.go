package api

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/approvals"
)

// ApprovalService is the two-person rule as the API uses it
// (approvals.Service).
type ApprovalService interface {
	steward.Approvals
	// DecideAs records a decision by an approver whose rights the caller
	// knows.
	DecideAs(ctx context.Context, tenantID, id string, d steward.Decision, a approvals.Approver) (steward.ApprovalRequest, error)
	List(ctx context.Context, tenantID string, f steward.ApprovalFilter) ([]steward.ApprovalRequest, error)
	CreatePolicy(ctx context.Context, p steward.ApprovalPolicy, actor string) (steward.ApprovalPolicy, error)
	GetPolicy(ctx context.Context, tenantID, id string) (steward.ApprovalPolicy, error)
	ListPolicies(ctx context.Context, tenantID string) ([]steward.ApprovalPolicy, error)
	DeletePolicy(ctx context.Context, tenantID, id, actor string) error
}

// ApprovalPolicyRequest is the body of POST /api/v1/approval-policies.
type ApprovalPolicyRequest struct {
	Name               string                      `json:"name"`
	Action             string                      `json:"action"`
	Conditions         []steward.ApprovalCondition `json:"conditions,omitempty"`
	Approvals          int                         `json:"approvals"`
	ApproverPermission steward.Permission          `json:"approver_permission,omitempty"`
	ApproverRole       steward.Role                `json:"approver_role,omitempty"`
	Expiry             steward.Duration            `json:"expiry,omitempty"`
}

// DecisionRequest is the optional body of POST /api/v1/approvals/{id}/approve
// and /reject.
type DecisionRequest struct {
	Comment string `json:"comment,omitempty"`
}

func (s *Server) registerApprovals() {
	s.handle("GET", "/api/v1/approval-policies", steward.PermApprovalsRead, s.listApprovalPolicies)
	s.handle("POST", "/api/v1/approval-policies", steward.PermUsersAdmin, s.createApprovalPolicy)
	s.handle("GET", "/api/v1/approval-policies/{id}", steward.PermApprovalsRead, s.getApprovalPolicy)
	s.handle("DELETE", "/api/v1/approval-policies/{id}", steward.PermUsersAdmin, s.deleteApprovalPolicy)
	s.handle("GET", "/api/v1/approvals", steward.PermApprovalsRead, s.listApprovals)
	s.handle("GET", "/api/v1/approvals/{id}", steward.PermApprovalsRead, s.getApproval)
	s.handle("POST", "/api/v1/approvals/{id}/approve", steward.PermApprovalsDecide, s.decideApproval(true))
	s.handle("POST", "/api/v1/approvals/{id}/reject", steward.PermApprovalsDecide, s.decideApproval(false))
}

// approvalService returns the service, or 503 on a node without one.
func (s *Server) approvalService() (ApprovalService, error) {
	if s.cfg.Approvals == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "approvals are not enabled on this node")
	}
	return s.cfg.Approvals, nil
}

func (s *Server) listApprovalPolicies(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	ps, err := svc.ListPolicies(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ps))
}

func (s *Server) createApprovalPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	var req ApprovalPolicyRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("policy name", req.Name); err != nil {
		return err
	}
	pol, err := svc.CreatePolicy(r.Context(), steward.ApprovalPolicy{TenantID: p.tenantID, Name: req.Name, Action: req.Action,
		Conditions: req.Conditions, Approvals: req.Approvals, ApproverPermission: req.ApproverPermission,
		ApproverRole: req.ApproverRole, Expiry: req.Expiry}, p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/approval-policies/"+pol.ID)
	return writeJSON(w, http.StatusCreated, pol)
}

func (s *Server) getApprovalPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	pol, err := svc.GetPolicy(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pol)
}

func (s *Server) deleteApprovalPolicy(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	if err := svc.DeletePolicy(r.Context(), p.tenantID, r.PathValue("id"), p.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "state", "action", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	rs, err := svc.List(r.Context(), p.tenantID, steward.ApprovalFilter{State: q.Get("state"), Action: q.Get("action"), Limit: limit})
	if err != nil {
		return err
	}
	if rs, err = inScopeOrNone(s, r.Context(), p, rs, func(a steward.ApprovalRequest) string { d, _ := targetDevice(a.Target); return d }); err != nil { // scope.go
		return err
	}
	return writeJSON(w, http.StatusOK, list(rs))
}

func (s *Server) getApproval(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.approvalService()
	if err != nil {
		return err
	}
	a, err := svc.Get(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}

// decideApproval approves or rejects as the caller, with the caller's
// effective permissions; the body (a comment) is optional.
func (s *Server) decideApproval(approve bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		svc, err := s.approvalService()
		if err != nil {
			return err
		}
		var req DecisionRequest
		if r.ContentLength != 0 || r.Header.Get("Content-Type") != "" {
			if err := decodeJSON(w, r, &req); err != nil {
				return err
			}
		}
		a := approvals.Approver{Role: p.role}
		for _, perm := range steward.AllPermissions {
			if p.can(perm) {
				a.Permissions = append(a.Permissions, perm)
			}
		}
		out, err := svc.DecideAs(r.Context(), p.tenantID, r.PathValue("id"),
			steward.Decision{Approver: p.actor(), Approve: approve, Comment: req.Comment}, a)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, out)
	}
}
