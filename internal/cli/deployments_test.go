package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/cli"
)

func TestDeploymentCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	for _, id := range []string{"d-dep1", "d-dep2", "d-dep3"} {
		env.AddDevice(t, steward.DefaultTenant, id, "gw-100", map[string]string{"site": "berlin"})
	}
	r := newRunner(env.URL, env.SystemToken)

	// Usage errors send nothing.
	for _, bad := range [][]string{
		{"deployments", "create", "x"},
		{"deployments", "create", "x", "--target", "gw-firmware"},
		{"deployments", "create", "x", "--target", "a@1", "--window", "0 2 * * *;2h"},
		{"deployments", "create", "x", "--target", "a@1", "--gate", "reboots"},
		{"deployments", "create", "x", "--target", "a@1", "--canary", "many"},
		{"deployments", "create", "x", "--target", "a@1", "--waves", "10", "--wave-by", "site=a"},
	} {
		if res := r.run(t, bad...); res.code != cli.ExitUsage {
			t.Fatalf("%v: %+v", bad, res)
		}
	}
	// Refused by the server: nothing stored either.
	if res := r.run(t, "deployments", "create", "x", "--target", "a@1", "--query", "model =="); res.code != cli.ExitError {
		t.Fatalf("bad query: %+v", res)
	}
	var ds []client.Deployment
	r.okJSON(t, &ds, "deployments", "list")
	if len(ds) != 0 {
		t.Fatalf("bad input stored %+v", ds)
	}

	out := r.ok(t, "deployments", "create", "fw-1.5.0", "--target", "gw-firmware@1.5.0", "--query", `model = "gw-100"`,
		"--canary", "1", "--waves", "50,100", "--soak", "1h", "--gate", "reboots:0.5", "--gate", "metric:cpu:0.1",
		"--window", "0 2 * * *;2h;Europe/Berlin;labels.site=berlin", "--on-failure", "rollback", "--failure-threshold", "0.1",
		"--min-finished", "2", "--concurrency", "50", "--rate", "100", "--retries", "2")
	if !strings.Contains(out, "awaiting_approval") || !strings.Contains(out, "3 devices, more than 2") {
		t.Fatalf("create: %s", out)
	}
	r.okJSON(t, &ds, "deployments", "list")
	if len(ds) != 1 {
		t.Fatalf("list %+v", ds)
	}
	d := ds[0]
	if len(d.Phases) != 3 || d.Phases[0].Count != 1 || d.Phases[1].Percent != 50 || d.Phases[2].Percent != 100 ||
		d.Phases[0].Soak.D() != time.Hour || d.Phases[2].Soak != 0 || d.Phases[1].FailureThreshold != 0.1 ||
		d.Gate == nil || len(d.Gate.Checks) != 2 || d.Gate.Checks[1].Metric != "cpu" ||
		len(d.Windows) != 1 || d.Windows[0].TimeZone != "Europe/Berlin" || d.Windows[0].Match != "labels.site=berlin" ||
		d.OnFailure != steward.OnFailureRollback || d.Concurrency != 50 || d.Rate != 100 || d.Retries != 2 {
		t.Fatalf("spec %+v", d.DeploymentSpec)
	}
	// The creator cannot approve their own.
	if res := r.run(t, "deployments", "approve", d.ID); res.code != cli.ExitError || !strings.Contains(res.stderr, "cannot approve") {
		t.Fatalf("self-approval: %+v", res)
	}
	out = r.ok(t, "deployments", "get", d.ID)
	for _, want := range []string{d.ID, "gw-firmware@1.5.0", "awaiting_approval", "1/3 canary"} {
		if !strings.Contains(out, want) {
			t.Fatalf("get lacks %q:\n%s", want, out)
		}
	}
	out = r.ok(t, "deployments", "cancel", d.ID)
	if !strings.Contains(out, "aborted") {
		t.Fatalf("cancel: %s", out)
	}

	// --file takes the whole request.
	spec := filepath.Join(t.TempDir(), "spec.json")
	if err := os.WriteFile(spec, []byte(`{"target": {"kind": "config", "name": "tpl-1", "version": "cv-1"}, "query": "model = \"none\"", "draft": true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	var created client.Deployment
	r.okJSON(t, &created, "deployments", "create", "cfg", "--file", spec)
	if created.State != steward.DeploymentDraft || created.Target.Kind != steward.KindConfig || created.Name != "cfg" {
		t.Fatalf("from file %+v", created.Deployment)
	}
	r.okJSON(t, &created, "deployments", "resume", created.ID)
	if created.State != steward.DeploymentScheduled {
		t.Fatalf("submitted draft %+v", created.Deployment)
	}
	var devs []steward.DeploymentDevice
	r.okJSON(t, &devs, "deployments", "get", created.ID, "--devices")
	if len(devs) != 0 {
		t.Fatalf("devices of a deployment not started %+v", devs)
	}
}
