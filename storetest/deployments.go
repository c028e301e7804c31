package storetest

import (
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func deployment(tenant, id string) steward.Deployment {
	d := steward.Deployment{ID: id, TenantID: tenant, Name: "gw firmware 1.5.0", Description: "fixes the watchdog",
		DeploymentSpec: steward.DeploymentSpec{
			Target: steward.DeploymentTarget{Kind: steward.KindArtifact, ArtifactID: "a-1", Name: "gw-firmware", Version: "1.5.0",
				SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Length: 1234, TUFPath: "gw-firmware/1.5.0/fw.bin"},
			Query: `model = "gw-100"`, KeepOpen: true,
			Phases: []steward.Phase{{Name: "canary", Count: 5, SuccessThreshold: 1, FailureThreshold: 0.2, MinFinished: 3, Soak: steward.Duration(time.Hour)},
				{Name: "rest", Percent: 100, SuccessThreshold: 0.95, FailureThreshold: 0.1}},
			OnFailure: steward.OnFailureRollback, Concurrency: 50, Rate: 600, DeviceTimeout: steward.Duration(time.Hour),
			Retries: 2, RetryBackoff: steward.Duration(time.Minute),
			Gate:    &steward.HealthGate{Checks: []steward.GateCheck{{Signal: steward.SignalReboots, MaxIncrease: 0.2}}},
			Windows: []steward.MaintenanceWindow{{Name: "night", Match: "site=berlin", Cron: "0 2 * * *", Duration: steward.Duration(2 * time.Hour), TimeZone: "Europe/Berlin"}},
		},
		State: steward.DeploymentRunning, CreatedBy: "token:t-1", CreatedAt: t0, UpdatedAt: t0, StartedAt: at(time.Minute),
		Tokens: 600, TokensAt: at(time.Minute),
	}
	return d
}

func sameDeployment(t *testing.T, got, want steward.Deployment) {
	t.Helper()
	for _, p := range []*time.Time{&want.CreatedAt, &want.UpdatedAt, &want.StartedAt, &want.FinishedAt, &want.PhaseDoneAt, &want.TokensAt} {
		*p = stored(*p)
	}
	if want.StartAt.IsZero() {
		want.StartAt = time.Time{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("deployment differs:\n got %+v\nwant %+v", got, want)
	}
}

func testDeployments(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	d := deployment(tenantA, "dp-1")
	must(t, s.CreateDeployment(c, d))
	d.Version = 1
	got, err := s.GetDeployment(c, tenantA, "dp-1")
	must(t, err)
	sameDeployment(t, got, d)
	wantCode(t, s.CreateDeployment(c, d), steward.CodeConflict)

	// An update with the stored version lands; a stale one is refused.
	got.State, got.StateReason, got.Phase, got.PhaseDoneAt = steward.DeploymentPaused, "gate failed", 1, at(2*time.Hour)
	got.Evidence = &steward.GateEvidence{Phase: 0, From: stored(at(time.Hour)), To: stored(at(2 * time.Hour)), UpdatedDevices: 5, BaselineDevices: 95,
		Signals: []steward.GateSignal{{Signal: steward.SignalReboots, Updated: 1, Baseline: 0.1, Increase: 0.9, MaxIncrease: 0.2, Worse: true}}}
	got.UpdatedAt = at(2 * time.Hour)
	upd, err := s.UpdateDeployment(c, got)
	must(t, err)
	if upd.Version != 2 || upd.State != steward.DeploymentPaused || upd.Phase != 1 || upd.Evidence == nil || !upd.Evidence.Signals[0].Worse {
		t.Fatalf("updated = %+v", upd)
	}
	_, err = s.UpdateDeployment(c, got) // version 1 again
	wantCode(t, err, steward.CodeConflict)

	d2 := deployment(tenantA, "dp-2")
	d2.CreatedAt = at(time.Hour)
	d2.State = steward.DeploymentAwaitingApproval
	must(t, s.CreateDeployment(c, d2))
	list, err := s.ListDeployments(c, tenantA, steward.DeploymentFilter{})
	must(t, err)
	if len(list) != 2 || list[0].ID != "dp-2" || list[1].ID != "dp-1" {
		t.Fatalf("list = %+v", list)
	}
	list, err = s.ListDeployments(c, tenantA, steward.DeploymentFilter{State: steward.DeploymentAwaitingApproval})
	must(t, err)
	if len(list) != 1 || list[0].ID != "dp-2" {
		t.Fatalf("list by state = %+v", list)
	}
	_, err = s.ListDeployments(c, tenantA, steward.DeploymentFilter{State: "sideways"})
	wantCode(t, err, steward.CodeInvalid)

	// Isolation.
	_, err = s.GetDeployment(c, tenantB, "dp-1")
	wantCode(t, err, steward.CodeNotFound)
	other := upd
	other.TenantID = tenantB
	_, err = s.UpdateDeployment(c, other)
	wantCode(t, err, steward.CodeNotFound)
	list, err = s.ListDeployments(c, tenantB, steward.DeploymentFilter{})
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists %+v", list)
	}
	wantCode(t, s.CreateDeployment(c, deployment("tenant-nope", "dp-9")), steward.CodeNotFound)
}

func testDeploymentsInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	cases := []struct {
		name string
		edit func(*steward.Deployment)
	}{
		{"no id", func(d *steward.Deployment) { d.ID = "" }},
		{"no name", func(d *steward.Deployment) { d.Name = "" }},
		{"no creator", func(d *steward.Deployment) { d.CreatedBy = "" }},
		{"no state", func(d *steward.Deployment) { d.State = "" }},
		{"bad state", func(d *steward.Deployment) { d.State = "sideways" }},
		{"bad kind", func(d *steward.Deployment) { d.Target.Kind = "firmware" }},
		{"no version", func(d *steward.Deployment) { d.Target.Version = "" }},
		{"bad sha", func(d *steward.Deployment) { d.Target.SHA256 = "xyz" }},
		{"two selectors", func(d *steward.Deployment) { d.Phases[0].Percent = 5 }},
		{"percent down", func(d *steward.Deployment) {
			d.Phases = []steward.Phase{{Percent: 50, Soak: 1}, {Percent: 10}}
		}},
		{"threshold over 1", func(d *steward.Deployment) { d.Phases[0].FailureThreshold = 1.5 }},
		{"bad selector", func(d *steward.Deployment) { d.Phases[0] = steward.Phase{Selector: "colour=red", Soak: 1} }},
		{"gate without soak", func(d *steward.Deployment) { d.Phases[0].Soak = 0 }},
		{"bad signal", func(d *steward.Deployment) { d.Gate.Checks[0].Signal = "vibes" }},
		{"bad policy", func(d *steward.Deployment) { d.OnFailure = "shrug" }},
		{"negative rate", func(d *steward.Deployment) { d.Rate = -1 }},
		{"window without zone", func(d *steward.Deployment) { d.Windows[0].TimeZone = "" }},
		{"battery over 1", func(d *steward.Deployment) { d.MinBattery = 2 }},
	}
	for i, tc := range cases {
		d := deployment(tenantA, fmt.Sprintf("dp-%d", i))
		tc.edit(&d)
		if err := s.CreateDeployment(c, d); err == nil {
			t.Fatalf("%s: created", tc.name)
		} else {
			wantCode(t, err, steward.CodeInvalid)
		}
	}
	list, err := s.ListDeployments(c, tenantA, steward.DeploymentFilter{})
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("invalid deployments were written: %+v", list)
	}
}

func deploymentRows(tenant, dep string, n, phase int) []steward.DeploymentDevice {
	rows := make([]steward.DeploymentDevice, n)
	for i := range rows {
		rows[i] = steward.DeploymentDevice{TenantID: tenant, DeploymentID: dep, DeviceID: did("x", i), Phase: phase, Window: -1,
			State: steward.UpdatePending, FromVersion: "1.4.1", ToVersion: "1.5.0", UpdatedAt: t0}
	}
	return rows
}

func testDeploymentDevices(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDeployment(c, deployment(tenantA, "dp-1")))
	must(t, s.CreateDeployment(c, deployment(tenantB, "dp-b")))

	// 2,500 rows go in batches; adding them again adds nothing.
	rows := deploymentRows(tenantA, "dp-1", 2500, 0)
	for i := 2000; i < 2500; i++ {
		rows[i].Phase = 1
	}
	n, err := s.AddDeploymentDevices(c, rows)
	must(t, err)
	if n != 2500 {
		t.Fatalf("added %d, want 2500", n)
	}
	n, err = s.AddDeploymentDevices(c, rows[:10])
	must(t, err)
	if n != 0 {
		t.Fatalf("added again %d, want 0", n)
	}
	counts, err := s.CountDeploymentDevices(c, tenantA, "dp-1")
	must(t, err)
	want := []steward.DeploymentCount{{Phase: 0, State: steward.UpdatePending, N: 2000}, {Phase: 1, State: steward.UpdatePending, N: 500}}
	if !reflect.DeepEqual(counts, want) {
		t.Fatalf("counts = %+v", counts)
	}
	got, err := s.GetDeploymentDevice(c, tenantA, "dp-1", did("x", 7))
	must(t, err)
	wantRow := rows[7]
	wantRow.UpdatedAt = stored(t0)
	if !reflect.DeepEqual(got, wantRow) {
		t.Fatalf("row = %+v, want %+v", got, wantRow)
	}

	// A pending device is told: attempt 1, a deadline.
	dev := did("x", 7)
	up := func(u steward.DeploymentDeviceUpdate) bool {
		t.Helper()
		u.TenantID, u.DeploymentID, u.DeviceID = tenantA, "dp-1", dev
		if u.At.IsZero() {
			u.At = at(time.Minute)
		}
		ok, err := s.UpdateDeploymentDevices(c, []steward.DeploymentDeviceUpdate{u})
		must(t, err)
		return ok[0]
	}
	if !up(steward.DeploymentDeviceUpdate{From: []steward.UpdateState{steward.UpdatePending}, State: steward.UpdateNotified, NextAttempt: true, Deadline: at(time.Hour)}) {
		t.Fatal("notify did not apply")
	}
	if up(steward.DeploymentDeviceUpdate{From: []steward.UpdateState{steward.UpdatePending}, State: steward.UpdateNotified, NextAttempt: true}) {
		t.Fatal("a second start applied")
	}
	// Forward only, for the current attempt.
	if !up(steward.DeploymentDeviceUpdate{Attempt: 1, State: steward.UpdateInstalling, Progress: 0.5, PreviousVersion: "1.4.2"}) {
		t.Fatal("installing did not apply")
	}
	if up(steward.DeploymentDeviceUpdate{Attempt: 1, State: steward.UpdateDownloading}) {
		t.Fatal("a step back applied")
	}
	if up(steward.DeploymentDeviceUpdate{Attempt: 2, State: steward.UpdateSucceeded}) {
		t.Fatal("another attempt's status applied")
	}
	if !up(steward.DeploymentDeviceUpdate{Attempt: 1, State: steward.UpdateSucceeded, Version: "1.5.0", At: at(2 * time.Minute)}) {
		t.Fatal("succeeded did not apply")
	}
	if up(steward.DeploymentDeviceUpdate{Attempt: 1, State: steward.UpdateFailed}) {
		t.Fatal("a status after a final state applied")
	}
	got, err = s.GetDeploymentDevice(c, tenantA, "dp-1", dev)
	must(t, err)
	if got.State != steward.UpdateSucceeded || got.Attempt != 1 || got.FromVersion != "1.4.2" || got.ToVersion != "1.5.0" ||
		!got.Deadline.Equal(stored(at(time.Hour))) || !got.UpdatedAt.Equal(stored(at(2*time.Minute))) {
		t.Fatalf("row = %+v", got)
	}
	hist, err := s.ListDeploymentDeviceEvents(c, tenantA, "dp-1", dev)
	must(t, err)
	var states []string
	for _, h := range hist {
		states = append(states, fmt.Sprintf("%s/%d", h.State, h.Attempt))
	}
	eqStrings(t, "history", states, []string{"notified/1", "installing/1", "succeeded/1"})

	// Filters: phase, states, due, expired, keyset.
	list, err := s.ListDeploymentDevices(c, tenantA, "dp-1", steward.DeploymentDeviceFilter{Phase: 1, States: []steward.UpdateState{steward.UpdatePending}, Limit: 10000})
	must(t, err)
	if len(list) != 500 || list[0].DeviceID != did("x", 2000) {
		t.Fatalf("phase 1 pending: %d rows", len(list))
	}
	list, err = s.ListDeploymentDevices(c, tenantA, "dp-1", steward.DeploymentDeviceFilter{Phase: -1, After: did("x", 2497)})
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("after: %+v", list)
	}
	dev = did("x", 8)
	up(steward.DeploymentDeviceUpdate{From: []steward.UpdateState{steward.UpdatePending}, State: steward.UpdateNotified, NextAttempt: true, Deadline: at(time.Hour)})
	list, err = s.ListDeploymentDevices(c, tenantA, "dp-1", steward.DeploymentDeviceFilter{Phase: -1, Expired: at(2 * time.Hour), States: []steward.UpdateState{steward.UpdateNotified}})
	must(t, err)
	if len(list) != 1 || list[0].DeviceID != dev {
		t.Fatalf("expired: %+v", list)
	}
	dev = did("x", 9)
	up(steward.DeploymentDeviceUpdate{From: []steward.UpdateState{steward.UpdatePending}, State: steward.UpdatePending, NotBefore: at(time.Hour)})
	list, err = s.ListDeploymentDevices(c, tenantA, "dp-1", steward.DeploymentDeviceFilter{Phase: 0, States: []steward.UpdateState{steward.UpdatePending}, Due: at(time.Minute), Limit: 5})
	must(t, err)
	for _, r := range list {
		if r.DeviceID == dev {
			t.Fatalf("a device held back until later is due: %+v", r)
		}
	}

	// Bad input: nothing written.
	_, err = s.UpdateDeploymentDevices(c, []steward.DeploymentDeviceUpdate{
		{TenantID: tenantA, DeploymentID: "dp-1", DeviceID: did("x", 10), State: steward.UpdateNotified, At: t0},
		{TenantID: tenantA, DeploymentID: "dp-1", DeviceID: did("x", 11), State: "exploded", At: t0}})
	wantCode(t, err, steward.CodeInvalid)
	got, err = s.GetDeploymentDevice(c, tenantA, "dp-1", did("x", 10))
	must(t, err)
	if got.State != steward.UpdatePending {
		t.Fatalf("an invalid batch wrote %+v", got)
	}
	_, err = s.AddDeploymentDevices(c, []steward.DeploymentDevice{{TenantID: tenantA, DeploymentID: "dp-1", DeviceID: "d-new", State: "pending", UpdatedAt: t0},
		{TenantID: tenantA, DeploymentID: "dp-1", DeviceID: "", State: "pending", UpdatedAt: t0}})
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.GetDeploymentDevice(c, tenantA, "dp-1", "d-new")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.AddDeploymentDevices(c, deploymentRows(tenantA, "dp-nope", 1, 0))
	wantCode(t, err, steward.CodeNotFound)

	// Isolation: tenant B neither reads nor moves A's devices, nor adds
	// devices to A's deployment.
	_, err = s.GetDeploymentDevice(c, tenantB, "dp-1", did("x", 7))
	wantCode(t, err, steward.CodeNotFound)
	ok, err := s.UpdateDeploymentDevices(c, []steward.DeploymentDeviceUpdate{{TenantID: tenantB, DeploymentID: "dp-1", DeviceID: did("x", 12), State: steward.UpdateFailed, At: t0}})
	must(t, err)
	if ok[0] {
		t.Fatal("tenant B moved a device of A")
	}
	rowB := deploymentRows(tenantB, "dp-1", 1, 0)
	rowB[0].DeviceID = "d-from-b"
	_, err = s.AddDeploymentDevices(c, rowB)
	wantCode(t, err, steward.CodeNotFound)
	n, err = s.AddDeploymentDevices(c, deploymentRows(tenantB, "dp-1", 1, 0)) // a row A has: nothing changes
	if err == nil && n != 0 {
		t.Fatalf("tenant B added %d rows to A's deployment", n)
	}
	got, err = s.GetDeploymentDevice(c, tenantA, "dp-1", did("x", 0))
	must(t, err)
	if got.TenantID != tenantA {
		t.Fatalf("row = %+v", got)
	}
	counts, err = s.CountDeploymentDevices(c, tenantB, "dp-1")
	must(t, err)
	if len(counts) != 0 {
		t.Fatalf("tenant B counts %+v", counts)
	}
}

func testDeploymentsClaimConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	for i := range 20 {
		d := deployment(tenantA, fmt.Sprintf("dp-%02d", i))
		if i%5 == 0 {
			d.State = steward.DeploymentPaused // never claimed
		}
		must(t, s.CreateDeployment(c, d))
	}
	now := at(time.Hour)
	var mu sync.Mutex
	owners := map[string]string{}
	var wg sync.WaitGroup
	for _, owner := range []string{"node-1", "node-2", "node-3"} {
		wg.Go(func() {
			got, err := s.ClaimDeployments(c, owner, now, time.Minute, 1000)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range got {
				if prev, ok := owners[d.ID]; ok {
					t.Errorf("%s claimed by %s and %s", d.ID, prev, owner)
				}
				owners[d.ID] = owner
			}
		})
	}
	wg.Wait()
	if len(owners) != 16 {
		t.Fatalf("claimed %d deployments, want 16", len(owners))
	}
	// The owner renews; another node gets nothing until the lease runs out.
	got, err := s.ClaimDeployments(c, "node-4", now.Add(30*time.Second), time.Minute, 1000)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("node-4 claimed leased deployments: %d", len(got))
	}
	got, err = s.ClaimDeployments(c, "node-4", now.Add(2*time.Minute), time.Minute, 1000)
	must(t, err)
	if len(got) != 16 {
		t.Fatalf("after the lease, node-4 claimed %d", len(got))
	}
	_, err = s.ClaimDeployments(c, "", now, time.Minute, 10)
	wantCode(t, err, steward.CodeInvalid)
}
