package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/twin"
)

// TestConfigDeployment rolls a configuration version out through the real
// device twins: each device's desired state gets the version, the device's
// report decides succeeded or failed, a device whose configuration the
// version breaks is skipped as incompatible; rollback goes back to the
// version each device was last in sync with.
func TestConfigDeployment(t *testing.T) {
	t.Parallel()
	var tw *twin.Service
	e := newEnv(t, 0, func(c *Config) { c.Configs = tw })
	tw = twin.New(twin.Config{Store: e.store, Bus: e.bus, Clock: e.clock})
	e.engine.cfg.Configs = tw
	ctx := context.Background()
	for i := range 4 {
		e.addDevice(dev(i), "berlin", map[string]string{"ring": "b"})
	}
	// A device whose own override the new version's schema refuses.
	e.addDevice("d-odd", "berlin", map[string]string{"ring": "b"})
	tm, err := tw.CreateTemplate(ctx, steward.ConfigTemplate{TenantID: tenant, Name: "base", Layer: steward.LayerBase}, "user:alice")
	must(t, err)
	v1, err := tw.CreateVersion(ctx, steward.ConfigVersion{TenantID: tenant, TemplateID: tm.ID, Document: json.RawMessage(`{"interval": 30}`), Message: "first"}, "user:alice")
	must(t, err)
	report := func(device string, version int64, state string, errs string) {
		t.Helper()
		p := fmt.Sprintf(`{"version": %d, "state": %s}`, version, state)
		if errs != "" {
			p = fmt.Sprintf(`{"version": %d, "state": %s, "errors": %s}`, version, state, errs)
		}
		acked := make(chan error, 1)
		e.bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: tenant, DeviceID: device, Channel: steward.ChannelTwinReported,
			Payload: []byte(p), QoS: 1, Received: e.clock.Now()}, func(err error) { acked <- err })
		must(t, <-acked)
	}
	// Every device in sync with v1 first.
	for _, id := range []string{dev(0), dev(1), dev(2), dev(3), "d-odd"} {
		twn, err := tw.ApplyConfigVersion(ctx, tenant, id, v1.ID, "user:alice")
		must(t, err)
		report(id, twn.DesiredVersion, `{"interval": 30}`, "")
	}
	_, err = tw.UpdateTwin(ctx, tenant, "d-odd", json.RawMessage(`{"interval": "fast"}`), nil, "user:alice")
	must(t, err)
	v2, err := tw.CreateVersion(ctx, steward.ConfigVersion{TenantID: tenant, TemplateID: tm.ID, Document: json.RawMessage(`{"interval": 60}`),
		Schema: json.RawMessage(`{"type": "object", "properties": {"interval": {"type": "integer"}}}`), Message: "slower"}, "user:alice")
	must(t, err)

	d := e.create(steward.DeploymentSpec{Target: steward.DeploymentTarget{Kind: steward.KindConfig, Name: tm.ID, Version: v2.ID}})
	e.tick(d.ID)
	d = e.tick(d.ID)
	if r, _ := e.store.GetDeploymentDevice(ctx, tenant, d.ID, "d-odd"); r.State != steward.UpdateSkipped {
		t.Fatalf("d-odd %+v", r)
	}
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateNotified: 4})
	if len(e.jobsOf(dev(0))) != 0 {
		t.Fatal("a configuration deployment sent an update job")
	}
	// Devices apply it (one with errors); nothing moves before they report.
	d = e.tick(d.ID)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateNotified: 4})
	for i := range 4 {
		twn, err := e.store.GetTwin(ctx, tenant, dev(i))
		must(t, err)
		if i == 2 {
			report(dev(i), twn.DesiredVersion, `{"interval": 30}`, `{"interval": "out of range"}`)
			continue
		}
		report(dev(i), twn.DesiredVersion, `{"interval": 60}`, "")
	}
	d = e.tick(d.ID)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSucceeded: 3, steward.UpdateFailed: 1, steward.UpdateSkipped: 1})
	r2, _ := e.store.GetDeploymentDevice(ctx, tenant, d.ID, dev(2))
	if r2.Reason == "" {
		t.Fatalf("failed device %+v", r2)
	}

	// Rollback: the 3 that took v2 go back to v1 through their twins.
	rb, err := e.engine.Rollback(ctx, tenant, d.ID, "user:bob")
	must(t, err)
	e.tick(rb.ID)
	e.tick(rb.ID)
	for _, id := range []string{dev(0), dev(1), dev(3)} {
		r, err := e.store.GetDeploymentDevice(ctx, tenant, rb.ID, id)
		must(t, err)
		if r.ToVersion != v1.ID || r.State != steward.UpdateNotified {
			t.Fatalf("rollback row %+v", r)
		}
		st, _, err := tw.ConfigStatus(ctx, tenant, id, v1.ID)
		must(t, err)
		if st != steward.ConfigPending {
			t.Fatalf("%s: v1 is %s after the rollback applied it", id, st)
		}
	}
}
