package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/deploy"
)

func TestDeployments(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	engine := deploy.New(deploy.Config{Store: e.store, Bus: e.bus, Policy: deploy.Policy{MaxDevices: 2}})
	e.api.cfg.Deployments = engine
	alice, _, err := CreateToken(ctx, e.store, steward.DefaultTenant, "alice", steward.RoleAdmin, steward.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	bob, _, err := CreateToken(ctx, e.store, steward.DefaultTenant, "bob", steward.RoleAdmin, steward.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"d-1", "d-2", "d-3"} {
		e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	}
	const base = "/api/v1/deployments"
	req := DeploymentRequest{Name: "fw 1.5.0", DeploymentSpec: steward.DeploymentSpec{
		Target: steward.DeploymentTarget{Kind: steward.KindArtifact, Name: "gw-firmware", Version: "1.5.0"},
		Query:  `model = "gw-100"`, Phases: []steward.Phase{{Name: "canary", Count: 1}, {Name: "rest", Percent: 100}}}}

	// Bad input: 400 and nothing stored.
	bad := req
	bad.Target.Kind = "rpm"
	e.must(t, http.StatusBadRequest, "POST", base, alice, bad).problem(t)
	bad = req
	bad.Query = "model =="
	e.must(t, http.StatusBadRequest, "POST", base, alice, bad).problem(t)
	var l List[DeploymentView]
	e.must(t, http.StatusOK, "GET", base, alice, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("bad requests stored %+v", l.Items)
	}

	var d DeploymentView
	e.must(t, http.StatusCreated, "POST", base, alice, req).decode(t, &d)
	if d.State != steward.DeploymentAwaitingApproval {
		t.Fatalf("created %+v", d)
	}
	// The creator cannot approve; another operator can.
	e.must(t, http.StatusForbidden, "POST", base+"/"+d.ID+"/approve", alice, nil).problem(t)
	e.must(t, http.StatusOK, "POST", base+"/"+d.ID+"/approve", bob, DeploymentActionRequest{Comment: "ok"}).decode(t, &d)
	if d.State != steward.DeploymentScheduled || d.ApprovedBy == "" {
		t.Fatalf("approved %+v", d)
	}
	e.must(t, http.StatusConflict, "POST", base+"/"+d.ID+"/approve", bob, nil).problem(t)
	for range 2 {
		if _, err := engine.Tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	e.must(t, http.StatusOK, "GET", base+"/"+d.ID, alice, nil).decode(t, &d)
	if d.State != steward.DeploymentRunning || d.Progress == nil || d.Progress.Total != 3 ||
		d.Progress.States[steward.UpdateNotified] != 1 || d.Progress.Phases[1].States[steward.UpdatePending] != 2 {
		t.Fatalf("running %+v %+v", d, d.Progress)
	}
	var devs List[steward.DeploymentDevice]
	e.must(t, http.StatusOK, "GET", base+"/"+d.ID+"/devices?state=notified", alice, nil).decode(t, &devs)
	if len(devs.Items) != 1 || devs.Items[0].DeviceID != "d-1" {
		t.Fatalf("devices %+v", devs)
	}
	e.must(t, http.StatusOK, "GET", base+"/"+d.ID+"/devices?phase=1&limit=1", alice, nil).decode(t, &devs)
	if len(devs.Items) != 1 || devs.NextAfter != "d-2" {
		t.Fatalf("page %+v", devs)
	}
	e.must(t, http.StatusBadRequest, "GET", base+"/"+d.ID+"/devices?state=sideways", alice, nil).problem(t)
	var dd DeploymentDeviceView
	e.must(t, http.StatusOK, "GET", base+"/"+d.ID+"/devices/d-1", alice, nil).decode(t, &dd)
	if dd.State != steward.UpdateNotified || len(dd.History) != 1 {
		t.Fatalf("device %+v", dd)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/"+d.ID+"/devices/d-9", alice, nil).problem(t)

	e.must(t, http.StatusOK, "POST", base+"/"+d.ID+"/pause", alice, DeploymentActionRequest{Reason: "weekend"}).decode(t, &d)
	if d.State != steward.DeploymentPaused {
		t.Fatalf("paused %+v", d)
	}
	e.must(t, http.StatusOK, "POST", base+"/"+d.ID+"/resume", alice, nil).decode(t, &d)
	if d.State != steward.DeploymentRunning {
		t.Fatalf("resumed %+v", d)
	}
	var rb DeploymentView
	e.must(t, http.StatusCreated, "POST", base+"/"+d.ID+"/rollback", alice, nil).decode(t, &rb)
	if rb.RollbackOf != d.ID {
		t.Fatalf("rollback %+v", rb)
	}
	e.must(t, http.StatusConflict, "POST", base+"/"+d.ID+"/cancel", alice, nil).problem(t) // rolled back: ended
	e.must(t, http.StatusOK, "POST", base+"/"+rb.ID+"/cancel", alice, nil).decode(t, &rb)
	if rb.State != steward.DeploymentAborted {
		t.Fatalf("cancelled %+v", rb)
	}

	// Another tenant sees none of it.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusNotFound, "GET", base+"/"+d.ID, other, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", base+"/"+d.ID+"/pause", other, nil).problem(t)
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("another tenant lists %+v", l.Items)
	}
	// A viewer reads but does not control.
	viewer, _, err := CreateToken(ctx, e.store, steward.DefaultTenant, "viewer", steward.RoleViewer, steward.SystemClock{})
	if err != nil {
		t.Fatal(err)
	}
	e.must(t, http.StatusOK, "GET", base+"/"+d.ID, viewer, nil)
	e.must(t, http.StatusForbidden, "POST", base, viewer, req).problem(t)
}
