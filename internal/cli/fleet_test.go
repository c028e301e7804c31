package cli_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestFleet(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	ctx := context.Background()
	from := time.Date(2020, 1, 2, 0, 0, 0, 0, time.UTC)
	var samples []steward.Sample
	var evs []steward.DeviceEvent
	for i := range 9 {
		fw, cpu, reboots := "1.0", 40.0+float64(i%2), 0
		if i >= 6 {
			fw, cpu, reboots = "2.0", 60, 4
		}
		id := devID(fmt.Sprintf("fl%02d", i))
		d := env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
		d.Firmware = fw
		if _, err := env.Store.UpdateDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", At: from, Value: cpu})
		for k := range reboots {
			at := from.Add(time.Duration(k) * time.Minute)
			evs = append(evs, steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: "reboot", Severity: steward.SeverityWarning, At: at, Received: at})
		}
	}
	if err := env.Store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.AddDeviceEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	window := []string{"--from", "2020-01-02T00:00:00Z", "--to", "2020-01-03T00:00:00Z"}

	golden(t, "fleet-stats", r.ok(t, append([]string{"fleet", "stats", "--group-by", "firmware", "--metric", "cpu", "--event", "reboot"}, window...)...))
	golden(t, "fleet-outliers", r.ok(t, append([]string{"fleet", "outliers", "--group-by", "firmware", "--metric", "cpu", "--event", "reboot", "--min-devices", "3"}, window...)...))
	golden(t, "fleet-outliers-none", r.ok(t, append([]string{"fleet", "outliers", "--group-by", "firmware", "--event", "reboot"}, window...)...))

	var st steward.FleetStats
	r.okJSON(t, &st, append([]string{"fleet", "stats", "--group-by", "model", "--query", "firmware = 2.0"}, window...)...)
	if st.Devices != 3 || len(st.Groups) != 1 || st.Groups[0].Value != "gw-100" || st.Groups[0].Metric != nil {
		t.Fatalf("json stats %+v", st)
	}
	var out steward.FleetOutliers
	r.okJSON(t, &out, append([]string{"fleet", "outliers", "--group-by", "firmware", "--event", "reboot", "--min-devices", "3"}, window...)...)
	if len(out.Outliers) != 1 || out.Outliers[0].Value != "2.0" || out.Outliers[0].Observed != 4 {
		t.Fatalf("json outliers %+v", out)
	}

	for name, args := range map[string][]string{
		"no group":        {"fleet", "stats"},
		"bad group":       {"fleet", "stats", "--group-by", "owner"},
		"bad event":       {"fleet", "stats", "--group-by", "model", "--event", "a/b"},
		"bad from":        {"fleet", "stats", "--group-by", "model", "--from", "yesterday"},
		"nothing to test": {"fleet", "outliers", "--group-by", "model"},
		"bad minimum":     {"fleet", "outliers", "--group-by", "model", "--event", "x", "--min-devices", "-1"},
		"argument":        {"fleet", "stats", "--group-by", "model", "extra"},
	} {
		t.Run(name, func(t *testing.T) {
			if res := r.run(t, args...); res.code != cli.ExitUsage {
				t.Fatalf("exit %d, want %d\nstderr: %s", res.code, cli.ExitUsage, res.stderr)
			}
		})
	}
	res := r.run(t, "fleet", "stats", "--group-by", "model", "--query", "model = ")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "HTTP 400") {
		t.Fatalf("bad query: exit %d\nstderr: %s", res.code, res.stderr)
	}
}
