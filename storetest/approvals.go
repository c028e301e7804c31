package storetest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func approvalPolicy(tenant, id, name string) steward.ApprovalPolicy {
	return steward.ApprovalPolicy{
		ID: id, TenantID: tenant, Name: name, Action: "deployment.*",
		Conditions: []steward.ApprovalCondition{
			{Attribute: "device_count", Op: ">", Value: "100"},
			{Attribute: "label.environment", Op: "=", Value: "production"},
		},
		Approvals: 2, ApproverPermission: steward.PermDeploymentsApprove, ApproverRole: steward.RoleApprover,
		Expiry: steward.Duration(2 * time.Hour), CreatedBy: "token:t1", CreatedAt: t0,
	}
}

func approvalRequest(tenant, id string, created time.Time) steward.ApprovalRequest {
	return steward.ApprovalRequest{
		ID: id, TenantID: tenant, Action: "deployment.start", Target: "deployment:dep-1",
		Payload:    json.RawMessage(`{"z": 1,  "a": [true, null]}`), // kept as written
		Reason:     "roll out 1.3.0",
		Requester:  "token:alice",
		Attributes: map[string]string{"device_count": "500", "emergency": "false"},
		Approvals:  2, PolicyID: "ap-1", ApproverPermission: steward.PermDeploymentsApprove, ApproverRole: steward.RoleApprover,
		State: steward.ApprovalPending, CreatedAt: created, ExpiresAt: created.Add(time.Hour),
	}
}

// normApproval is a request as a store returns it.
func normApproval(r steward.ApprovalRequest) steward.ApprovalRequest {
	r.CreatedAt, r.ExpiresAt = stored(r.CreatedAt), stored(r.ExpiresAt)
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	if r.Decisions == nil {
		r.Decisions = []steward.Decision{}
	}
	for i := range r.Decisions {
		r.Decisions[i].At = stored(r.Decisions[i].At)
	}
	return r
}

func sameApproval(t *testing.T, got, want steward.ApprovalRequest) {
	t.Helper()
	want = normApproval(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("approval request differs:\n got %+v\nwant %+v", got, want)
	}
}

func testApprovalPolicies(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	p1 := approvalPolicy(tenantA, "ap-1", "prod rollouts")
	p2 := approvalPolicy(tenantA, "ap-2", "decommission")
	p2.Action, p2.Conditions, p2.Approvals, p2.ApproverPermission, p2.ApproverRole, p2.Expiry = "device.decommission", nil, 1, "", "", 0
	must(t, s.CreateApprovalPolicy(c, p1))
	must(t, s.CreateApprovalPolicy(c, p2))

	got, err := s.GetApprovalPolicy(c, tenantA, "ap-1")
	must(t, err)
	want := p1
	want.CreatedAt = stored(t0)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("GetApprovalPolicy = %+v, want %+v", got, want)
	}
	list, err := s.ListApprovalPolicies(c, tenantA)
	must(t, err)
	if len(list) != 2 || list[0].ID != "ap-2" || list[1].ID != "ap-1" {
		t.Fatalf("ListApprovalPolicies = %+v, want ap-2 (decommission) then ap-1 (by name)", list)
	}
	if list[0].Conditions == nil || len(list[0].Conditions) != 0 {
		t.Fatalf("a policy without conditions reads back %#v, want an empty list", list[0].Conditions)
	}

	t.Run("refused", func(t *testing.T) {
		dup := approvalPolicy(tenantA, "ap-3", "prod rollouts")
		wantCode(t, s.CreateApprovalPolicy(c, dup), steward.CodeConflict)
		for name, mod := range map[string]func(p *steward.ApprovalPolicy){
			"no name":         func(p *steward.ApprovalPolicy) { p.Name = "" },
			"bad action":      func(p *steward.ApprovalPolicy) { p.Action = "Deploy ment" },
			"zero approvals":  func(p *steward.ApprovalPolicy) { p.Approvals = 0 },
			"many approvals":  func(p *steward.ApprovalPolicy) { p.Approvals = steward.MaxApprovers + 1 },
			"bad permission":  func(p *steward.ApprovalPolicy) { p.ApproverPermission = "root:all" },
			"bad role":        func(p *steward.ApprovalPolicy) { p.ApproverRole = "wizard" },
			"short expiry":    func(p *steward.ApprovalPolicy) { p.Expiry = steward.Duration(time.Second) },
			"bad operator":    func(p *steward.ApprovalPolicy) { p.Conditions[0].Op = "~" },
			"ordering a word": func(p *steward.ApprovalPolicy) { p.Conditions[0].Value = "many" },
			"bad attribute":   func(p *steward.ApprovalPolicy) { p.Conditions[0].Attribute = "" },
		} {
			p := approvalPolicy(tenantA, "ap-bad", "bad "+name)
			mod(&p)
			wantCode(t, s.CreateApprovalPolicy(c, p), steward.CodeInvalid)
		}
		wantCode(t, s.CreateApprovalPolicy(c, approvalPolicy("no-such-tenant", "ap-4", "x")), steward.CodeNotFound)
		list, err := s.ListApprovalPolicies(c, tenantA)
		must(t, err)
		if len(list) != 2 {
			t.Fatalf("refused policies were written: %+v", list)
		}
	})

	t.Run("isolation", func(t *testing.T) {
		_, err := s.GetApprovalPolicy(c, tenantB, "ap-1")
		wantCode(t, err, steward.CodeNotFound)
		wantCode(t, s.DeleteApprovalPolicy(c, tenantB, "ap-1"), steward.CodeNotFound)
		list, err := s.ListApprovalPolicies(c, tenantB)
		must(t, err)
		if len(list) != 0 {
			t.Fatalf("tenant B lists tenant A's policies: %+v", list)
		}
		// The same name in another tenant is fine.
		must(t, s.CreateApprovalPolicy(c, approvalPolicy(tenantB, "ap-b1", "prod rollouts")))
	})

	must(t, s.DeleteApprovalPolicy(c, tenantA, "ap-1"))
	wantCode(t, s.DeleteApprovalPolicy(c, tenantA, "ap-1"), steward.CodeNotFound)
	_, err = s.GetApprovalPolicy(c, tenantA, "ap-1")
	wantCode(t, err, steward.CodeNotFound)
}

func testApprovalRequests(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	r1 := approvalRequest(tenantA, "ar-1", t0)
	r2 := approvalRequest(tenantA, "ar-2", at(time.Minute))
	r2.Action, r2.Payload, r2.Attributes, r2.PolicyID, r2.ApproverPermission, r2.ApproverRole = "device.decommission", nil, nil, "", "", ""
	must(t, s.CreateApprovalRequest(c, r1))
	must(t, s.CreateApprovalRequest(c, r2))

	got, err := s.GetApprovalRequest(c, tenantA, "ar-1")
	must(t, err)
	sameApproval(t, got, r1)
	if string(got.Payload) != string(r1.Payload) {
		t.Fatalf("payload = %s, want %s byte for byte", got.Payload, r1.Payload)
	}
	got, err = s.GetApprovalRequest(c, tenantA, "ar-2")
	must(t, err)
	sameApproval(t, got, r2)

	list, err := s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{})
	must(t, err)
	if len(list) != 2 || list[0].ID != "ar-2" || list[1].ID != "ar-1" {
		t.Fatalf("ListApprovalRequests = %v, want ar-2 then ar-1 (newest first)", list)
	}
	list, err = s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{Action: "deployment.start"})
	must(t, err)
	if len(list) != 1 || list[0].ID != "ar-1" {
		t.Fatalf("filtered by action: %v", list)
	}
	list, err = s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{Limit: 1})
	must(t, err)
	if len(list) != 1 || list[0].ID != "ar-2" {
		t.Fatalf("limit 1: %v", list)
	}

	t.Run("update", func(t *testing.T) {
		d := steward.Decision{Approver: "token:bob", Approve: true, Comment: "ok", At: at(2 * time.Minute)}
		up, err := s.UpdateApprovalRequest(c, tenantA, "ar-1", func(r *steward.ApprovalRequest) error {
			r.Decisions = append(r.Decisions, d)
			r.State = steward.ApprovalApproved
			return nil
		})
		must(t, err)
		want := r1
		want.Decisions = []steward.Decision{d}
		want.State = steward.ApprovalApproved
		sameApproval(t, up, want)
		got, err := s.GetApprovalRequest(c, tenantA, "ar-1")
		must(t, err)
		sameApproval(t, got, want)

		// fn fails: nothing is written.
		_, err = s.UpdateApprovalRequest(c, tenantA, "ar-1", func(r *steward.ApprovalRequest) error {
			r.State = steward.ApprovalRejected
			r.Decisions = nil
			return steward.Errorf(steward.CodeConflict, "no longer pending")
		})
		wantCode(t, err, steward.CodeConflict)
		_, err = s.UpdateApprovalRequest(c, tenantA, "ar-1", func(r *steward.ApprovalRequest) error {
			r.State = "maybe"
			return nil
		})
		wantCode(t, err, steward.CodeInvalid)
		got, err = s.GetApprovalRequest(c, tenantA, "ar-1")
		must(t, err)
		sameApproval(t, got, want)
	})

	t.Run("refused", func(t *testing.T) {
		for name, mod := range map[string]func(r *steward.ApprovalRequest){
			"no id":         func(r *steward.ApprovalRequest) { r.ID = "" },
			"no action":     func(r *steward.ApprovalRequest) { r.Action = "" },
			"no target":     func(r *steward.ApprovalRequest) { r.Target = "" },
			"no requester":  func(r *steward.ApprovalRequest) { r.Requester = "" },
			"not pending":   func(r *steward.ApprovalRequest) { r.State = steward.ApprovalApproved },
			"no approvals":  func(r *steward.ApprovalRequest) { r.Approvals = 0 },
			"decided":       func(r *steward.ApprovalRequest) { r.Decisions = []steward.Decision{{Approver: "x", Approve: true}} },
			"no expiry":     func(r *steward.ApprovalRequest) { r.ExpiresAt = time.Time{} },
			"large payload": func(r *steward.ApprovalRequest) { r.Payload = make(json.RawMessage, steward.MaxApprovalPayload+1) },
		} {
			r := approvalRequest(tenantA, "ar-bad", t0)
			mod(&r)
			if err := s.CreateApprovalRequest(c, r); steward.ErrorCode(err) != steward.CodeInvalid {
				t.Errorf("%s: got %v, want invalid", name, err)
			}
		}
		wantCode(t, s.CreateApprovalRequest(c, approvalRequest(tenantA, "ar-1", t0)), steward.CodeConflict)
		wantCode(t, s.CreateApprovalRequest(c, approvalRequest("no-such-tenant", "ar-9", t0)), steward.CodeNotFound)
		list, err := s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{})
		must(t, err)
		if len(list) != 2 {
			t.Fatalf("refused requests were written: %v", list)
		}
		_, err = s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{State: "maybe"})
		wantCode(t, err, steward.CodeInvalid)
		_, err = s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{Limit: 1001})
		wantCode(t, err, steward.CodeInvalid)
	})

	t.Run("isolation", func(t *testing.T) {
		_, err := s.GetApprovalRequest(c, tenantB, "ar-2")
		wantCode(t, err, steward.CodeNotFound)
		called := false
		_, err = s.UpdateApprovalRequest(c, tenantB, "ar-2", func(r *steward.ApprovalRequest) error {
			called = true
			r.State = steward.ApprovalApproved
			return nil
		})
		wantCode(t, err, steward.CodeNotFound)
		if called {
			t.Fatal("UpdateApprovalRequest handed tenant B's function tenant A's request")
		}
		list, err := s.ListApprovalRequests(c, tenantB, steward.ApprovalFilter{})
		must(t, err)
		if len(list) != 0 {
			t.Fatalf("tenant B lists tenant A's requests: %v", list)
		}
		n, err := s.ExpireApprovalRequests(c, tenantB, at(100*time.Hour))
		must(t, err)
		got, err := s.GetApprovalRequest(c, tenantA, "ar-2")
		must(t, err)
		if n != 0 || got.State != steward.ApprovalPending {
			t.Fatalf("tenant B's expiry touched tenant A's request: n=%d state=%s", n, got.State)
		}
	})

	t.Run("expire", func(t *testing.T) {
		rb := approvalRequest(tenantB, "ar-b", t0)
		must(t, s.CreateApprovalRequest(c, rb))
		// ar-2 expires at t0+61m; at t0+60m nothing is due.
		n, err := s.ExpireApprovalRequests(c, "", at(time.Hour))
		must(t, err)
		if n != 1 { // ar-b (t0+1h); ar-1 is approved, so never expires
			t.Fatalf("expired %d at t0+1h, want 1 (tenant B's)", n)
		}
		n, err = s.ExpireApprovalRequests(c, tenantA, at(61*time.Minute))
		must(t, err)
		if n != 1 {
			t.Fatalf("expired %d of tenant A at t0+61m, want 1", n)
		}
		for _, id := range []struct{ tenant, id, state string }{
			{tenantA, "ar-1", steward.ApprovalApproved}, {tenantA, "ar-2", steward.ApprovalExpired}, {tenantB, "ar-b", steward.ApprovalExpired},
		} {
			got, err := s.GetApprovalRequest(c, id.tenant, id.id)
			must(t, err)
			if got.State != id.state {
				t.Errorf("%s is %s, want %s", id.id, got.State, id.state)
			}
		}
		list, err := s.ListApprovalRequests(c, tenantA, steward.ApprovalFilter{State: steward.ApprovalExpired})
		must(t, err)
		if len(list) != 1 || list[0].ID != "ar-2" {
			t.Fatalf("expired requests of tenant A: %v", list)
		}
	})
}

// testApprovalRequestsConcurrent has many approvers decide one request at
// once: every decision is kept.
func testApprovalRequestsConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateApprovalRequest(c, approvalRequest(tenantA, "ar-1", t0)))
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateApprovalRequest(c, tenantA, "ar-1", func(r *steward.ApprovalRequest) error {
				r.Decisions = append(r.Decisions, steward.Decision{Approver: fmt.Sprintf("token:%d", i), Approve: true, At: t0})
				return nil
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	got, err := s.GetApprovalRequest(c, tenantA, "ar-1")
	must(t, err)
	if len(got.Decisions) != n {
		t.Fatalf("%d decisions kept of %d made at once", len(got.Decisions), n)
	}
}
