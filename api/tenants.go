package api

import (
	"context"
	"fmt"
	"net/http"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/tenants"
)

// TenantService suspends, resumes and deletes tenants (tenants.Service).
type TenantService interface {
	Suspend(ctx context.Context, id, reason, actor, actorTenant string) (steward.Tenant, error)
	Resume(ctx context.Context, id, actor, actorTenant string) (steward.Tenant, error)
	Delete(ctx context.Context, id, approvalID, reason, actor, actorTenant string) (tenants.DeleteResult, error)
}

// TenantStatusRequest is the optional body of POST
// /api/v1/tenants/{id}/suspend.
type TenantStatusRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) registerTenants() {
	s.handle("GET", "/api/v1/tenants/{id}", steward.PermTenantsAdmin, s.getTenant)
	s.handle("POST", "/api/v1/tenants/{id}/suspend", steward.PermTenantsAdmin, s.suspendTenant)
	s.handle("POST", "/api/v1/tenants/{id}/resume", steward.PermTenantsAdmin, s.resumeTenant)
	s.handle("DELETE", "/api/v1/tenants/{id}", steward.PermTenantsAdmin, s.deleteTenant)
}

// checkTenantActive refuses every caller of a suspended tenant, whatever
// its token or session, with a message that says why. It reads the tenant
// through Config.TenantStatus when set (a cache), the store otherwise.
func (s *Server) checkTenantActive(ctx context.Context, p principal) error {
	var tenants interface {
		GetTenant(ctx context.Context, id string) (steward.Tenant, error)
	} = s.cfg.Store
	if s.cfg.TenantStatus != nil {
		tenants = s.cfg.TenantStatus
	}
	t, err := tenants.GetTenant(ctx, p.tenantID)
	if steward.IsNotFound(err) {
		return steward.Errorf(steward.CodeUnauthenticated, "the tenant of this token no longer exists")
	}
	if err != nil {
		return fmt.Errorf("read the caller's tenant: %w", err)
	}
	if t.Status == steward.TenantSuspended {
		return steward.Errorf(steward.CodePermissionDenied, "tenant %s is suspended: its tokens and sessions are refused until it is resumed", t.ID)
	}
	return nil
}

func (s *Server) tenantService() (TenantService, error) {
	if s.cfg.Tenants == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "tenant administration is not enabled on this node")
	}
	return s.cfg.Tenants, nil
}

func (s *Server) getTenant(w http.ResponseWriter, r *http.Request, _ principal) error {
	t, err := s.cfg.Store.GetTenant(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

// optionalBody decodes a JSON body when the request has one.
func optionalBody(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 && r.Header.Get("Content-Type") == "" {
		return nil
	}
	return decodeJSON(w, r, v)
}

func (s *Server) suspendTenant(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.tenantService()
	if err != nil {
		return err
	}
	var req TenantStatusRequest
	if err := optionalBody(w, r, &req); err != nil {
		return err
	}
	if len(req.Reason) > 1024 {
		return invalidf("a reason is at most 1024 bytes")
	}
	t, err := svc.Suspend(r.Context(), r.PathValue("id"), req.Reason, p.actor(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) resumeTenant(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.tenantService()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	t, err := svc.Resume(r.Context(), r.PathValue("id"), p.actor(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

// deleteTenant deletes a tenant: 204 when done, or 202 with the approval
// request to approve first (then DELETE again with ?approval=ID).
func (s *Server) deleteTenant(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.tenantService()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "approval", "reason")
	if err != nil {
		return err
	}
	if len(q.Get("reason")) > 1024 {
		return invalidf("a reason is at most 1024 bytes")
	}
	res, err := svc.Delete(r.Context(), r.PathValue("id"), q.Get("approval"), q.Get("reason"), p.actor(), p.tenantID)
	if err != nil {
		return err
	}
	if !res.Deleted {
		w.Header().Set("Location", "/api/v1/approvals/"+res.Approval.ID)
		return writeJSON(w, http.StatusAccepted, res.Approval)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
