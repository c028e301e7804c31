package provisioning

import (
	"context"
	"fmt"

	"github.com/steward-iot/steward"
)

// tenantActive refuses, with a security event, a device of a suspended
// tenant at connect and at enrollment: the tenant's devices are cut off
// until it is resumed, and the refusals show who kept trying.
func (s *Service) tenantActive(ctx context.Context, tenantID, deviceID, remote string) error {
	t, err := s.cfg.Store.GetTenant(ctx, tenantID)
	if err != nil {
		return fmt.Errorf("read tenant %s: %w", tenantID, err)
	}
	if t.Status != steward.TenantSuspended {
		return nil
	}
	s.security(ctx, steward.SecurityEvent{TenantID: tenantID, DeviceID: deviceID, Kind: steward.SecTenantSuspended, Remote: remote,
		Detail: "tenant " + tenantID + " is suspended"})
	return steward.Errorf(steward.CodePermissionDenied, "tenant %s is suspended", tenantID)
}
