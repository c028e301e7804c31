package cli_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

// TestDevicePrivacyCommands sets a device's consent, exports it to a file
// and erases it, and checks that the refusals (no --yes, flags that
// exclude each other, an existing file) change nothing.
func TestDevicePrivacyCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	id := devID("privacy")
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	now := time.Now().UTC()
	if err := env.Store.WriteSamples(context.Background(), []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.5, At: now}}); err != nil {
		t.Fatal(err)
	}

	var con steward.DeviceConsent
	r.okJSON(t, &con, "devices", "consent", id, "--personal", "--grant", "events, location")
	if !con.Personal || strings.Join(con.Granted, ",") != "events,location" {
		t.Fatalf("consent %+v", con)
	}
	for _, bad := range [][]string{
		{"devices", "consent", id, "--personal", "--not-personal"},
		{"devices", "consent", id, "--grant", "events"},
		{"devices", "erase", id},
	} {
		if res := r.run(t, bad...); res.code != cli.ExitUsage {
			t.Fatalf("%v: %+v", bad, res)
		}
	}
	if res := r.run(t, "devices", "consent", id, "--personal", "--grant", "dreams"); res.code != cli.ExitError || !strings.Contains(res.stderr, "dreams") {
		t.Fatalf("bad class: %+v", res)
	}
	r.okJSON(t, &con, "devices", "consent", id)
	if strings.Join(con.Granted, ",") != "events,location" {
		t.Fatalf("refused changes changed the consent: %+v", con)
	}

	file := filepath.Join(t.TempDir(), "device.json")
	if out := r.ok(t, "devices", "export", id, "--file", file); !strings.Contains(out, "1 samples") {
		t.Fatalf("export said %q", out)
	}
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), `"metric": "cpu"`) || !strings.Contains(string(b), id) {
		t.Fatalf("archive %s, %v", b, err)
	}
	if res := r.run(t, "devices", "export", id, "--file", file); res.code != cli.ExitError {
		t.Fatalf("export over an existing file: %+v", res)
	}

	var tomb steward.DeviceTombstone
	r.okJSON(t, &tomb, "devices", "erase", id, "--yes")
	if tomb.DeviceID != id || tomb.Erased["samples"] != 1 {
		t.Fatalf("tombstone %+v", tomb)
	}
	if res := r.run(t, "devices", "get", id); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("erased device: %+v", res)
	}
}
