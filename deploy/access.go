package deploy

import (
	"context"
	"fmt"

	"github.com/steward-iot/steward"
)

// RemoveDeviceAccess implements steward.DeviceAccessRemover: a device that
// leaves the fleet is skipped ("decommissioned") in every deployment not
// yet finished with it, and its retained job is cleared, so that nothing
// is sent to it again and no deployment waits for it.
func (e *Engine) RemoveDeviceAccess(ctx context.Context, tenantID, deviceID string) (string, error) {
	now := e.clock.Now()
	unfinished := []steward.UpdateState{steward.UpdatePending, steward.UpdateNotified, steward.UpdateDownloading, steward.UpdateDownloaded,
		steward.UpdateInstalling, steward.UpdateRebooting, steward.UpdateVerifying}
	// Asked of the store in one query, not by listing the deployments of
	// each state: a page of them would miss the device in any beyond it.
	rows, err := e.cfg.Store.ListDeviceDeployments(ctx, tenantID, deviceID, []steward.DeploymentState{steward.DeploymentDraft,
		steward.DeploymentAwaitingApproval, steward.DeploymentScheduled, steward.DeploymentRunning, steward.DeploymentPaused})
	if err != nil {
		return "", fmt.Errorf("list the deployments of device %s: %w", deviceID, err)
	}
	var updates []steward.DeploymentDeviceUpdate
	for _, r := range rows {
		if !r.State.Final() {
			updates = append(updates, steward.DeploymentDeviceUpdate{TenantID: tenantID, DeploymentID: r.DeploymentID,
				DeviceID: deviceID, From: unfinished, State: steward.UpdateSkipped, Reason: "decommissioned", At: now})
		}
	}
	stopped := 0
	if len(updates) > 0 {
		ok, err := e.cfg.Store.UpdateDeploymentDevices(ctx, updates)
		if err != nil {
			return "", fmt.Errorf("skip device %s in its unfinished deployments: %w", deviceID, err)
		}
		for _, o := range ok {
			if o {
				stopped++
			}
		}
	}
	// An empty retained message clears the device's job (docs/protocol.md).
	if err := e.cfg.Bus.Send(ctx, steward.OutboundMessage{TenantID: tenantID, DeviceID: deviceID, Channel: steward.ChannelUpdateJob,
		Payload: []byte{}, QoS: 1, Retain: true}); err != nil {
		return "", fmt.Errorf("clear the retained update job: %w", err)
	}
	return fmt.Sprintf("skipped in %d unfinished deployment(s); retained update job cleared", stopped), nil
}

var _ steward.DeviceAccessRemover = (*Engine)(nil)
