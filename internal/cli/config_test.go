package cli_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestConfigCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	now := time.Now().UTC()
	id := devID("cfg")
	if err := env.Store.CreateDevice(context.Background(), steward.Device{ID: id, TenantID: steward.DefaultTenant, Model: "gw-100",
		State: steward.StateActive, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	var tm steward.ConfigTemplate
	r.okJSON(t, &tm, "config", "templates", "create", "base", "--layer", "base", "--description", "every device")
	if tm.Layer != steward.LayerBase || tm.ID == "" {
		t.Fatalf("template %+v", tm)
	}
	var v1, v2 steward.ConfigVersion
	r.okJSON(t, &v1, "config", "versions", "create", tm.ID, "--file", write("v1.json", `{"interval": 30, "log": "info"}`),
		"--schema", write("s.json", `{"properties": {"interval": {"type": "integer"}}}`), "-m", "first")
	r.stdin = `{"interval": 60, "log": "info"}`
	r.okJSON(t, &v2, "config", "versions", "create", tm.ID, "--file", "-", "-m", "slower")
	r.stdin = ""
	if v1.Version != 1 || v2.Version != 2 || !strings.HasPrefix(v2.Author, "token:") {
		t.Fatalf("versions %+v %+v", v1, v2)
	}
	if out := r.ok(t, "config", "templates", "list"); !strings.Contains(out, "base") || !strings.Contains(out, "2") {
		t.Fatalf("templates list:\n%s", out)
	}
	if out := r.ok(t, "config", "versions", "list", tm.ID); !strings.Contains(out, "slower") || !strings.Contains(out, "first") {
		t.Fatalf("versions list:\n%s", out)
	}
	if out := r.ok(t, "config", "diff", v2.ID); strings.TrimSpace(out) != "~ /interval: 30 → 60" {
		t.Fatalf("diff:\n%s", out)
	}

	// Direct changes: a version, pairs, a patch; a stale one refused.
	var tw steward.Twin
	r.okJSON(t, &tw, "config", "set", id, "--version", v1.ID)
	if tw.DesiredVersion != 1 || !steward.JSONEqual(tw.Desired, json.RawMessage(`{"interval": 30, "log": "info"}`)) {
		t.Fatalf("set --version: %+v", tw)
	}
	r.okJSON(t, &tw, "config", "set", id, "log=debug", "extra={\"a\":1}", "--if-match", "1")
	if tw.DesiredVersion != 2 || !steward.JSONEqual(tw.Desired, json.RawMessage(`{"interval": 30, "log": "debug", "extra": {"a": 1}}`)) {
		t.Fatalf("set pairs: %+v %s", tw, tw.Desired)
	}
	res := r.run(t, "config", "set", id, "log=warn", "--if-match", "1")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "412") {
		t.Fatalf("stale set: %+v", res)
	}
	res = r.run(t, "config", "set", id, "interval=often")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "/interval") {
		t.Fatalf("schema-invalid set: %+v", res)
	}
	r.okJSON(t, &tw, "config", "set", id, "--patch", write("p.json", `{"extra": null}`))
	if tw.DesiredVersion != 3 {
		t.Fatalf("set --patch: %+v", tw)
	}
	if out := r.ok(t, "config", "twin", id); !strings.Contains(out, `"log":"debug"`) || !strings.Contains(out, "In sync:") {
		t.Fatalf("twin:\n%s", out)
	}
	if out := r.ok(t, "config", "drift"); !strings.Contains(out, "0 drifted devices") {
		t.Fatalf("drift:\n%s", out)
	}
	if res := r.run(t, "config", "templates", "delete", tm.ID); res.code != cli.ExitError || !strings.Contains(res.stderr, "kept for good") {
		t.Fatalf("delete a template with versions: %+v", res)
	}
}

func TestConfigUsage(t *testing.T) {
	t.Parallel()
	r := newRunner("http://127.0.0.1:1", "stw_x") // nothing listens: usage errors come first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"config", "templates", "create", "x", "--layer", "region"}, "--layer"},
		{[]string{"config", "versions", "create", "ct-1"}, "--file"},
		{[]string{"config", "set", "d-1"}, "one of them"},
		{[]string{"config", "set", "d-1", "a=1", "--version", "cv-1"}, "one of them"},
		{[]string{"config", "set", "d-1", "novalue"}, "KEY=VALUE"},
		{[]string{"config", "set", "d-1", "--version", "cv-1", "--if-match", "2"}, "--if-match"},
	} {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want usage error with %q", tc.args, res.code, res.stderr, tc.want)
		}
	}
}
