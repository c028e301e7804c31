package cli_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestTenantAdminCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	out := r.ok(t, "tenants", "create", "acme")
	acme := newRunner(env.URL, regexp.MustCompile(`stw_[a-z2-7]{52}`).FindString(out))
	acme.ok(t, "devices", "list")

	if out := r.ok(t, "tenants", "suspend", "acme", "--reason", "unpaid"); !strings.Contains(out, "suspended") || !strings.Contains(out, "unpaid") {
		t.Fatalf("suspend: %q", out)
	}
	if res := acme.run(t, "devices", "list"); res.code != cli.ExitError || !strings.Contains(res.stderr, "tenant acme is suspended") {
		t.Fatalf("a suspended tenant's token: %+v", res)
	}
	var tn steward.Tenant
	r.okJSON(t, &tn, "tenants", "get", "acme")
	if tn.Status != steward.TenantSuspended {
		t.Fatalf("get: %+v", tn)
	}
	r.ok(t, "tenants", "resume", "acme")
	acme.ok(t, "devices", "list")
	if res := r.run(t, "tenants", "delete", "default"); res.code != cli.ExitError || !strings.Contains(res.stderr, "cannot be deleted") {
		t.Fatalf("delete default: %+v", res)
	}

	// With a policy, deletion waits for a second person.
	r.ok(t, "approval-policies", "create", "tenant-deletion", "--action", "tenant.delete", "--approvals", "1")
	res := r.run(t, "tenants", "delete", "acme", "--reason", "contract ended")
	if res.code != 0 || !strings.Contains(res.stderr, "needs approval") {
		t.Fatalf("delete under a policy: %+v", res)
	}
	id := regexp.MustCompile(`ar-[a-z2-7]{20}`).FindString(res.stdout)
	secret, _, err := api.CreateToken(context.Background(), env.Store, steward.DefaultTenant, "second", steward.RoleSystem, nil)
	if err != nil {
		t.Fatal(err)
	}
	newRunner(env.URL, secret).ok(t, "approvals", "approve", id)
	if out := r.ok(t, "tenants", "delete", "acme", "--approval", id); !strings.Contains(out, "deleted tenant acme") {
		t.Fatalf("delete with approval: %q", out)
	}
	if res := r.run(t, "tenants", "get", "acme"); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("get after delete: %+v", res)
	}
	if res := acme.run(t, "devices", "list"); res.code != cli.ExitError {
		t.Fatalf("deleted tenant's token: %+v", res)
	}
}
