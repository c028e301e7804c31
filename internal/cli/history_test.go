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

func TestDeviceHistory(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	ctx := context.Background()
	id := devID("hist")
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2020, 1, 2, 10, 0, 0, 0, time.UTC)
	ev := func(typ string, sev steward.Severity, msg string, min int, fields map[string]any) steward.DeviceEvent {
		at := base.Add(time.Duration(min) * time.Minute)
		return steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: typ, Severity: sev, Message: msg, Fields: fields, At: at, Received: at}
	}
	if err := env.Store.AddDeviceEvents(ctx, []steward.DeviceEvent{
		ev("boot", steward.SeverityInfo, "booted", 0, nil),
		ev("log", steward.SeverityDebug, "noise", 1, nil),
		ev("crash", steward.SeverityCritical, "segfault\tin collector", 2, map[string]any{"pid": 4242, "proc": "collector"}),
	}); err != nil {
		t.Fatal(err)
	}
	golden(t, "devices-events", r.ok(t, "devices", "events", id))
	golden(t, "devices-events-filtered", r.ok(t, "devices", "events", id, "--severity", "info", "--type", "boot"))
	var evs []steward.DeviceEvent
	r.okJSON(t, &evs, "devices", "events", id, "--from", "2020-01-02T10:01:00Z", "--to", "2020-01-02T10:02:00Z")
	if len(evs) != 1 || evs[0].Message != "noise" {
		t.Fatalf("json events %+v", evs)
	}
	r.okJSON(t, &evs, "devices", "events", id, "--from", "1h") // the events are long past
	if evs == nil || len(evs) != 0 {
		t.Fatalf("recent events must be [], got %+v", evs)
	}

	for i, online := range []bool{true, false, true} {
		if err := env.Store.AddPresenceEvent(ctx, steward.PresenceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Online: online,
			At: base.Add(time.Duration(i) * 20 * time.Minute), RemoteAddr: "192.0.2.7:4000"}); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "devices-presence", r.ok(t, "devices", "presence", id, "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-02T11:00:00Z"))
	var pres struct {
		Items   []steward.PresenceEvent `json:"items"`
		Summary steward.PresenceSummary `json:"summary"`
	}
	r.okJSON(t, &pres, "devices", "presence", id, "--from", "2020-01-02T10:00:00Z", "--to", "2020-01-02T11:00:00Z", "--limit", "1")
	if len(pres.Items) != 1 || pres.Summary.Connects != 2 || pres.Summary.Reconnects != 1 || pres.Summary.ReconnectsPerHour != 1 {
		t.Fatalf("json presence %+v", pres)
	}
	r.okJSON(t, &pres, "devices", "presence", id) // the last day: nothing
	if pres.Items == nil || len(pres.Items) != 0 || pres.Summary.Connects != 0 {
		t.Fatalf("presence of the last day %+v", pres)
	}

	if res := r.run(t, "devices", "events", devID("nobody")); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("unknown device: %+v", res)
	}
	if res := r.run(t, "devices", "presence", devID("nobody")); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("unknown device: %+v", res)
	}
}

func TestDeviceHistoryUsage(t *testing.T) {
	t.Parallel()
	// Nothing listens on this URL: a usage error must be found before
	// anything is sent.
	r := newRunner("http://127.0.0.1:1", "stw_x")
	id := devID("u")
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"devices", "events"}, "needs ID"},
		{[]string{"devices", "events", id, "--severity", "fatal"}, "--severity must be one of"},
		{[]string{"devices", "events", id, "--type", "a b"}, "--type"},
		{[]string{"devices", "events", id, "--limit", "1001"}, "--limit"},
		{[]string{"devices", "events", id, "--from", "yesterday"}, "RFC 3339"},
		{[]string{"devices", "events", id, "--from", "2020-01-02T11:00:00Z", "--to", "2020-01-02T10:00:00Z"}, "--from must be before --to"},
		{[]string{"devices", "presence", id, "--to", "0d"}, "how long ago"},
		{[]string{"devices", "presence", id, "--limit", "-1"}, "--limit"},
		{[]string{"devices", "presence", id, "extra"}, "takes 1 argument"},
	}
	for _, tc := range cases {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("steward %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), res.code, res.stderr, cli.ExitUsage, tc.want)
		}
	}
}
