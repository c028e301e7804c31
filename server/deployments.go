package server

import (
	"context"

	"github.com/steward-iot/steward"
)

// approvalDecided tells the deployment engine of an approval request that
// was decided, wherever it was (the deployments API or the approvals API),
// so that an approved deployment starts and a rejected one is aborted.
func (s *Server) approvalDecided(ctx context.Context, r steward.ApprovalRequest) {
	if s.Deployments == nil {
		return
	}
	if err := s.Deployments.ApprovalDecided(ctx, r); err != nil {
		s.cfg.Logger.Warn("deployment approval not applied", "tenant", r.TenantID, "request", r.ID, "target", r.Target, "err", err)
	}
}

// deploymentAuditor is the audit log as the deployment engine takes it:
// nil (no records) rather than a nil *audit.Log.
func (s *Server) deploymentAuditor() steward.Auditor {
	if s.Audit == nil {
		return nil
	}
	return s.Audit
}
