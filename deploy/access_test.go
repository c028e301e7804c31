package deploy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// TestRemoveDeviceAccess: a decommissioned device is skipped in the
// deployments still running for it, its retained job is cleared, and the
// other devices and finished rows are left alone.
func TestRemoveDeviceAccess(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	d := e.create(steward.DeploymentSpec{Phases: []steward.Phase{{Name: "all", Percent: 100}}})
	e.tick(d.ID) // start
	e.tick(d.ID) // tell the devices
	told := e.devices(d.ID, steward.UpdateNotified)
	if len(told) != 4 {
		t.Fatalf("%d devices told, want 4", len(told))
	}
	e.finish(d.ID, "", dev(1)) // dev 1 is done with it

	what, err := e.engine.RemoveDeviceAccess(t.Context(), tenant, dev(0))
	must(t, err)
	if !strings.Contains(what, "skipped in 1 unfinished deployment") {
		t.Fatalf("said %q", what)
	}
	r, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0))
	must(t, err)
	if r.State != steward.UpdateSkipped || r.Reason != "decommissioned" {
		t.Fatalf("decommissioned device: %+v", r)
	}
	e.mu.Lock()
	cleared := e.cleared[dev(0)]
	e.mu.Unlock()
	if cleared != 1 {
		t.Fatalf("retained job cleared %d times, want 1", cleared)
	}
	// A device that finished keeps its row; the others are untouched.
	what, err = e.engine.RemoveDeviceAccess(t.Context(), tenant, dev(1))
	must(t, err)
	if !strings.Contains(what, "skipped in 0 unfinished") {
		t.Fatalf("finished device: %q", what)
	}
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(1)); r.State != steward.UpdateSucceeded {
		t.Fatalf("finished device's row changed: %+v", r)
	}
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSkipped: 1, steward.UpdateSucceeded: 1, steward.UpdateNotified: 2})
	// Another tenant's ID changes nothing of this tenant.
	if _, err := e.engine.RemoveDeviceAccess(t.Context(), "other", dev(2)); err != nil {
		t.Fatal(err)
	}
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSkipped: 1, steward.UpdateSucceeded: 1, steward.UpdateNotified: 2})
}

// TestRemoveDeviceAccessManyDeployments: with more unfinished deployments
// than one page of them (1,000), the device is skipped in the oldest as in
// the newest.
func TestRemoveDeviceAccessManyDeployments(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	tmpl := e.create(steward.DeploymentSpec{Phases: []steward.Phase{{Name: "all", Percent: 100}}})
	const n = 1001
	var ids []string
	must(t, e.store.InTx(t.Context(), func(tx steward.Store) error {
		for i := range n {
			d := tmpl
			d.ID, d.State = fmt.Sprintf("dp-many-%04d", i), steward.DeploymentPaused
			d.CreatedAt = t0.Add(time.Duration(i) * time.Second)
			d.UpdatedAt = d.CreatedAt
			if err := tx.CreateDeployment(t.Context(), d); err != nil {
				return err
			}
			ids = append(ids, d.ID)
		}
		return nil
	}))
	oldest, newest := ids[0], ids[n-1]
	var rows []steward.DeploymentDevice
	for _, id := range []string{oldest, newest} {
		for _, d := range []string{dev(0), dev(1)} {
			rows = append(rows, steward.DeploymentDevice{TenantID: tenant, DeploymentID: id, DeviceID: d, Window: -1,
				State: steward.UpdateNotified, ToVersion: "1.5.0", UpdatedAt: t0})
		}
	}
	_, err := e.store.AddDeploymentDevices(t.Context(), rows)
	must(t, err)

	what, err := e.engine.RemoveDeviceAccess(t.Context(), tenant, dev(0))
	must(t, err)
	if !strings.Contains(what, "skipped in 2 unfinished deployment") {
		t.Fatalf("said %q", what)
	}
	for _, id := range []string{oldest, newest} {
		r, err := e.store.GetDeploymentDevice(t.Context(), tenant, id, dev(0))
		must(t, err)
		if r.State != steward.UpdateSkipped {
			t.Errorf("deployment %s: %+v, want skipped", id, r)
		}
		if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, id, dev(1)); r.State != steward.UpdateNotified {
			t.Errorf("deployment %s: the other device's row changed: %+v", id, r)
		}
	}
}

// TestTargetFromArtifact: a target that names an artifact gets its name,
// version, hash, length and TUF path from it; one that disagrees with the
// artifact, or names none that exists, is refused and nothing is stored.
func TestTargetFromArtifact(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	d := e.create(steward.DeploymentSpec{Phases: []steward.Phase{{Name: "all", Percent: 100}}})
	if tg := d.Target; tg.Name != "gw-firmware" || tg.Version != "1.5.0" || tg.Length != 4096 || tg.TUFPath != "gw-firmware/1.5.0" || tg.SHA256 != strings.Repeat("ab", 32) {
		t.Fatalf("target %+v", tg)
	}
	for _, bad := range []steward.DeploymentTarget{
		{Kind: steward.KindArtifact, ArtifactID: "a-none"},
		{Kind: steward.KindArtifact, ArtifactID: "a-1", SHA256: strings.Repeat("cd", 32)},
		{Kind: steward.KindArtifact, ArtifactID: "a-1", Version: "1.6.0"},
		{Kind: steward.KindArtifact, ArtifactID: "a-1", Length: 1},
	} {
		_, err := e.engine.Create(t.Context(), tenant, "user:alice", CreateRequest{Name: "bad", DeploymentSpec: steward.DeploymentSpec{
			Target: bad, Phases: []steward.Phase{{Name: "all", Percent: 100}}}})
		if steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("%+v: %v, want invalid", bad, err)
		}
	}
	all, err := e.store.ListDeployments(t.Context(), tenant, steward.DeploymentFilter{})
	must(t, err)
	if len(all) != 1 {
		t.Fatalf("%d deployments stored, want only the good one", len(all))
	}
}
