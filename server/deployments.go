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
