package deploy

import (
	"context"
	"fmt"
	"testing"

	"github.com/steward-iot/steward"
)

// TestIntake sends statuses through the bus: good ones are acknowledged
// once stored, in order, in batches; a malformed one is refused and
// writes nothing; one for a finished device is acknowledged and dropped.
func TestIntake(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 50)
	in := NewIntake(IntakeConfig{Store: e.store, Clock: e.clock, MaxBatch: 16}, e.bus)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	d := e.create(steward.DeploymentSpec{})
	e.tick(d.ID)
	e.tick(d.ID)

	publish := func(device, payload string) error {
		acked := make(chan error, 1)
		e.bus.PublishInbound(t.Context(), steward.DeviceMessage{TenantID: tenant, DeviceID: device, Channel: steward.ChannelUpdateStatus,
			Payload: []byte(payload), QoS: 1, Received: e.clock.Now()}, func(err error) { acked <- err })
		return <-acked
	}
	// Many devices at once: every message acknowledged with no error.
	errs := make(chan error, 50)
	for i := range 50 {
		go func() {
			errs <- publish(dev(i), fmt.Sprintf(`{"deployment_id": %q, "attempt": 1, "state": "downloading", "progress": 0.5}`, d.ID))
		}()
	}
	for range 50 {
		must(t, <-errs)
	}
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateDownloading: 50})
	must(t, publish(dev(0), fmt.Sprintf(`{"deployment_id": %q, "state": "succeeded", "version": "1.5.0", "previous_version": "1.4.0"}`, d.ID)))
	// After a final state: acknowledged, nothing changes.
	must(t, publish(dev(0), fmt.Sprintf(`{"deployment_id": %q, "state": "failed", "reason": "late"}`, d.ID)))
	r, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0))
	must(t, err)
	if r.State != steward.UpdateSucceeded || r.FromVersion != "1.4.0" {
		t.Fatalf("row %+v", r)
	}
	// Malformed: refused, nothing written.
	err = publish(dev(1), fmt.Sprintf(`{"deployment_id": %q, "state": "succeeded", "progress": -1}`, d.ID))
	if steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("malformed status: %v", err)
	}
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(1)); r.State != steward.UpdateDownloading {
		t.Fatalf("a refused status wrote %+v", r)
	}
	// Another tenant's device cannot move this deployment's devices.
	acked := make(chan error, 1)
	e.bus.PublishInbound(t.Context(), steward.DeviceMessage{TenantID: "other", DeviceID: dev(2), Channel: steward.ChannelUpdateStatus,
		Payload: fmt.Appendf(nil, `{"deployment_id": %q, "state": "succeeded"}`, d.ID), QoS: 1, Received: e.clock.Now()}, func(err error) { acked <- err })
	must(t, <-acked)
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(2)); r.State != steward.UpdateDownloading {
		t.Fatalf("another tenant moved %+v", r)
	}
	cancel()
	must(t, <-done)
}
