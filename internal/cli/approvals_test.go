package cli_test

import (
	"context"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/approvals"
	"github.com/steward-iot/steward/internal/cli"
)

func TestApprovalCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	out := r.ok(t, "approval-policies", "create", "big-rollouts", "--action", "deployment.*", "--approvals", "1",
		"--when", "device_count>100", "--when", "label.environment=production", "--expiry", "2h")
	for _, want := range []string{"big-rollouts", "device_count>100 and label.environment=production", "2h0m0s"} {
		if !strings.Contains(out, want) {
			t.Fatalf("create: %q lacks %q", out, want)
		}
	}
	var ps []steward.ApprovalPolicy
	r.okJSON(t, &ps, "approval-policies", "list")
	if len(ps) != 1 || ps[0].Approvals != 1 || len(ps[0].Conditions) != 2 || ps[0].Conditions[0].Op != ">" {
		t.Fatalf("policies: %+v", ps)
	}
	for _, bad := range [][]string{
		{"approval-policies", "create", "x", "--action", "*", "--approvals", "1", "--when", "device_count"},
		{"approval-policies", "create", "x", "--action", "*", "--approvals", "1", "--when", "!x"},
	} {
		if res := r.run(t, bad...); res.code != cli.ExitUsage {
			t.Fatalf("%v: %+v", bad, res)
		}
	}
	if res := r.run(t, "approval-policies", "create", "x", "--action", "*", "--approvals", "0"); res.code != cli.ExitError || !strings.Contains(res.stderr, "approvals must be") {
		t.Fatalf("zero approvals: %+v", res)
	}

	// Requests come from services; two of them, by someone else.
	svc := approvals.New(approvals.Config{Store: env.Store})
	ctx := context.Background()
	var ids []string
	for range 2 {
		req, err := svc.Request(ctx, steward.ApprovalRequest{TenantID: steward.DefaultTenant, Action: "deployment.start", Target: "deployment:d1",
			Requester: "token:someone-else", Attributes: map[string]string{"device_count": "500", "label.environment": "production"}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, req.ID)
	}
	var rs []steward.ApprovalRequest
	r.okJSON(t, &rs, "approvals", "list", "--state", "pending")
	if len(rs) != 2 {
		t.Fatalf("pending: %+v", rs)
	}
	if out := r.ok(t, "approvals", "list"); !strings.Contains(out, ids[0]) || !strings.Contains(out, "0/1") {
		t.Fatalf("list: %q", out)
	}
	out = r.ok(t, "approvals", "approve", ids[0], "--comment", "go ahead")
	if !strings.Contains(out, "approved") || !strings.Contains(out, "go ahead") {
		t.Fatalf("approve: %q", out)
	}
	if out := r.ok(t, "approvals", "reject", ids[1]); !strings.Contains(out, "rejected") {
		t.Fatalf("reject: %q", out)
	}
	if res := r.run(t, "approvals", "approve", ids[1]); res.code != cli.ExitError || !strings.Contains(res.stderr, "no longer pending") {
		t.Fatalf("approve a rejected request: %+v", res)
	}
	if out := r.ok(t, "approvals", "get", ids[0]); !strings.Contains(out, "device_count=500") {
		t.Fatalf("get: %q", out)
	}
	if out := r.ok(t, "approval-policies", "delete", ps[0].ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %q", out)
	}
	if res := r.run(t, "approvals", "get", "ar-none"); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("get unknown: %+v", res)
	}
}
