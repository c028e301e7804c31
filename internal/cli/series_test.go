package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/cli"
)

func TestDeviceTelemetrySeries(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	ctx := context.Background()
	id := devID("series")
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2020, 1, 2, 10, 0, 0, 0, time.UTC)
	var samples []steward.Sample
	for i := range 6 { // 10:00:00, 10:00:30, … 10:02:30
		samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "temp", Value: 20 + float64(i)/2, At: base.Add(time.Duration(i) * 30 * time.Second)})
	}
	if err := env.Store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.RollupSamples(ctx, base, base.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	golden(t, "devices-telemetry-raw", r.ok(t, "devices", "telemetry", id, "--metric", "temp", "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-02T10:01:30Z"))
	golden(t, "devices-telemetry-1m", r.ok(t, "devices", "telemetry", id, "--metric", "temp", "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-02T11:00:00Z", "--resolution", "1m"))
	var s client.Series
	r.okJSON(t, &s, "devices", "telemetry", id, "--metric", "temp", "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-03T10:00:00Z")
	if s.Resolution != "1m" || len(s.Points) != 3 || *s.Points[0].Count != 2 {
		t.Fatalf("auto over a day: %+v", s)
	}
	r.okJSON(t, &s, "devices", "telemetry", id, "--metric", "temp", "--from", "2h") // long past: nothing
	if s.Resolution != "raw" || s.Points == nil || len(s.Points) != 0 {
		t.Fatalf("the last two hours: %+v", s)
	}
	res := r.run(t, "devices", "telemetry", id, "--metric", "temp", "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-02T11:00:00Z", "--resolution", "raw", "--limit", "2")
	if res.code != 0 || strings.Count(res.stdout, "\n") != 3 || !strings.Contains(res.stderr, "more points") {
		t.Fatalf("limited: %+v", res)
	}
	// Without --metric: the latest values, as before.
	if out := r.ok(t, "devices", "telemetry", id); !strings.Contains(out, "temp") || !strings.Contains(out, "22.5") {
		t.Fatalf("latest values:\n%s", out)
	}
	if res := r.run(t, "devices", "telemetry", devID("nobody"), "--metric", "temp"); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("unknown device: %+v", res)
	}
}

func TestDeviceTelemetrySeriesUsage(t *testing.T) {
	t.Parallel()
	r := newRunner("http://127.0.0.1:1", "stw_x") // nothing listens: usage errors come first
	id := devID("u")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"devices", "telemetry", id, "--metric", "cpu", "--resolution", "5m"}, "--resolution must be"},
		{[]string{"devices", "telemetry", id, "--metric", "cpu", "--limit", "5001"}, "--limit"},
		{[]string{"devices", "telemetry", id, "--metric", "cpu", "--from", "yesterday"}, "RFC 3339"},
		{[]string{"devices", "telemetry", id, "--from", "2h"}, "go with --metric"},
	}
	for _, tc := range cases {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("steward %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), res.code, res.stderr, cli.ExitUsage, tc.want)
		}
	}
}
