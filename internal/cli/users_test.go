package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestOperatorCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	pw := filepath.Join(t.TempDir(), "owner.pw")
	if err := os.WriteFile(pw, []byte("a long enough passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// The first owner, created with the system token.
	var owner steward.User
	r.okJSON(t, &owner, "users", "create", "owner@example.com", "--role", "owner", "--name", "First Owner", "--password-file", pw)
	if owner.Role != steward.RoleOwner || owner.Email != "owner@example.com" {
		t.Fatalf("owner %+v", owner)
	}
	stored, err := env.Store.GetUser(t.Context(), steward.DefaultTenant, owner.ID)
	if err != nil || !strings.HasPrefix(stored.PasswordHash, "$argon2id$v=19$m=65536,t=3,p=2$") {
		t.Fatalf("stored hash %q, %v", stored.PasswordHash, err)
	}
	if out := r.ok(t, "users", "list"); !strings.Contains(out, "owner@example.com") || !strings.Contains(out, "First Owner") {
		t.Fatalf("users list:\n%s", out)
	}

	r.ok(t, "roles", "create", "plant7", "--permissions", "devices:read,devices:quarantine", "--query", "labels.site = plant-7")
	if out := r.ok(t, "roles", "list"); !strings.Contains(out, `labels.site = "plant-7"`) || !strings.Contains(out, "release-manager") {
		t.Fatalf("roles list:\n%s", out)
	}
	var a steward.ServiceAccount
	r.okJSON(t, &a, "service-accounts", "create", "ci", "--role", "plant7")
	var tok client.CreatedAccountToken
	r.okJSON(t, &tok, "service-accounts", "token", a.ID, "pipeline", "--scopes", "devices:read", "--expires", "24h")
	if tok.Secret == "" || len(tok.Scopes) != 1 {
		t.Fatalf("token %+v", tok)
	}
	out := newRunner(env.URL, tok.Secret).ok(t, "whoami")
	if !strings.Contains(out, "plant7") || !strings.Contains(out, `labels.site = "plant-7"`) {
		t.Fatalf("whoami:\n%s", out)
	}

	// Bad command lines send nothing (exit 2); refusals exit 1.
	for _, args := range [][]string{
		{"users", "create", "x@example.com"},
		{"roles", "create", "r", "--permissions", "devices:fly"},
		{"service-accounts", "token", a.ID, "t", "--scopes", "nope"},
		{"users", "set-password", owner.ID},
	} {
		if res := r.run(t, args...); res.code != 2 {
			t.Errorf("steward %v: exit %d, want 2: %s", args, res.code, res.stderr)
		}
	}
	if res := r.run(t, "users", "create", "y@example.com", "--role", "wizard"); res.code != 1 || !strings.Contains(res.stderr, "unknown role") {
		t.Fatalf("unknown role: exit %d: %s", res.code, res.stderr)
	}
	us, _ := env.Store.ListUsers(t.Context(), steward.DefaultTenant)
	if len(us) != 1 {
		t.Fatalf("refused commands created users: %+v", us)
	}

	r.ok(t, "users", "set-role", owner.ID, "admin")
	r.ok(t, "users", "disable", owner.ID)
	r.ok(t, "users", "enable", owner.ID)
	var ut client.CreatedAccountToken
	r.okJSON(t, &ut, "users", "token", owner.ID, "laptop")
	if ut.UserID != owner.ID || ut.ExpiresAt == nil {
		t.Fatalf("user token %+v", ut)
	}
	r.ok(t, "service-accounts", "delete", a.ID)
	r.ok(t, "roles", "delete", "plant7")
	r.ok(t, "users", "delete", owner.ID)
	if out := r.ok(t, "-o", "json", "users", "list"); strings.TrimSpace(out) != "[]" {
		t.Fatalf("users after delete: %s", out)
	}
}
