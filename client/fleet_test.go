package client_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

// seedSmallFleet stores 6 devices on firmware 1.0 (cpu 40, no reboots) and
// 3 on 2.0 (cpu 60, 4 reboots each) with samples and events at from.
func seedSmallFleet(t *testing.T, env *apitest.Env, from time.Time) {
	t.Helper()
	ctx := context.Background()
	var samples []steward.Sample
	var evs []steward.DeviceEvent
	for i := range 9 {
		fw, cpu, reboots := "1.0", 40.0, 0
		if i >= 6 {
			fw, cpu, reboots = "2.0", 60, 4
		}
		id := devID(100 + i)
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
}

func TestFleetAnalytics(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seedSmallFleet(t, env, from)
	q := steward.FleetStatsQuery{GroupBy: "firmware", Metric: "cpu", Event: "reboot", From: from, To: from.Add(24 * time.Hour)}

	st, err := c.FleetStats(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Groups) != 2 || st.Groups[0].Value != "1.0" || st.Groups[1].Event.PerDeviceDay != 4 || st.Groups[1].Metric.P95 != 60 || !st.From.Equal(q.From) {
		t.Fatalf("stats %+v", st)
	}
	out, err := c.FleetOutliers(ctx, q, 0) // the default minimum, 20: nothing compared
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Outliers) != 0 || out.Rule.MinDevices != 20 {
		t.Fatalf("outliers with the default minimum %+v", out)
	}
	if out, err = c.FleetOutliers(ctx, q, 3); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out.Outliers {
		got = append(got, o.Evidence)
	}
	want := []string{
		"firmware 2.0: 4 reboots per device-day against 0 for the rest of the fleet, 3 devices",
		"firmware 2.0: cpu mean 60 against a median of 40 for the rest of the fleet (spread 0), 3 devices",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outliers\n got %q\nwant %q", got, want)
	}
	q.GroupBy = "owner"
	if _, err := c.FleetStats(ctx, q); steward.ErrorCode(err) != steward.CodeInvalid || !client.IsStatus(err, 400) {
		t.Fatalf("bad group_by: %v", err)
	}
}
