package credentials

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/approvals"
	"github.com/steward-iot/steward/sqlite"
)

func TestValidSerial(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]bool{
		"0a": true, "7f3a9c": true, "0123456789abcdef0123456789abcdef01234567": true,
		"": false, "0A": false, "xyz": false, "-1": false, "0123456789abcdef0123456789abcdef012345678": false,
	} {
		if got := validSerial(s); got != want {
			t.Errorf("validSerial(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestRequireApproval runs the two-person rule with the real approvals
// service: no policy, no request; with one, the first call opens a
// request, which must be approved and be for the same action and target.
func TestRequireApproval(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateTenant(ctx, steward.Tenant{ID: "acme", Name: "acme", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	svc := approvals.New(approvals.Config{Store: store})
	req := steward.ApprovalRequest{TenantID: "acme", Action: "ca.rotate", Target: "tenant:acme", Requester: "token:alice"}

	if p, err := RequireApproval(ctx, nil, req, ""); p != nil || err != nil {
		t.Fatalf("without approvals: %+v %v", p, err)
	}
	if p, err := RequireApproval(ctx, svc, req, ""); p != nil || err != nil {
		t.Fatalf("without a policy: %+v %v", p, err)
	}
	if _, err := svc.CreatePolicy(ctx, steward.ApprovalPolicy{TenantID: "acme", Name: "ca", Action: "ca.rotate", Approvals: 1}, "token:alice"); err != nil {
		t.Fatal(err)
	}
	pending, err := RequireApproval(ctx, svc, req, "")
	if err != nil || pending == nil || pending.State != steward.ApprovalPending || pending.Action != "ca.rotate" || pending.Target != "tenant:acme" {
		t.Fatalf("first call: %+v %v", pending, err)
	}
	other := req
	other.Target = "tenant:beta"
	tests := []struct {
		name string
		r    steward.ApprovalRequest
		id   string
		code steward.Code
	}{
		{"not approved yet", req, pending.ID, steward.CodeFailedPrecondition},
		{"unknown request", req, "apr-nope", steward.CodeNotFound},
	}
	for _, tc := range tests {
		if _, err := RequireApproval(ctx, svc, tc.r, tc.id); steward.ErrorCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if _, err := svc.DecideAs(ctx, "acme", pending.ID, steward.Decision{Approver: "token:bob", Approve: true, At: time.Now()},
		approvals.Approver{Role: steward.RoleApprover, Permissions: []steward.Permission{steward.PermApprovalsDecide}}); err != nil {
		t.Fatal(err)
	}
	if p, err := RequireApproval(ctx, svc, req, pending.ID); p != nil || err != nil {
		t.Errorf("approved: %+v %v", p, err)
	}
	if _, err := RequireApproval(ctx, svc, other, pending.ID); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Errorf("an approval of another target: %v, want permission denied", err)
	}
}
