package cli_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestTelemetrySchemasCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)

	var sc steward.TelemetrySchema
	r.okJSON(t, &sc, "telemetry-schemas", "set", "gw-100", "--allow", "cpu,memory,biz.*")
	if sc.Model != "gw-100" || !slices.Equal(sc.Allow, []string{"cpu", "memory", "biz.*"}) {
		t.Fatalf("set: %+v", sc)
	}
	res := r.run(t, "telemetry-schemas", "set", "sensor", "--allow", "cpu,my_counter")
	if res.code != cli.ExitOK || !strings.Contains(res.stderr, "my_counter is not a standard metric") {
		t.Fatalf("set with a non-standard name: %+v", res)
	}
	r.okJSON(t, &sc, "telemetry-schemas", "set", "sensor", "--none")
	if sc.Allow == nil || len(sc.Allow) != 0 {
		t.Fatalf("set --none: %+v", sc)
	}
	if out := r.ok(t, "telemetry-schemas", "get", "gw-100"); !strings.Contains(out, "cpu,memory,biz.*") {
		t.Fatalf("get:\n%s", out)
	}
	out := r.ok(t, "telemetry-schemas", "list")
	if !strings.Contains(out, "gw-100") || !strings.Contains(out, "sensor") || !strings.Contains(out, "(nothing)") {
		t.Fatalf("list:\n%s", out)
	}
	if out := r.ok(t, "telemetry-schemas", "delete", "sensor"); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %q", out)
	}
	if res := r.run(t, "telemetry-schemas", "get", "sensor"); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("get after delete: %+v", res)
	}
	var all []steward.TelemetrySchema
	r.okJSON(t, &all, "telemetry-schemas", "list")
	if len(all) != 1 || all[0].Model != "gw-100" {
		t.Fatalf("list after delete: %+v", all)
	}
}

func TestTelemetrySchemasUsage(t *testing.T) {
	t.Parallel()
	r := newRunner("http://127.0.0.1:1", "stw_x") // nothing listens: usage errors come first
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"telemetry-schemas", "set", "gw-100"}, "either --allow"},
		{[]string{"telemetry-schemas", "set", "gw-100", "--allow", "cpu", "--none"}, "either --allow"},
		{[]string{"telemetry-schemas", "set", "gw-100", "--allow", "cpu,biz*"}, `"biz*"`},
		{[]string{"telemetry-schemas", "set", "gw-100", "--allow", "cpu,cpu"}, "twice"},
		{[]string{"telemetry-schemas", "set", "gw/100", "--allow", "cpu"}, "model"},
		{[]string{"telemetry-schemas", "set"}, "needs MODEL"},
		{[]string{"telemetry-schemas", "get"}, "needs MODEL"},
	}
	for _, tc := range cases {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("steward %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), res.code, res.stderr, cli.ExitUsage, tc.want)
		}
	}
}
