package cli_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

var policyID = regexp.MustCompile(`\bnp-[a-z2-7]{20}\b`)

func policyNormalize(s string) string {
	return notifyNormalize(policyID.ReplaceAllString(s, "<POLICY-ID>............"))
}

func TestPolicyCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	r.ok(t, "channels", "create", "tickets", "--webhook", "https://tickets.example.com/hook")
	out := r.ok(t, "policies", "create", "testdata/policy-battery.json")
	golden(t, "policies-create", policyNormalize(out))
	golden(t, "policies-list", policyNormalize(r.ok(t, "policies", "list")))
	var ps []steward.NotificationPolicy
	r.okJSON(t, &ps, "policies", "list")
	if len(ps) != 1 || ps[0].Name != "battery-maintenance" || len(ps[0].Channels) != 1 || !strings.HasPrefix(ps[0].Channels[0], "ch-") {
		t.Fatalf("policies: %+v", ps)
	}
	if got := r.ok(t, "policies", "get", ps[0].ID); !strings.Contains(got, "battery-maintenance") {
		t.Fatalf("get: %q", got)
	}
	if res := r.run(t, "policies", "create", "testdata/policy-battery.json"); res.code != cli.ExitError || !strings.Contains(res.stderr, "already exists") {
		t.Fatalf("create twice: %+v", res)
	}
	if out := r.ok(t, "policies", "delete", ps[0].ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %q", out)
	}
	if res := r.run(t, "policies", "get", ps[0].ID); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("get after delete: %+v", res)
	}
	if res := r.run(t, "policies", "create", "testdata/alert-rules.json"); res.code != cli.ExitUsage {
		t.Fatalf("a rules file as a policy: %+v", res)
	}
}
