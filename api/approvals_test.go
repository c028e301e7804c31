package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/approvals"
)

// withApprovals gives the env's API the approval service over its store.
func withApprovals(t *testing.T, e *testEnv) *approvals.Service {
	t.Helper()
	svc := approvals.New(approvals.Config{Store: e.store})
	e.api.cfg.Approvals = svc
	return svc
}

// roleToken makes a token of a built-in role in a tenant.
func (e *testEnv) roleToken(t *testing.T, tenantID string, role steward.Role) (secret, actor string) {
	t.Helper()
	secret, hash, err := GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	tok := steward.APIToken{ID: newID("t-"), TenantID: tenantID, Name: string(role), Role: role, Hash: hash, CreatedAt: e.api.clock.Now()}
	if err := e.store.CreateToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	return secret, "token:" + tok.ID
}

func TestApprovalsAPI(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := withApprovals(t, e)
	ctx := context.Background()
	owner, ownerActor := e.roleToken(t, steward.DefaultTenant, steward.RoleOwner)
	approver, _ := e.roleToken(t, steward.DefaultTenant, steward.RoleApprover)
	viewer, _ := e.roleToken(t, steward.DefaultTenant, steward.RoleViewer)

	// Policies: the approver role may read, not write.
	body := ApprovalPolicyRequest{Name: "big rollouts", Action: "deployment.*", Approvals: 2,
		Conditions: []steward.ApprovalCondition{{Attribute: "device_count", Op: ">", Value: "100"}}}
	e.must(t, http.StatusForbidden, "POST", "/api/v1/approval-policies", approver, body)
	var pol steward.ApprovalPolicy
	r := e.must(t, http.StatusCreated, "POST", "/api/v1/approval-policies", owner, body)
	r.decode(t, &pol)
	if r.header.Get("Location") != "/api/v1/approval-policies/"+pol.ID || pol.Approvals != 2 || pol.CreatedBy != ownerActor {
		t.Fatalf("created policy %+v, Location %q", pol, r.header.Get("Location"))
	}
	var pols List[steward.ApprovalPolicy]
	e.must(t, http.StatusOK, "GET", "/api/v1/approval-policies", approver, nil).decode(t, &pols)
	if len(pols.Items) != 1 || pols.Items[0].ID != pol.ID {
		t.Fatalf("policies = %+v", pols)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/approval-policies/"+pol.ID, viewer, nil)

	t.Run("bad policies write nothing", func(t *testing.T) {
		for name, b := range map[string]any{
			"no approvals":   ApprovalPolicyRequest{Name: "x", Action: "deployment.*"},
			"bad action":     ApprovalPolicyRequest{Name: "x", Action: "DEPLOY", Approvals: 1},
			"bad condition":  ApprovalPolicyRequest{Name: "x", Action: "*", Approvals: 1, Conditions: []steward.ApprovalCondition{{Attribute: "n", Op: ">", Value: "x"}}},
			"unknown field":  map[string]any{"name": "x", "action": "*", "approvals": 1, "approver": "me"},
			"no name":        ApprovalPolicyRequest{Action: "*", Approvals: 1},
			"duplicate name": body,
		} {
			t.Run(name, func(t *testing.T) {
				r := e.call(t, "POST", "/api/v1/approval-policies", owner, b)
				if r.status != http.StatusBadRequest && r.status != http.StatusConflict {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				r.problem(t)
			})
		}
		ps, err := svc.ListPolicies(ctx, steward.DefaultTenant)
		if err != nil || len(ps) != 1 {
			t.Fatalf("refused policies were written: %v, %v", ps, err)
		}
	})

	// A request opened by a service on the owner's behalf.
	n, _, err := svc.Required(ctx, steward.DefaultTenant, "deployment.start", "deployment:d1", map[string]string{"device_count": "500"})
	if err != nil || n != 2 {
		t.Fatalf("Required = %d, %v", n, err)
	}
	req, err := svc.Request(ctx, steward.ApprovalRequest{TenantID: steward.DefaultTenant, Action: "deployment.start", Target: "deployment:d1",
		Requester: ownerActor, Attributes: map[string]string{"device_count": "500"}})
	if err != nil {
		t.Fatal(err)
	}
	var list List[steward.ApprovalRequest]
	e.must(t, http.StatusOK, "GET", "/api/v1/approvals?state=pending", viewer, nil).decode(t, &list)
	if len(list.Items) != 1 || list.Items[0].ID != req.ID {
		t.Fatalf("pending = %+v", list)
	}
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/approvals?state=maybe", viewer, nil).problem(t)
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/approvals?stat=pending", viewer, nil).problem(t)

	path := "/api/v1/approvals/" + req.ID
	// A viewer cannot decide; the requester cannot decide their own.
	e.must(t, http.StatusForbidden, "POST", path+"/approve", viewer, nil).problem(t)
	p := e.must(t, http.StatusForbidden, "POST", path+"/approve", owner, nil).problem(t)
	if !strings.Contains(p.Detail, "requester") {
		t.Fatalf("requester's approval refused with %q", p.Detail)
	}
	var got steward.ApprovalRequest
	e.must(t, http.StatusOK, "POST", path+"/approve", approver, DecisionRequest{Comment: "looks fine"}).decode(t, &got)
	if got.State != steward.ApprovalPending || len(got.Decisions) != 1 || got.Decisions[0].Comment != "looks fine" {
		t.Fatalf("after one approval: %+v", got)
	}
	e.must(t, http.StatusForbidden, "POST", path+"/approve", approver, nil).problem(t) // twice
	e.must(t, http.StatusOK, "POST", path+"/approve", e.system, nil).decode(t, &got)
	if got.State != steward.ApprovalApproved {
		t.Fatalf("after two approvals: %+v", got)
	}
	e.must(t, http.StatusConflict, "POST", path+"/reject", anotherApprover(t, e), nil).problem(t)
	e.must(t, http.StatusOK, "GET", path, viewer, nil).decode(t, &got)
	if got.State != steward.ApprovalApproved || len(got.Decisions) != 2 {
		t.Fatalf("GET after approval: %+v", got)
	}
	e.must(t, http.StatusNotFound, "GET", "/api/v1/approvals/ar-none", viewer, nil).problem(t)
	e.must(t, http.StatusBadRequest, "POST", path+"/approve", approver, map[string]any{"comment": 3}).problem(t)

	e.must(t, http.StatusForbidden, "DELETE", "/api/v1/approval-policies/"+pol.ID, approver, nil).problem(t)
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/approval-policies/"+pol.ID, owner, nil)
	e.must(t, http.StatusNotFound, "DELETE", "/api/v1/approval-policies/"+pol.ID, owner, nil).problem(t)
}

// anotherApprover is another approver of the default tenant.
func anotherApprover(t *testing.T, e *testEnv) string {
	s, _ := e.roleToken(t, steward.DefaultTenant, steward.RoleApprover)
	return s
}

func TestApprovalsAPIDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.must(t, http.StatusServiceUnavailable, "GET", "/api/v1/approvals", e.system, nil).problem(t)
	e.must(t, http.StatusServiceUnavailable, "POST", "/api/v1/approvals/x/approve", e.system, nil).problem(t)
}
