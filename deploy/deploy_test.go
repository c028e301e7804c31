package deploy

import (
	"fmt"
	"github.com/steward-iot/steward/internal/teststores"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestPhasesAdvance(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 20)
	d := e.create(steward.DeploymentSpec{Phases: []steward.Phase{
		{Name: "canary", Count: 2}, {Name: "half", Percent: 50}, {Name: "rest", Percent: 100}}})
	e.wantState(d, steward.DeploymentScheduled)
	d = e.tick(d.ID) // start: the target is evaluated, every device pending
	e.wantState(d, steward.DeploymentRunning)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdatePending: 20})

	wantPhase := []int{2, 8, 10}
	for p, n := range wantPhase {
		d = e.tick(d.ID)
		if d.Phase != p {
			t.Fatalf("phase %d, want %d", d.Phase, p)
		}
		told := e.devices(d.ID, steward.UpdateNotified)
		if len(told) != n {
			t.Fatalf("phase %d: %d devices told, want %d", p, len(told), n)
		}
		for _, r := range told {
			if r.Phase != p {
				t.Fatalf("device %s of phase %d told in phase %d", r.DeviceID, r.Phase, p)
			}
		}
		e.finish(d.ID, "", ids(told)...)
	}
	d = e.tick(d.ID)
	e.wantState(d, steward.DeploymentCompleted)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSucceeded: 20})
	for i := range 20 {
		jobs := e.jobsOf(dev(i))
		if len(jobs) != 1 || jobs[0].Action != steward.JobInstall || jobs[0].Attempt != 1 || jobs[0].Target.Version != "1.5.0" ||
			jobs[0].Target.TUFPath != "gw-firmware/1.5.0" || jobs[0].Target.Length != 4096 || jobs[0].Target.SHA256 != strings.Repeat("ab", 32) || jobs[0].DeploymentID != d.ID || !jobs[0].Deadline.Equal(jobs[0].SentAt.Add(steward.DefaultDeviceTimeout)) {
			t.Fatalf("%s got jobs %+v", dev(i), jobs)
		}
	}
	hist, err := e.store.ListDeploymentDeviceEvents(t.Context(), tenant, d.ID, dev(0))
	must(t, err)
	var got []string
	for _, h := range hist {
		got = append(got, string(h.State))
	}
	if strings.Join(got, ",") != "notified,downloading,installing,succeeded" {
		t.Fatalf("history %v", got)
	}
	acts := e.audit.actions()
	for _, want := range []string{"deployment.create/success", "deployment.start/success", "deployment.complete/success"} {
		if !slices.Contains(acts, want) {
			t.Fatalf("audit %v lacks %s", acts, want)
		}
	}
}

// TestFailureThreshold walks a canary of 10 through failures: the
// threshold applies only once min_finished devices finished, then the
// policy acts.
func TestFailureThreshold(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy    steward.FailurePolicy
		wantState steward.DeploymentState
	}{
		{steward.OnFailurePause, steward.DeploymentPaused},
		{steward.OnFailureAbort, steward.DeploymentAborted},
		{steward.OnFailureRollback, steward.DeploymentRolledBack},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 30)
			d := e.create(steward.DeploymentSpec{OnFailure: tc.policy, Concurrency: 6, Phases: []steward.Phase{
				{Name: "canary", Count: 10, FailureThreshold: 0.25, MinFinished: 5}, {Name: "rest", Percent: 100}}})
			e.tick(d.ID)
			d = e.tick(d.ID)
			told := ids(e.devices(d.ID, steward.UpdateNotified))
			if len(told) != 6 {
				t.Fatalf("told %d, want the cap of 6", len(told))
			}
			// 2 failed, 1 succeeded: 67% failed, but only 3 finished of the 5 needed.
			e.finish(d.ID, "disk full", told[0], told[1])
			e.finish(d.ID, "", told[2])
			d = e.tick(d.ID)
			e.wantState(d, steward.DeploymentRunning)
			e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateNotified: 6}) // 3 more under the cap
			// 2 more succeed: 2 of 5 failed, 40% > 25%.
			e.finish(d.ID, "", told[3], told[4])
			d = e.tick(d.ID)
			e.wantState(d, tc.wantState)
			if !strings.Contains(d.StateReason, "2 of 5 finished devices failed") && tc.policy == steward.OnFailurePause {
				t.Fatalf("reason %q", d.StateReason)
			}
			switch tc.policy {
			case steward.OnFailurePause:
				// Paused: nothing more starts; devices under way may finish.
				e.finish(d.ID, "", told[5])
				d = e.tick(d.ID)
				e.wantState(d, steward.DeploymentPaused)
				e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdatePending: 21, steward.UpdateNotified: 3})
				// Resuming counts the failures so far as seen.
				d, err := e.engine.Resume(t.Context(), tenant, d.ID, "user:bob")
				must(t, err)
				e.wantState(d, steward.DeploymentRunning)
				d = e.tick(d.ID)
				e.wantState(d, steward.DeploymentRunning)
				e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateNotified: 4}) // the canary's last one
			case steward.OnFailureAbort:
				// Pending devices are skipped; the one under way is told to stop.
				e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSkipped: 21, steward.UpdateNotified: 4})
				jobs := e.jobsOf(told[5])
				if len(jobs) != 2 || jobs[1].Action != steward.JobCancel {
					t.Fatalf("device under way got %+v", jobs)
				}
			case steward.OnFailureRollback:
				// A rollback deployment takes the 3 succeeded devices back.
				list, err := e.store.ListDeployments(t.Context(), tenant, steward.DeploymentFilter{})
				must(t, err)
				i := slices.IndexFunc(list, func(x steward.Deployment) bool { return x.RollbackOf == d.ID })
				if len(list) != 2 || i < 0 {
					t.Fatalf("deployments %+v", list)
				}
				rb := list[i]
				if rb.OnFailure != steward.OnFailurePause || rb.CreatedBy != "system:deploy" {
					t.Fatalf("rollback deployment %+v", rb)
				}
				rb = e.tick(rb.ID) // start
				e.wantState(rb, steward.DeploymentRunning)
				rb = e.tick(rb.ID)
				back := e.devices(rb.ID, steward.UpdateNotified)
				if want := []string{told[2], told[3], told[4]}; !slices.Equal(ids(back), sorted(want)) {
					t.Fatalf("rolled back %v, want %v", ids(back), want)
				}
				for _, r := range back {
					jobs := e.jobsOf(r.DeviceID)
					j := jobs[len(jobs)-1]
					if j.Action != steward.JobRollback || j.Target.Version != "1.4.1" || j.DeploymentID != rb.ID {
						t.Fatalf("%s got %+v", r.DeviceID, j)
					}
				}
				for _, r := range back {
					e.report(rb.ID, r.DeviceID, `"state": "succeeded", "version": "1.4.1"`)
				}
				rb = e.tick(rb.ID)
				e.wantState(rb, steward.DeploymentCompleted)
			}
		})
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

func TestRetriesAndTimeouts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3)
	d := e.create(steward.DeploymentSpec{Retries: 2, RetryBackoff: steward.Duration(time.Minute),
		DeviceTimeout: steward.Duration(30 * time.Minute)})
	e.tick(d.ID)
	d = e.tick(d.ID)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateNotified: 3})
	// d-0000 fails transiently, twice, then succeeds; d-0001 fails for
	// good at once; d-0002 says nothing and times out.
	e.report(d.ID, dev(0), `"attempt": 1, "state": "failed", "reason": "connection reset", "transient": true`)
	e.report(d.ID, dev(1), `"attempt": 1, "state": "failed", "reason": "signature mismatch"`)
	d = e.tick(d.ID)
	r0, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0))
	must(t, err)
	if r0.State != steward.UpdatePending || !r0.NotBefore.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after a transient failure: %+v", r0)
	}
	d = e.tick(d.ID) // backoff not over: nothing starts
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0)); r.State != steward.UpdatePending {
		t.Fatalf("started before its backoff: %+v", r)
	}
	e.clock.Add(time.Minute)
	d = e.tick(d.ID)
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0)); r.State != steward.UpdateNotified || r.Attempt != 2 {
		t.Fatalf("retry: %+v", r)
	}
	// A late status of the first attempt changes nothing.
	if e.report(d.ID, dev(0), `"attempt": 1, "state": "succeeded"`) {
		t.Fatal("a status of an old attempt applied")
	}
	e.report(d.ID, dev(0), `"attempt": 2, "state": "failed", "reason": "connection reset", "transient": true`)
	d = e.tick(d.ID)
	r0, _ = e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(0))
	if !r0.NotBefore.Equal(t0.Add(3 * time.Minute)) { // 2 minutes: the backoff doubled
		t.Fatalf("second backoff: %+v", r0)
	}
	e.clock.Add(2 * time.Minute)
	e.tick(d.ID)
	e.report(d.ID, dev(0), `"attempt": 3, "state": "succeeded", "version": "1.5.0"`)
	jobs := e.jobsOf(dev(0))
	if len(jobs) != 3 || jobs[2].Attempt != 3 {
		t.Fatalf("jobs of d-0000: %+v", jobs)
	}
	// d-0002 times out at 30 minutes after it was told.
	e.clock.Set(t0.Add(30*time.Minute - time.Second))
	d = e.tick(d.ID)
	if r, _ := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, dev(2)); r.State != steward.UpdateNotified {
		t.Fatalf("timed out early: %+v", r)
	}
	e.clock.Set(t0.Add(30*time.Minute + time.Second))
	d = e.tick(d.ID)
	e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdateSucceeded: 1, steward.UpdateFailed: 1, steward.UpdateTimedOut: 1})
	d = e.tick(d.ID) // the phase is done: 1 of 3 succeeded, 100% needed
	e.wantState(d, steward.DeploymentPaused)

	// Retries run out: a transient failure with none left is final.
	e2 := newEnv(t, 1)
	d2 := e2.create(steward.DeploymentSpec{Retries: 1})
	e2.tick(d2.ID)
	e2.tick(d2.ID)
	e2.report(d2.ID, dev(0), `"state": "failed", "reason": "timeout", "transient": true`)
	e2.tick(d2.ID)
	e2.clock.Add(time.Minute)
	e2.tick(d2.ID)
	e2.report(d2.ID, dev(0), `"state": "failed", "reason": "timeout", "transient": true`)
	e2.tick(d2.ID)
	r, _ := e2.store.GetDeploymentDevice(t.Context(), tenant, d2.ID, dev(0))
	if r.State != steward.UpdateFailed || r.Transient || !strings.Contains(r.Reason, "gave up after 2 attempts") {
		t.Fatalf("retries exhausted: %+v", r)
	}
}

func TestConcurrencyAndRate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name              string
		concurrency, rate int
		// told after each step: 0 s, again at 0 s, 30 s, 90 s, 10 min
		// (every device told so far finishes before each step).
		want []int
	}{
		{"cap", 3, 0, []int{3, 3, 6, 9, 12}},
		{"rate", 100, 4, []int{4, 4, 6, 10, 14}}, // a burst of at most a minute's worth
		{"both", 2, 4, []int{2, 2, 4, 6, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 40)
			d := e.create(steward.DeploymentSpec{Concurrency: tc.concurrency, Rate: tc.rate})
			e.tick(d.ID)
			var got []int
			for i, at := range []time.Duration{0, 0, 30 * time.Second, 90 * time.Second, 10 * time.Minute} {
				e.clock.Set(t0.Add(at))
				d = e.tick(d.ID)
				told := e.devices(d.ID, steward.UpdateNotified)
				total := len(told) + len(e.devices(d.ID, steward.UpdateSucceeded))
				got = append(got, total)
				if len(told) > tc.concurrency {
					t.Fatalf("step %d: %d under way, over the cap of %d", i, len(told), tc.concurrency)
				}
				if i > 0 { // the first two steps are at one instant: nothing finishes between them
					e.finish(d.ID, "", ids(told)...)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("told over time %v, want %v", got, tc.want)
			}
		})
	}
}

func TestLateJoiners(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 2)
	d := e.create(steward.DeploymentSpec{Query: `model = "gw-100"`, KeepOpen: true,
		Phases: []steward.Phase{{Name: "canary", Count: 1}, {Name: "rest", Percent: 100}}})
	e.tick(d.ID)
	d = e.tick(d.ID)
	e.finish(d.ID, "", ids(e.devices(d.ID, steward.UpdateNotified))...)
	d = e.tick(d.ID)
	e.finish(d.ID, "", ids(e.devices(d.ID, steward.UpdateNotified))...)
	d = e.tick(d.ID)
	e.wantState(d, steward.DeploymentRunning) // kept open
	e.addDevice("d-late", "paris", nil)
	d = e.tick(d.ID) // before the join interval: not looked for yet
	if _, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, "d-late"); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("joined before the interval: %v", err)
	}
	e.clock.Add(time.Minute)
	d = e.tick(d.ID)
	r, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, "d-late")
	must(t, err)
	if r.Phase != 1 || r.State != steward.UpdateNotified {
		t.Fatalf("late joiner %+v", r)
	}
	if jobs := e.jobsOf("d-late"); len(jobs) != 1 {
		t.Fatalf("late joiner jobs %+v", jobs)
	}
	// A device that does not match never joins.
	must(t, e.store.CreateDevice(t.Context(), steward.Device{ID: "d-other", TenantID: tenant, Model: "cam-9", State: steward.StateActive,
		StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}))
	e.clock.Add(time.Minute)
	d = e.tick(d.ID)
	if _, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, "d-other"); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("a device outside the query joined: %v", err)
	}
}

func TestSuccessThresholdAndResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 6)
	d := e.create(steward.DeploymentSpec{Phases: []steward.Phase{
		{Name: "canary", Count: 2, SuccessThreshold: 1}, {Name: "rest", Percent: 100}}})
	e.tick(d.ID)
	d = e.tick(d.ID)
	told := ids(e.devices(d.ID, steward.UpdateNotified))
	e.finish(d.ID, "", told[0])
	e.report(d.ID, told[1], `"state": "skipped", "reason": "already_installed"`)
	d = e.tick(d.ID) // a skipped device does not count against success
	if d.Phase != 1 || d.State != steward.DeploymentRunning {
		t.Fatalf("after canary: phase %d %s (%s)", d.Phase, d.State, d.StateReason)
	}
	rest := ids(e.devices(d.ID, steward.UpdateNotified))
	e.finish(d.ID, "", rest[:3]...)
	e.finish(d.ID, "bad block", rest[3])
	d = e.tick(d.ID)
	e.wantState(d, steward.DeploymentPaused)
	if !strings.Contains(d.StateReason, "3 of 4 finished devices succeeded") {
		t.Fatalf("reason %q", d.StateReason)
	}
	d, err := e.engine.Resume(t.Context(), tenant, d.ID, "user:bob")
	must(t, err)
	e.wantState(d, steward.DeploymentCompleted) // the operator accepted the last phase
}

func TestBadInputWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1)
	for _, tc := range []struct {
		name string
		req  CreateRequest
	}{
		{"no name", CreateRequest{DeploymentSpec: steward.DeploymentSpec{Target: steward.DeploymentTarget{Kind: steward.KindConfig, Name: "c", Version: "1"}}}},
		{"bad kind", CreateRequest{Name: "x", DeploymentSpec: steward.DeploymentSpec{Target: steward.DeploymentTarget{Kind: "rpm", Name: "c", Version: "1"}}}},
		{"bad query", CreateRequest{Name: "x", DeploymentSpec: steward.DeploymentSpec{Query: "model ==", Target: steward.DeploymentTarget{Kind: steward.KindConfig, Name: "c", Version: "1"}}}},
		{"bad cron", CreateRequest{Name: "x", DeploymentSpec: steward.DeploymentSpec{Target: steward.DeploymentTarget{Kind: steward.KindConfig, Name: "c", Version: "1"},
			Windows: []steward.MaintenanceWindow{{Cron: "61 * * * *", Duration: steward.Duration(time.Hour), TimeZone: "UTC"}}}}},
		{"bad zone", CreateRequest{Name: "x", DeploymentSpec: steward.DeploymentSpec{Target: steward.DeploymentTarget{Kind: steward.KindConfig, Name: "c", Version: "1"},
			Windows: []steward.MaintenanceWindow{{Cron: "0 2 * * *", Duration: steward.Duration(time.Hour), TimeZone: "Mars/Olympus"}}}}},
	} {
		_, err := e.engine.Create(t.Context(), tenant, "user:alice", tc.req)
		if steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("%s: err %v, want invalid", tc.name, err)
		}
	}
	list, err := e.store.ListDeployments(t.Context(), tenant, steward.DeploymentFilter{})
	must(t, err)
	if len(list) != 0 || len(e.audit.actions()) != 0 {
		t.Fatalf("bad input wrote %+v, audit %v", list, e.audit.actions())
	}
	// Status payloads the protocol refuses.
	for _, p := range []string{`[]`, `{"state": "succeeded"}`, `{"deployment_id": "dp-1", "state": "exploded"}`,
		`{"deployment_id": "dp-1", "state": "pending"}`, `{"deployment_id": "dp-1", "state": "failed"}`,
		`{"deployment_id": "dp-1", "state": "downloading", "progress": 2}`, `{"deployment_id": "dp-1", "state": "succeeded", "at": "yesterday"}`,
		`{"deployment_id": "dp-1", "state": "succeeded"} {}`} {
		if _, err := DecodeStatus([]byte(p), tenant, dev(0), t0); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("%s: err %v, want invalid", p, err)
		}
	}
	u, err := DecodeStatus([]byte(`{"deployment_id": "dp-1", "state": "verifying", "at": 1795773600000, "progress": 0.5}`), tenant, dev(0), t0)
	must(t, err)
	if !u.At.Equal(time.UnixMilli(1795773600000)) || u.Progress != 0.5 || u.State != steward.UpdateVerifying {
		t.Fatalf("decoded %+v", u)
	}
}

// TestTwoNodes runs two engines over one store, ticking at once, on each
// backend: no device is ever told twice.
func TestTwoNodes(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "deploytest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			twoNodes(t, newEnvOn(t, open(t), 200))
		})
	}
}

func twoNodes(t *testing.T, e *env) {
	other := New(Config{Store: e.store, Bus: e.bus, Clock: e.clock, Node: "node-2", Lease: time.Minute})
	d := e.create(steward.DeploymentSpec{Concurrency: 50})
	for range 6 {
		done := make(chan error, 2)
		go func() { _, err := e.engine.Tick(t.Context()); done <- err }()
		go func() { _, err := other.Tick(t.Context()); done <- err }()
		must(t, <-done)
		must(t, <-done)
		e.finish(d.ID, "", ids(e.devices(d.ID, steward.UpdateNotified))...)
		e.clock.Add(2 * time.Minute) // leases run out: the other node may take over
	}
	for i := range 200 {
		if n := len(e.jobsOf(dev(i))); n > 1 {
			t.Fatalf("%s told %d times", dev(i), n)
		}
	}
	if got := len(e.devices(d.ID, steward.UpdateSucceeded)); got != 200 {
		t.Fatalf("%d succeeded, want 200 (%v)", got, e.stateCounts(d.ID))
	}
}

func TestProgress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 4)
	d := e.create(steward.DeploymentSpec{Phases: []steward.Phase{{Name: "canary", Count: 1}, {Name: "rest", Percent: 100}}})
	e.tick(d.ID)
	d = e.tick(d.ID)
	pr, err := e.engine.Progress(t.Context(), d)
	must(t, err)
	if pr.Total != 4 || pr.Phases[0].Total != 1 || pr.Phases[1].Total != 3 || pr.States[steward.UpdateNotified] != 1 ||
		pr.Phases[1].States[steward.UpdatePending] != 3 {
		t.Fatalf("progress %+v", pr)
	}
	_ = fmt.Sprint()
}
