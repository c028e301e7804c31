package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// TestHealthGate: after the canary's soak, a canary that reboots (or runs
// hotter) more than the devices not updated halts the deployment with the
// evidence; a healthy one advances. Before the soak ends, install success
// alone never advances it.
func TestHealthGate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		check           steward.GateCheck
		updatedReboots  int     // per updated device during the soak
		baselineReboots int     // per baseline device
		updatedCPU      float64 // mean cpu of updated devices
		pass            bool
	}{
		{"reboots worse", steward.GateCheck{Signal: steward.SignalReboots, MaxIncrease: 0.5}, 2, 0, 0, false},
		{"reboots alike", steward.GateCheck{Signal: steward.SignalReboots, MaxIncrease: 0.5}, 1, 1, 0, true},
		{"reboots within", steward.GateCheck{Signal: steward.SignalReboots, MaxIncrease: 1}, 1, 0, 0, true},
		{"cpu worse", steward.GateCheck{Signal: steward.SignalMetric, Metric: "cpu", MaxIncrease: 0.1}, 0, 0, 0.9, false},
		{"cpu alike", steward.GateCheck{Signal: steward.SignalMetric, Metric: "cpu", MaxIncrease: 0.1}, 0, 0, 0.35, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 20)
			d := e.create(steward.DeploymentSpec{Gate: &steward.HealthGate{Checks: []steward.GateCheck{tc.check}},
				Phases: []steward.Phase{{Name: "canary", Count: 5, Soak: steward.Duration(time.Hour)}, {Name: "rest", Percent: 100}}})
			e.tick(d.ID)
			d = e.tick(d.ID)
			canary := ids(e.devices(d.ID, steward.UpdateNotified))
			e.finish(d.ID, "", canary...)
			d = e.tick(d.ID)
			if d.Phase != 0 || d.PhaseDoneAt.IsZero() {
				t.Fatalf("after the canary finished: phase %d, soak from %v", d.Phase, d.PhaseDoneAt)
			}
			var evs []steward.DeviceEvent
			var samples []steward.Sample
			for i := range 20 {
				id := dev(i)
				n, cpu := tc.baselineReboots, 0.3
				if slices.Contains(canary, id) {
					n, cpu = tc.updatedReboots, 0.3
					if tc.updatedCPU > 0 {
						cpu = tc.updatedCPU
					}
				}
				for k := range n {
					at := t0.Add(time.Duration(10+k) * time.Minute)
					evs = append(evs, steward.DeviceEvent{TenantID: tenant, DeviceID: id, Type: "reboot", Severity: steward.SeverityWarning, At: at, Received: at})
				}
				samples = append(samples, steward.Sample{TenantID: tenant, DeviceID: id, Metric: "cpu", Value: cpu, At: t0.Add(20 * time.Minute)})
			}
			// A reboot before the soak does not count.
			evs = append(evs, steward.DeviceEvent{TenantID: tenant, DeviceID: canary[0], Type: "reboot", Severity: steward.SeverityWarning,
				At: t0.Add(-time.Hour), Received: t0.Add(-time.Hour)})
			if len(evs) > 0 {
				must(t, e.store.AddDeviceEvents(t.Context(), evs))
			}
			must(t, e.store.WriteSamples(t.Context(), samples))

			e.clock.Add(59 * time.Minute)
			d = e.tick(d.ID) // soaking: never advances on install success alone
			if d.Phase != 0 || d.State != steward.DeploymentRunning || d.Evidence != nil {
				t.Fatalf("advanced during the soak: phase %d %s", d.Phase, d.State)
			}
			e.clock.Add(time.Minute)
			d = e.tick(d.ID)
			if d.Evidence == nil || len(d.Evidence.Signals) != 1 {
				t.Fatalf("no evidence: %+v", d)
			}
			ev := d.Evidence
			if ev.UpdatedDevices != 5 || ev.BaselineDevices != 15 || !ev.From.Equal(t0) || !ev.To.Equal(t0.Add(time.Hour)) || ev.Passed != tc.pass {
				t.Fatalf("evidence %+v", ev)
			}
			s := ev.Signals[0]
			if tc.check.Signal == steward.SignalReboots && (s.Updated != float64(tc.updatedReboots) || s.Baseline != float64(tc.baselineReboots)) {
				t.Fatalf("signal %+v", s)
			}
			if tc.pass {
				e.wantState(d, steward.DeploymentRunning)
				if d.Phase != 1 || len(e.devices(d.ID, steward.UpdateNotified)) != 15 {
					t.Fatalf("a healthy canary did not advance: phase %d", d.Phase)
				}
				return
			}
			e.wantState(d, steward.DeploymentPaused)
			if d.Phase != 0 || !strings.Contains(d.StateReason, "health gate after phase canary") || !s.Worse {
				t.Fatalf("halted: phase %d, %q, %+v", d.Phase, d.StateReason, s)
			}
			e.wantCounts(d.ID, map[steward.UpdateState]int{steward.UpdatePending: 15})
			// Resuming is the operator overriding the gate: on to the next phase.
			d, err := e.engine.Resume(t.Context(), tenant, d.ID, "user:bob")
			must(t, err)
			if d.Phase != 1 || d.State != steward.DeploymentRunning || d.Evidence == nil {
				t.Fatalf("resumed: phase %d %s", d.Phase, d.State)
			}
		})
	}
}

// TestApprovals: the built-in policy (more than N devices, production
// devices, emergencies) holds a deployment for a second operator; the
// creator cannot approve their own.
func TestApprovals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		devices   int
		prod      bool
		emergency bool
		want      steward.DeploymentState
		why       string
	}{
		{"small", 3, false, false, steward.DeploymentScheduled, ""},
		{"too many", 6, false, false, steward.DeploymentAwaitingApproval, "6 devices, more than 5"},
		{"production", 2, true, false, steward.DeploymentAwaitingApproval, "1 production devices"},
		{"emergency", 1, false, true, steward.DeploymentAwaitingApproval, "emergency"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.devices, func(c *Config) { c.Policy.MaxDevices = 5 })
			if tc.prod {
				e.addDevice("d-prod", "berlin", map[string]string{"environment": "production"})
			}
			d := e.create(steward.DeploymentSpec{Emergency: tc.emergency})
			e.wantState(d, tc.want)
			if !strings.Contains(d.StateReason, tc.why) {
				t.Fatalf("reason %q, want %q", d.StateReason, tc.why)
			}
			if tc.want == steward.DeploymentScheduled {
				_, err := e.engine.Approve(t.Context(), tenant, d.ID, "user:bob", "")
				if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
					t.Fatalf("approving what needs no approval: %v", err)
				}
				return
			}
			d = e.tick(d.ID)
			e.wantState(d, steward.DeploymentAwaitingApproval) // never starts unapproved
			_, err := e.engine.Approve(t.Context(), tenant, d.ID, "user:alice", "my own")
			if steward.ErrorCode(err) != steward.CodePermissionDenied {
				t.Fatalf("the creator approved: %v", err)
			}
			e.wantState(e.get(d.ID), steward.DeploymentAwaitingApproval)
			d, err = e.engine.Approve(t.Context(), tenant, d.ID, "user:bob", "looks right")
			must(t, err)
			e.wantState(d, steward.DeploymentScheduled)
			if d.ApprovedBy != "user:bob" {
				t.Fatalf("approved by %q", d.ApprovedBy)
			}
			d = e.tick(d.ID)
			e.wantState(d, steward.DeploymentRunning)
			acts := e.audit.actions()
			if !slices.Contains(acts, "deployment.approve/denied") || !slices.Contains(acts, "deployment.approve/success") {
				t.Fatalf("audit %v", acts)
			}
			if tc.emergency {
				e.audit.mu.Lock()
				found := false
				for _, r := range e.audit.records {
					found = found || r.Action == "deployment.approve" && r.Outcome == steward.AuditSuccess && strings.Contains(r.Detail, "emergency")
				}
				e.audit.mu.Unlock()
				if !found {
					t.Fatal("the emergency approval is not recorded as such")
				}
			}
		})
	}
}

// approvalsStub is a minimal steward.Approvals over a map (the approvals
// service lives in its own package, which this one does not depend on):
// enough to show that the engine defers to the interface when one is
// wired, here with two approvers required.
type approvalsStub struct {
	mu   sync.Mutex
	reqs map[string]steward.ApprovalRequest
}

func (a *approvalsStub) Required(context.Context, string, string, string, map[string]string) (int, string, error) {
	return 2, "two approvers for every deployment", nil
}

func (a *approvalsStub) Request(_ context.Context, r steward.ApprovalRequest) (steward.ApprovalRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r.ID, r.State = fmt.Sprintf("ap-%d", len(a.reqs)+1), steward.ApprovalPending
	a.reqs[r.ID] = r
	return r, nil
}

func (a *approvalsStub) Decide(_ context.Context, _, id string, d steward.Decision) (steward.ApprovalRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	r := a.reqs[id]
	if d.Approver == r.Requester {
		return r, steward.Errorf(steward.CodePermissionDenied, "own request")
	}
	r.Decisions = append(r.Decisions, d)
	if len(r.Decisions) >= r.Approvals {
		r.State = steward.ApprovalApproved
	}
	a.reqs[id] = r
	return r, nil
}

func (a *approvalsStub) Get(_ context.Context, _, id string) (steward.ApprovalRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.reqs[id], nil
}

func TestApprovalsService(t *testing.T) {
	t.Parallel()
	ap := &approvalsStub{reqs: map[string]steward.ApprovalRequest{}}
	e := newEnv(t, 2, func(c *Config) { c.Approvals = ap })
	d := e.create(steward.DeploymentSpec{})
	e.wantState(d, steward.DeploymentAwaitingApproval)
	if d.ApprovalID == "" || ap.reqs[d.ApprovalID].Action != "deployment.start" || ap.reqs[d.ApprovalID].Requester != "user:alice" {
		t.Fatalf("request %+v", ap.reqs[d.ApprovalID])
	}
	d, err := e.engine.Approve(t.Context(), tenant, d.ID, "user:bob", "")
	must(t, err)
	e.wantState(d, steward.DeploymentAwaitingApproval) // one of two
	d, err = e.engine.Approve(t.Context(), tenant, d.ID, "user:carol", "")
	must(t, err)
	e.wantState(d, steward.DeploymentScheduled)
	if d.ApprovedBy != "user:carol" {
		t.Fatalf("approved by %q", d.ApprovedBy)
	}

	// Decided elsewhere (the approvals API): a rejection aborts it, and
	// hearing of it twice changes nothing more.
	d2 := e.create(steward.DeploymentSpec{})
	r := ap.reqs[d2.ApprovalID]
	r.State = steward.ApprovalRejected
	r.Decisions = []steward.Decision{{Approver: "user:bob", Comment: "not this week"}}
	must(t, e.engine.ApprovalDecided(t.Context(), r))
	must(t, e.engine.ApprovalDecided(t.Context(), r))
	d2 = e.get(d2.ID)
	if d2.State != steward.DeploymentAborted || d2.StateReason != "approval rejected" {
		t.Fatalf("rejected: %s %q", d2.State, d2.StateReason)
	}
}
