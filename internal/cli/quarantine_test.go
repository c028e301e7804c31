package cli_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

// TestQuarantinePolicyCommands: get shows the default, set from a file
// changes what the file names and leaves the rest at the defaults, what
// get -o json wrote can be set again, and a bad file changes nothing.
func TestQuarantinePolicyCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	dir := t.TempDir()

	var p steward.QuarantinePolicy
	r.okJSON(t, &p, "quarantine-policy", "get")
	if !slices.Equal(p.MayPublish, steward.QuarantineMayPublish) || !p.UpdatedAt.IsZero() || p.Rules.ACLDenied.Threshold != 20 {
		t.Fatalf("default policy %+v", p)
	}
	if out := r.ok(t, "quarantine-policy", "get"); !strings.Contains(out, "20 within 10m0s") || !strings.Contains(out, "never (the default policy)") {
		t.Fatalf("table:\n%s", out)
	}

	file := filepath.Join(dir, "policy.json")
	if err := os.WriteFile(file, []byte(`{"may_publish": ["attributes"], "rules": {"config_changed": {"enabled": false}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	r.okJSON(t, &p, "quarantine-policy", "set", "--file", file)
	if !slices.Equal(p.MayPublish, []steward.Channel{steward.ChannelAttributes}) || p.Rules.ConfigChanged.Enabled ||
		p.Rules.ConfigChanged.Threshold != 1 || p.Rules.ACLDenied.Threshold != 20 || p.UpdatedBy == "" {
		t.Fatalf("after set: %+v", p)
	}

	// What get -o json writes is a file set takes.
	out := r.ok(t, "quarantine-policy", "get", "-o", "json")
	out = strings.Replace(out, `"threshold": 20`, `"threshold": 7`, 1)
	if err := os.WriteFile(file, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	r.okJSON(t, &p, "quarantine-policy", "set", "--file", file)
	if p.Rules.ACLDenied.Threshold != 7 || !slices.Equal(p.MayPublish, []steward.Channel{steward.ChannelAttributes}) {
		t.Fatalf("after the round trip: %+v", p)
	}

	for name, c := range map[string]struct {
		body string
		code int
	}{
		"unknown key":        {`{"may_publish": [], "everything": true}`, cli.ExitUsage},
		"not JSON":           {`{"rules": `, cli.ExitUsage},
		"bad window":         {`{"rules": {"acl_denied": {"window": "soon"}}}`, cli.ExitUsage},
		"unknown channel":    {`{"may_publish": ["shell"]}`, cli.ExitError},
		"negative threshold": {`{"rules": {"auth_failed": {"threshold": -1}}}`, cli.ExitError},
		"no such webhook":    {`{"webhook_channel": "ch-nosuch"}`, cli.ExitError},
	} {
		bad := filepath.Join(dir, "bad.json")
		if err := os.WriteFile(bad, []byte(c.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if res := r.run(t, "quarantine-policy", "set", "--file", bad); res.code != c.code {
			t.Errorf("%s: %+v, want exit %d", name, res, c.code)
		}
	}
	if res := r.run(t, "quarantine-policy", "set"); res.code != cli.ExitUsage {
		t.Errorf("set without --file: %+v", res)
	}
	var after steward.QuarantinePolicy
	r.okJSON(t, &after, "quarantine-policy", "get")
	if !after.UpdatedAt.Equal(p.UpdatedAt) || after.Rules != p.Rules || !slices.Equal(after.MayPublish, p.MayPublish) {
		t.Fatalf("refused files changed the policy: %+v, then %+v", p, after)
	}
}
