package approvals

import (
	"context"
	"encoding/json"
	"github.com/steward-iot/steward/internal/testclock"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlite"
)

const (
	tenantA = "tenant-a"
	tenantB = "tenant-b"
)

// auditLog keeps what the service records.
type auditLog struct {
	mu   sync.Mutex
	recs []steward.AuditRecord
}

func (l *auditLog) Record(_ context.Context, r steward.AuditRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}

func (l *auditLog) actions() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, r := range l.recs {
		out = append(out, r.Action+"/"+r.Outcome)
	}
	return out
}

type env struct {
	store   steward.Store
	clock   *testclock.Clock
	audit   *auditLog
	svc     *Service
	decided []steward.ApprovalRequest
}

// newEnv is a service over a real SQLite store with tenants A and B and
// tokens of every built-in role in A ("token:<role>") and one admin in B.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	e := &env{store: store, clock: testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)), audit: &auditLog{}}
	for _, id := range []string{tenantA, tenantB} {
		if err := store.CreateTenant(ctx, steward.Tenant{ID: id, Name: id, CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range steward.BuiltinRoles() {
		tok := steward.APIToken{ID: string(r), TenantID: tenantA, Name: string(r), Role: r, Hash: "h-" + string(r), CreatedAt: e.clock.Now()}
		if err := store.CreateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.CreateToken(ctx, steward.APIToken{ID: "b-admin", TenantID: tenantB, Name: "b", Role: steward.RoleAdmin, Hash: "h-b", CreatedAt: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	e.svc = New(Config{Store: store, Clock: e.clock, Auditor: e.audit,
		OnDecided: func(_ context.Context, r steward.ApprovalRequest) { e.decided = append(e.decided, r) }})
	return e
}

func (e *env) policy(t *testing.T, p steward.ApprovalPolicy) steward.ApprovalPolicy {
	t.Helper()
	if p.TenantID == "" {
		p.TenantID = tenantA
	}
	got, err := e.svc.CreatePolicy(context.Background(), p, "token:owner")
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (e *env) request(t *testing.T, action string, attrs map[string]string) steward.ApprovalRequest {
	t.Helper()
	r, err := e.svc.Request(context.Background(), steward.ApprovalRequest{TenantID: tenantA, Action: action,
		Target: "deployment:dep-1", Requester: "token:release-manager", Attributes: attrs, Payload: json.RawMessage(`{"x":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func wantCode(t *testing.T, err error, code steward.Code) {
	t.Helper()
	if got := steward.ErrorCode(err); got != code {
		t.Fatalf("got %v (%s), want %s", err, got, code)
	}
}

func TestRequired(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.policy(t, steward.ApprovalPolicy{Name: "big prod rollouts", Action: "deployment.*", Approvals: 2,
		Conditions: []steward.ApprovalCondition{{Attribute: "device_count", Op: ">", Value: "100"}, {Attribute: "label.environment", Op: "=", Value: "production"}}})
	e.policy(t, steward.ApprovalPolicy{Name: "emergencies", Action: "deployment.start", Approvals: 1,
		Conditions: []steward.ApprovalCondition{{Attribute: "emergency", Op: "=", Value: "true"}}})
	e.policy(t, steward.ApprovalPolicy{Name: "decommission", Action: "device.decommission", Approvals: 1})
	e.policy(t, steward.ApprovalPolicy{TenantID: tenantB, Name: "everything in B", Action: "*", Approvals: 3})

	for _, tc := range []struct {
		name, action string
		attrs        map[string]string
		want         int
	}{
		{"small rollout", "deployment.start", map[string]string{"device_count": "50", "label.environment": "production", "emergency": "false"}, 0},
		{"big staging rollout", "deployment.start", map[string]string{"device_count": "500", "label.environment": "staging"}, 0},
		{"big prod rollout", "deployment.start", map[string]string{"device_count": "500", "label.environment": "production"}, 2},
		{"big prod rollback", "deployment.rollback", map[string]string{"device_count": "101", "label.environment": "production"}, 2},
		{"emergency", "deployment.start", map[string]string{"device_count": "5", "emergency": "true"}, 1},
		{"emergency and big: the strictest", "deployment.start", map[string]string{"device_count": "500", "label.environment": "production", "emergency": "true"}, 2},
		{"count not reported", "deployment.start", map[string]string{"label.environment": "production"}, 0},
		{"count not a number", "deployment.start", map[string]string{"device_count": "lots", "label.environment": "production"}, 0},
		{"decommission", "device.decommission", nil, 1},
		{"prefix is not a match", "deploymentx.start", map[string]string{"device_count": "500", "label.environment": "production"}, 0},
		{"unrelated", "device.quarantine", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, why, err := e.svc.Required(ctx, tenantA, tc.action, "x:1", tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Fatalf("Required = %d (%s), want %d", n, why, tc.want)
			}
			if n > 0 && why == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

func TestTwoPersonRule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.policy(t, steward.ApprovalPolicy{Name: "rollouts", Action: "deployment.*", Approvals: 2,
		ApproverPermission: steward.PermDeploymentsApprove, Expiry: steward.Duration(time.Hour)})
	r := e.request(t, "deployment.start", map[string]string{"device_count": "10"})
	if r.State != steward.ApprovalPending || r.Approvals != 2 || r.PolicyID != p.ID || r.ApproverPermission != steward.PermDeploymentsApprove ||
		!r.ExpiresAt.Equal(e.clock.Now().Add(time.Hour)) || len(r.Decisions) != 0 || string(r.Payload) != `{"x":1}` {
		t.Fatalf("new request = %+v", r)
	}

	decide := func(approver string, approve bool) (steward.ApprovalRequest, error) {
		return e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: approver, Approve: approve, Comment: "c"})
	}
	// The requester may not decide, approve or reject.
	_, err := decide("token:release-manager", true)
	wantCode(t, err, steward.CodePermissionDenied)
	_, err = decide("token:release-manager", false)
	wantCode(t, err, steward.CodePermissionDenied)
	// A viewer has no right to decide; an operator cannot approve deployments.
	_, err = decide("token:viewer", true)
	wantCode(t, err, steward.CodePermissionDenied)
	_, err = decide("token:operator", true)
	wantCode(t, err, steward.CodePermissionDenied)
	// Someone of another tenant, or unknown, is not an approver here.
	_, err = decide("token:b-admin", true)
	wantCode(t, err, steward.CodePermissionDenied)
	_, err = decide("token:nobody", true)
	wantCode(t, err, steward.CodePermissionDenied)
	got, err := e.svc.Get(ctx, tenantA, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.ApprovalPending || len(got.Decisions) != 0 {
		t.Fatalf("refused decisions changed the request: %+v", got)
	}

	got, err = decide("token:approver", true)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.ApprovalPending || len(got.Decisions) != 1 {
		t.Fatalf("after one approval: %+v", got)
	}
	// The same approver twice counts once: refused.
	_, err = decide("token:approver", true)
	wantCode(t, err, steward.CodePermissionDenied)
	got, err = decide("token:owner", true)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.ApprovalApproved || len(got.Decisions) != 2 {
		t.Fatalf("after two approvals: %+v", got)
	}
	if len(e.decided) != 1 || e.decided[0].ID != r.ID {
		t.Fatalf("OnDecided saw %v", e.decided)
	}
	// Decided: no more decisions.
	_, err = decide("token:admin", false)
	wantCode(t, err, steward.CodeConflict)

	acts := e.audit.actions()
	want := []string{"approval_policy.create/success", "approval.request/success"}
	for i, w := range want {
		if i >= len(acts) || acts[i] != w {
			t.Fatalf("audit = %v, want it to start with %v", acts, want)
		}
	}
	var denied, approved int
	for _, a := range acts {
		switch a {
		case "approval.approve/denied", "approval.reject/denied":
			denied++
		case "approval.approve/success":
			approved++
		}
	}
	if denied != 8 || approved != 2 {
		t.Fatalf("audit has %d denied and %d approved decisions, want 8 and 2: %v", denied, approved, acts)
	}
}

func TestReject(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.policy(t, steward.ApprovalPolicy{Name: "decommission", Action: "device.decommission", Approvals: 3})
	r := e.request(t, "device.decommission", nil)
	if _, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "token:approver", Approve: true}); err != nil {
		t.Fatal(err)
	}
	got, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "token:admin", Approve: false, Comment: "not this week"})
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.ApprovalRejected || len(got.Decisions) != 2 || got.Decisions[1].Comment != "not this week" {
		t.Fatalf("after a rejection: %+v", got)
	}
	_, err = e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "token:owner", Approve: true})
	wantCode(t, err, steward.CodeConflict)
}

func TestApproverRole(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.policy(t, steward.ApprovalPolicy{Name: "grants", Action: "role.grant", Approvals: 1, ApproverRole: steward.RoleOwner})
	r := e.request(t, "role.grant", nil)
	// An approver holds approvals:decide but not every permission of an owner.
	_, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "token:approver", Approve: true})
	wantCode(t, err, steward.CodePermissionDenied)
	// An admin holds every permission an owner does.
	got, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "token:admin", Approve: true})
	if err != nil || got.State != steward.ApprovalApproved {
		t.Fatalf("admin's approval: %+v, %v", got, err)
	}
}

func TestExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.policy(t, steward.ApprovalPolicy{Name: "rollouts", Action: "deployment.*", Approvals: 2, Expiry: steward.Duration(time.Hour)})
	r1 := e.request(t, "deployment.start", nil)
	if _, err := e.svc.Decide(ctx, tenantA, r1.ID, steward.Decision{Approver: "token:approver", Approve: true}); err != nil {
		t.Fatal(err)
	}
	r2 := e.request(t, "deployment.start", nil)
	r3 := e.request(t, "deployment.start", nil)

	e.clock.Add(time.Hour) // exactly at expiry: expired
	// The second approval comes too late: never approved.
	_, err := e.svc.Decide(ctx, tenantA, r1.ID, steward.Decision{Approver: "token:owner", Approve: true})
	wantCode(t, err, steward.CodeConflict)
	got, err := e.svc.Get(ctx, tenantA, r1.ID)
	if err != nil || got.State != steward.ApprovalExpired || len(got.Decisions) != 1 {
		t.Fatalf("late approval: %+v, %v", got, err)
	}
	// Read lazily: Get expires it.
	got, err = e.svc.Get(ctx, tenantA, r2.ID)
	if err != nil || got.State != steward.ApprovalExpired {
		t.Fatalf("Get of an expired request: %+v, %v", got, err)
	}
	stored, err := e.store.GetApprovalRequest(ctx, tenantA, r2.ID)
	if err != nil || stored.State != steward.ApprovalExpired {
		t.Fatalf("Get did not keep the expiry: %+v, %v", stored, err)
	}
	// The sweep expires the rest.
	n, err := e.svc.Sweep(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Sweep = %d, %v; want 1 (r3)", n, err)
	}
	got, _ = e.svc.Get(ctx, tenantA, r3.ID)
	if got.State != steward.ApprovalExpired {
		t.Fatalf("r3 is %s after the sweep", got.State)
	}
	list, err := e.svc.List(ctx, tenantA, steward.ApprovalFilter{State: steward.ApprovalPending})
	if err != nil || len(list) != 0 {
		t.Fatalf("pending after expiry: %v, %v", list, err)
	}
}

func TestRequestInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	base := steward.ApprovalRequest{TenantID: tenantA, Action: "device.decommission", Target: "device:d-1", Requester: "token:admin", Approvals: 1}
	for name, mod := range map[string]func(r *steward.ApprovalRequest){
		"no action":            func(r *steward.ApprovalRequest) { r.Action = "" },
		"no target":            func(r *steward.ApprovalRequest) { r.Target = "" },
		"no requester":         func(r *steward.ApprovalRequest) { r.Requester = "" },
		"no policy, no count":  func(r *steward.ApprovalRequest) { r.Approvals = 0 },
		"negative count":       func(r *steward.ApprovalRequest) { r.Approvals = -1 },
		"payload is not JSON":  func(r *steward.ApprovalRequest) { r.Payload = json.RawMessage(`{`) },
		"unknown tenant":       func(r *steward.ApprovalRequest) { r.TenantID = "nope" },
		"too many approvers":   func(r *steward.ApprovalRequest) { r.Approvals = steward.MaxApprovers + 1 },
		"reason over 1 KiB":    func(r *steward.ApprovalRequest) { r.Reason = string(make([]byte, 1025)) },
		"payload over 64 KiB":  func(r *steward.ApprovalRequest) { r.Payload = json.RawMessage(`"` + string(make([]byte, 70000)) + `"`) },
		"payload binary bytes": func(r *steward.ApprovalRequest) { r.Payload = json.RawMessage{0xff} },
	} {
		t.Run(name, func(t *testing.T) {
			r := base
			mod(&r)
			if _, err := e.svc.Request(ctx, r); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	list, err := e.store.ListApprovalRequests(ctx, tenantA, steward.ApprovalFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("refused requests were written: %v, %v", list, err)
	}
	// Without a policy an explicit count works and waits the default expiry.
	r, err := e.svc.Request(ctx, base)
	if err != nil || r.Approvals != 1 || r.PolicyID != "" || !r.ExpiresAt.Equal(e.clock.Now().Add(steward.DefaultApprovalExpiry)) {
		t.Fatalf("explicit request: %+v, %v", r, err)
	}
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	p := e.policy(t, steward.ApprovalPolicy{Name: "rollouts", Action: "deployment.*", Approvals: 1})
	r := e.request(t, "deployment.start", nil)
	// Tenant B's admin, deciding in B's name with A's request ID.
	_, err := e.svc.Decide(ctx, tenantB, r.ID, steward.Decision{Approver: "token:b-admin", Approve: true})
	wantCode(t, err, steward.CodeNotFound)
	_, err = e.svc.Get(ctx, tenantB, r.ID)
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, e.svc.DeletePolicy(ctx, tenantB, p.ID, "token:b-admin"), steward.CodeNotFound)
	// B's policies do not apply to A.
	n, _, err := e.svc.Required(ctx, tenantB, "deployment.start", "x", nil)
	if err != nil || n != 0 {
		t.Fatalf("tenant A's policy applies in B: %d, %v", n, err)
	}
	got, err := e.svc.Get(ctx, tenantA, r.ID)
	if err != nil || got.State != steward.ApprovalPending {
		t.Fatalf("A's request after B's attempts: %+v, %v", got, err)
	}
}

func TestConcurrentApprovals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.policy(t, steward.ApprovalPolicy{Name: "rollouts", Action: "deployment.*", Approvals: 2})
	r := e.request(t, "deployment.start", nil)
	var wg sync.WaitGroup
	for _, who := range []string{"token:approver", "token:owner"} {
		wg.Go(func() {
			if _, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: who, Approve: true}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	got, err := e.svc.Get(ctx, tenantA, r.ID)
	if err != nil || got.State != steward.ApprovalApproved || len(got.Decisions) != 2 {
		t.Fatalf("two approvals at once: %+v, %v", got, err)
	}
}

func TestOperatorApprovers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	now := e.clock.Now()
	if err := e.store.CreateCustomRole(ctx, steward.CustomRole{TenantID: tenantA, Name: "change-board",
		Permissions: []steward.Permission{steward.PermApprovalsDecide, steward.PermApprovalsRead}, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []steward.User{
		{ID: "u-board", TenantID: tenantA, Email: "board@example.com", Name: "Board", Role: "change-board", CreatedAt: now, UpdatedAt: now},
		{ID: "u-viewer", TenantID: tenantA, Email: "viewer@example.com", Name: "Viewer", Role: steward.RoleViewer, CreatedAt: now, UpdatedAt: now},
		{ID: "u-gone", TenantID: tenantA, Email: "gone@example.com", Name: "Gone", Role: steward.RoleApprover, Disabled: true, CreatedAt: now, UpdatedAt: now},
	} {
		if err := e.store.CreateUser(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	e.policy(t, steward.ApprovalPolicy{Name: "decommission", Action: "device.decommission", Approvals: 1})
	r := e.request(t, "device.decommission", nil)
	for _, who := range []string{"user:u-viewer", "user:u-gone", "user:u-none"} {
		_, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: who, Approve: true})
		wantCode(t, err, steward.CodePermissionDenied)
	}
	got, err := e.svc.Decide(ctx, tenantA, r.ID, steward.Decision{Approver: "user:u-board", Approve: true})
	if err != nil || got.State != steward.ApprovalApproved {
		t.Fatalf("a user with a custom role holding approvals:decide: %+v, %v", got, err)
	}
}
