package cli_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

func TestDeviceHealth(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	ctx := context.Background()
	now := time.Now().UTC()
	online := func(id string) {
		t.Helper()
		env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
		if err := env.Store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: true, ConnectedSince: now.Add(-time.Hour), LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	sick, fine := devID("sick"), devID("fine")
	online(sick)
	online(fine)
	if err := env.Store.WriteSamples(ctx, []steward.Sample{
		{TenantID: steward.DefaultTenant, DeviceID: sick, Metric: "temperature", Value: 91.25, At: now.Add(-time.Minute)},
		{TenantID: steward.DefaultTenant, DeviceID: sick, Metric: "disk", Value: 0.9, At: now.Add(-time.Minute)},
		{TenantID: steward.DefaultTenant, DeviceID: fine, Metric: "cpu", Value: 0.3, At: now.Add(-time.Minute)},
	}); err != nil {
		t.Fatal(err)
	}
	var evs []steward.DeviceEvent
	for i := range 3 {
		at := now.Add(-time.Duration(i+1) * time.Minute)
		evs = append(evs, steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: sick, Type: "oom", Severity: steward.SeverityError, Message: "killed", At: at, Received: at})
	}
	if err := env.Store.AddDeviceEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}

	golden(t, "devices-health", r.ok(t, "devices", "health", sick))
	golden(t, "devices-health-ok", r.ok(t, "devices", "health", fine))
	var h steward.DeviceHealth
	r.okJSON(t, &h, "devices", "health", sick)
	if h.DeviceID != sick || h.Level != steward.HealthCritical || len(h.Reasons) != 3 || h.Reasons[0].Code != "temperature_high" {
		t.Fatalf("json health %+v", h)
	}
	r.okJSON(t, &h, "devices", "health", fine)
	if h.Level != steward.HealthOK || h.Reasons == nil || len(h.Reasons) != 0 {
		t.Fatalf("json health of a fine device %+v", h)
	}

	if res := r.run(t, "devices", "health", devID("nobody")); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("unknown device: %+v", res)
	}
	for _, args := range [][]string{{"devices", "health"}, {"devices", "health", sick, "extra"}} {
		if res := r.run(t, args...); res.code != cli.ExitUsage {
			t.Errorf("steward %s: %+v, want a usage error", strings.Join(args, " "), res)
		}
	}
}
