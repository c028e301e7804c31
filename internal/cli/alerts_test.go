package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestAlertCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)

	type applied struct {
		Action string            `json:"action"`
		Rule   steward.AlertRule `json:"rule"`
	}
	var res []applied
	r.okJSON(t, &res, "alert-rules", "apply", "testdata/alert-rules.json")
	if len(res) != 3 || res[0].Action != "created" || res[2].Rule.Enabled {
		t.Fatalf("apply: %+v", res)
	}
	hot := res[0].Rule
	// Applying again updates by name: same IDs, no new rules.
	edited := filepath.Join(t.TempDir(), "rules.json")
	b, err := os.ReadFile("testdata/alert-rules.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edited, []byte(strings.Replace(string(b), `"severity": "major"`, `"severity": "critical"`, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	r.okJSON(t, &res, "alert-rules", "apply", edited)
	if len(res) != 3 || res[0].Action != "updated" || res[0].Rule.ID != hot.ID || res[0].Rule.Severity != steward.AlertCritical {
		t.Fatalf("apply again: %+v", res)
	}
	golden(t, "alert-rules-list", r.ok(t, "alert-rules", "list"))
	if out := r.ok(t, "alert-rules", "get", hot.ID); !strings.Contains(out, `"resolve_value":70`) {
		t.Fatalf("get:\n%s", out)
	}

	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if _, err := env.Store.PutAlert(t.Context(), steward.Alert{ID: "al-1", TenantID: steward.DefaultTenant, RuleID: hot.ID, DeviceID: "d-1",
		State: steward.AlertFiring, Severity: steward.AlertCritical, Summary: "temperature avg over 10m is 85", Value: 85,
		StartedAt: now, FiredAt: &now, LastEvaluatedAt: now}); err != nil {
		t.Fatal(err)
	}
	golden(t, "alerts-list", r.ok(t, "alerts", "list", "--state", "firing"))
	if out := r.ok(t, "alerts", "list", "--state", "resolved"); strings.Contains(out, "al-1") {
		t.Fatalf("list resolved:\n%s", out)
	}
	r.ok(t, "alerts", "ack", "al-1")
	golden(t, "alerts-assign", strings.ReplaceAll(r.ok(t, "alerts", "assign", "al-1", "bob"), hot.ID, "<RULE-ID>.............."))

	if out := r.ok(t, "alert-rules", "delete", hot.ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %q", out)
	}
	if res := r.run(t, "alerts", "get", "al-1"); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("get after the rule's deletion: %+v", res)
	}
}

func TestAlertCommandsUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	r := newRunner("http://127.0.0.1:1", "stw_x") // nothing listens: usage errors come first
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"alert-rules", "apply", file("typo.json", `[{"name":"x","kinds":"rate"}]`)}, `unknown field "kinds"`},
		{[]string{"alert-rules", "apply", file("twice.json", `[{"name":"x"},{"name":"x"}]`)}, "twice"},
		{[]string{"alert-rules", "apply", file("noname.json", `{"kind":"rate"}`)}, "no name"},
		{[]string{"alert-rules", "apply", file("dur.json", `{"name":"x","for":"soon"}`)}, "duration"},
		{[]string{"alert-rules", "create", file("two.json", `[{"name":"x"},{"name":"y"}]`)}, "create takes one"},
		{[]string{"alert-rules", "apply", filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"alerts", "list", "--state", "open"}, "--state"},
		{[]string{"alerts", "assign", "al-1"}, "needs ASSIGNEE"},
	} {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("steward %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), res.code, res.stderr, cli.ExitUsage, tc.want)
		}
	}
}
