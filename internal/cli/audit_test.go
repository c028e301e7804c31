package cli_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/server"
)

// auditNode starts a node on loopback, which records its API requests in
// its audit log, and returns it with an admin client.
func auditNode(t *testing.T) (*server.Server, *client.Client) {
	t.Helper()
	srv, err := server.New(context.Background(), server.Config{DataDir: t.TempDir(), APIAddr: "127.0.0.1:0",
		MQTTAddr: "127.0.0.1:0", DeviceAddr: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Close() })
	return srv, client.New(srv.APIURL(), srv.AdminToken, nil)
}

func TestAudit(t *testing.T) {
	t.Parallel()
	srv, c := auditNode(t)
	ctx := t.Context()
	for _, name := range []string{"one", "two", "three"} {
		if _, err := c.CreateToken(ctx, name, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Quarantine(ctx, "d-nosuchdevice", "test"); err == nil {
		t.Fatal("quarantined an unknown device")
	}
	r := newRunner(srv.APIURL(), srv.AdminToken)
	dir := t.TempDir()

	var recs []steward.AuditRecord
	r.okJSON(t, &recs, "audit", "list", "--asc")
	if len(recs) != 4 || recs[0].Action != "POST /api/v1/tokens" || recs[3].Outcome != steward.AuditFailure {
		t.Fatalf("audit list: %+v", recs)
	}
	r.okJSON(t, &recs, "audit", "list", "--outcome", "failure", "--target", "device:d-nosuchdevice")
	if len(recs) != 1 || recs[0].Index != 3 {
		t.Fatalf("audit list filtered: %+v", recs)
	}
	if out := r.ok(t, "audit", "list", "--limit", "2"); !strings.Contains(out, "INDEX") || !strings.Contains(out, "POST /api/v1/devices/{id}/quarantine") {
		t.Fatalf("audit list table:\n%s", out)
	}

	key := strings.TrimSpace(r.ok(t, "audit", "key"))
	if !strings.HasPrefix(key, "steward-audit+") {
		t.Fatalf("audit key %q", key)
	}
	kept := filepath.Join(dir, "kept.note")
	if err := os.WriteFile(kept, []byte(r.ok(t, "audit", "checkpoint")), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateToken(ctx, "four", ""); err != nil {
		t.Fatal(err)
	}
	if out := r.ok(t, "audit", "verify"); !strings.Contains(out, "verified:") || !strings.Contains(out, "yes") {
		t.Fatalf("audit verify:\n%s", out)
	}
	if out := r.ok(t, "audit", "prove", "inclusion", "3", "--key", key); !strings.Contains(out, "record 3 is in the signed log of size 5") {
		t.Fatalf("prove inclusion:\n%s", out)
	}
	if out := r.ok(t, "audit", "prove", "consistency", "--checkpoint", kept, "--key", key); !strings.Contains(out, "size 5 extends the checkpoint of size 4") {
		t.Fatalf("prove consistency:\n%s", out)
	}

	// Offline: no server, no token.
	export := filepath.Join(dir, "audit.jsonl")
	r.ok(t, "audit", "export", "--out", export)
	offline := newRunner("", "")
	if out := offline.ok(t, "audit", "verify", "--file", export, "--key", key); !strings.Contains(out, "yes") {
		t.Fatalf("offline verify:\n%s", out)
	}
	b, err := os.ReadFile(export)
	if err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(dir, "tampered.jsonl")
	if err := os.WriteFile(tampered, []byte(strings.Replace(string(b), `"outcome":"failure"`, `"outcome":"success"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	res := offline.run(t, "audit", "verify", "--file", tampered, "--key", key)
	if res.code != 1 || !strings.Contains(res.stdout, "first bad index:      3") || !strings.Contains(res.stderr, "record 3 does not match") {
		t.Fatalf("tampered export: exit %d\nstdout: %s\nstderr: %s", res.code, res.stdout, res.stderr)
	}
	for _, args := range [][]string{
		{"audit", "verify", "--file", export},
		{"audit", "verify", "--key", key},
		{"audit", "list", "--outcome", "maybe"},
		{"audit", "list", "--from", "yesterday"},
		{"audit", "prove", "inclusion", "x"},
		{"audit", "prove", "consistency"},
	} {
		if res := offline.run(t, args...); res.code != 2 {
			t.Errorf("steward %s: exit %d, want 2 (usage)\n%s", strings.Join(args, " "), res.code, res.stderr)
		}
	}
}

func TestAuditRetention(t *testing.T) {
	t.Parallel()
	srv, _ := auditNode(t)
	r := newRunner(srv.APIURL(), srv.AdminToken)
	if out := r.ok(t, "audit", "retention"); !strings.Contains(out, "for good") || !strings.Contains(out, "365 days") {
		t.Fatalf("audit retention:\n%s", out)
	}
	for _, args := range [][]string{
		{"audit", "retention", "--tenant", steward.DefaultTenant, "--set-days", "364"},
		{"audit", "retention", "--set-days", "400"},
		{"audit", "retention", "--tenant", steward.DefaultTenant},
	} {
		if res := r.run(t, args...); res.code == 0 {
			t.Fatalf("steward %s succeeded:\n%s", strings.Join(args, " "), res.stdout)
		}
	}
	if out := r.ok(t, "audit", "retention"); !strings.Contains(out, "for good") {
		t.Fatalf("a refused period was set:\n%s", out)
	}
	if out := r.ok(t, "audit", "retention", "--tenant", steward.DefaultTenant, "--set-days", "400"); !strings.Contains(out, "400 days") {
		t.Fatalf("set 400 days:\n%s", out)
	}
	if out := r.ok(t, "audit", "retention"); !strings.Contains(out, "400 days") || !strings.Contains(out, "pruned:") {
		t.Fatalf("audit retention after the change:\n%s", out)
	}
}
