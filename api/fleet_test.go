package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// seedFleet stores 60 devices of the default tenant over two days: 30 on
// firmware 1.0.0 (10 reboots in all, cpu 40 to 44), 25 on 2.1.0 (12
// reboots each, cpu 70) and 5 on 0.9.0 (20 reboots each, cpu 42), every
// other device online.
func seedFleet(t *testing.T, e *testEnv, from time.Time) {
	t.Helper()
	ctx := context.Background()
	var samples []steward.Sample
	var evs []steward.DeviceEvent
	n := 0
	add := func(firmware string, count, reboots int, cpu func(i int) float64) {
		for i := range count {
			id := deviceID(fmt.Sprintf("f%03d", n))
			n++
			d := e.addDevice(t, steward.DefaultTenant, id, "gw-100", map[string]string{"ring": firmware})
			d.Firmware = firmware
			if _, err := e.store.UpdateDevice(ctx, d); err != nil {
				t.Fatal(err)
			}
			if err := e.store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: n%2 == 0}); err != nil {
				t.Fatal(err)
			}
			for h := range 3 {
				samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu",
					At: from.Add(time.Duration(h) * time.Hour), Value: cpu(i)})
			}
			r := reboots
			if reboots < 0 { // -1: one reboot for every third device
				r = 0
				if i%3 == 0 {
					r = 1
				}
			}
			for k := range r {
				at := from.Add(time.Duration(k) * time.Minute)
				evs = append(evs, steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: "reboot",
					Severity: steward.SeverityWarning, At: at, Received: at})
			}
			// Outside the window: never counted.
			late := from.Add(48 * time.Hour)
			evs = append(evs, steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: "reboot",
				Severity: steward.SeverityWarning, At: late, Received: late})
		}
	}
	add("1.0.0", 30, -1, func(i int) float64 { return 40 + float64(i%5) })
	add("2.1.0", 25, 12, func(int) float64 { return 70 })
	add("0.9.0", 5, 20, func(int) float64 { return 42 })
	if err := e.store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := e.store.AddDeviceEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
}

func TestFleetAnalytics(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	from := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	seedFleet(t, e, from)
	window := "&from=2026-11-01T00:00:00Z&to=2026-11-03T00:00:00Z"

	var st steward.FleetStats
	e.must(t, http.StatusOK, "GET", "/api/v1/fleet/stats?group_by=firmware&metric=cpu&event=reboot"+window, e.system, nil).decode(t, &st)
	if st.Devices != 60 || st.Days != 2 || len(st.Groups) != 3 || st.GroupBy != "firmware" {
		t.Fatalf("stats %+v", st)
	}
	var got []string
	for _, g := range st.Groups {
		got = append(got, fmt.Sprintf("%s n=%d online=%d ev=%d rate=%g cpu=%g/%g/%g/%d", g.Value, g.Devices, g.Online,
			g.Event.Events, g.Event.PerDeviceDay, g.Metric.Mean, g.Metric.P50, g.Metric.P95, g.Metric.Devices))
	}
	want := []string{
		"1.0.0 n=30 online=15 ev=10 rate=0.16666666666666666 cpu=42/42/44/30",
		"2.1.0 n=25 online=12 ev=300 rate=6 cpu=70/70/70/25",
		"0.9.0 n=5 online=3 ev=100 rate=10 cpu=42/42/42/5",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("groups\n got %q\nwant %q", got, want)
	}

	// The scope and a label grouping; no metric, no event.
	st = steward.FleetStats{}
	e.must(t, http.StatusOK, "GET", "/api/v1/fleet/stats?group_by=labels.ring&q="+url.QueryEscape(`firmware >= 1.0.0`)+window, e.system, nil).decode(t, &st)
	if st.Devices != 55 || len(st.Groups) != 2 || st.Groups[0].Value != "1.0.0" || st.Groups[0].Metric != nil || st.Groups[0].Event != nil ||
		st.Groups[0].OnlineShare != 0.5 {
		t.Fatalf("scoped stats %+v", st)
	}

	var out steward.FleetOutliers
	e.must(t, http.StatusOK, "GET", "/api/v1/fleet/outliers?group_by=firmware&metric=cpu&event=reboot"+window, e.system, nil).decode(t, &out)
	if out.Rule.MinDevices != 20 || out.Devices != 60 || len(out.Outliers) != 2 {
		t.Fatalf("outliers %+v", out)
	}
	ev, m := out.Outliers[0], out.Outliers[1]
	if ev.Kind != steward.OutlierEvent || ev.Value != "2.1.0" || ev.Devices != 25 || ev.RestDevices != 35 || ev.Observed != 6 ||
		fmt.Sprintf("%.4f", ev.Rest) != "1.5714" {
		t.Fatalf("event outlier %+v", ev)
	}
	if want := "firmware 2.1.0: 6 reboots per device-day against 1.6 for the rest of the fleet, 25 devices"; ev.Evidence != want {
		t.Fatalf("evidence %q, want %q", ev.Evidence, want)
	}
	if m.Kind != steward.OutlierMetric || m.Value != "2.1.0" || m.Observed != 70 || m.Rest != 42 || m.Spread != 1.4826 ||
		m.Evidence != "firmware 2.1.0: cpu mean 70 against a median of 42 for the rest of the fleet (spread 1.5), 25 devices" {
		t.Fatalf("metric outlier %+v", m)
	}

	out = steward.FleetOutliers{}
	// The 5 devices of 0.9.0 reboot most of all (10 a day against 2.8 for
	// the rest) but are too few to be compared, unless asked.
	e.must(t, http.StatusOK, "GET", "/api/v1/fleet/outliers?group_by=firmware&event=reboot&min_devices=5"+window, e.system, nil).decode(t, &out)
	var flagged []string
	for _, o := range out.Outliers {
		flagged = append(flagged, o.Value)
	}
	if fmt.Sprint(flagged) != "[0.9.0 2.1.0]" || out.Rule.MinDevices != 5 {
		t.Fatalf("with min_devices=5: %+v", out)
	}

	// Another tenant sees none of it.
	other := e.newTenant(t, "other")
	st = steward.FleetStats{}
	e.must(t, http.StatusOK, "GET", "/api/v1/fleet/stats?group_by=firmware&event=reboot"+window, other, nil).decode(t, &st)
	if st.Devices != 0 || len(st.Groups) != 0 {
		t.Fatalf("another tenant's stats %+v", st)
	}

	bad := map[string]string{
		"no group_by":          "/api/v1/fleet/stats?metric=cpu",
		"bad group_by":         "/api/v1/fleet/stats?group_by=owner",
		"bad label":            "/api/v1/fleet/stats?group_by=labels.",
		"bad query":            "/api/v1/fleet/stats?group_by=model&q=" + url.QueryEscape("model = "),
		"unknown field":        "/api/v1/fleet/stats?group_by=model&q=colour%3Dred",
		"bad event":            "/api/v1/fleet/stats?group_by=model&event=a%2Fb",
		"bad from":             "/api/v1/fleet/stats?group_by=model&from=yesterday",
		"to before from":       "/api/v1/fleet/stats?group_by=model&from=2026-11-03T00:00:00Z&to=2026-11-01T00:00:00Z",
		"too long":             "/api/v1/fleet/stats?group_by=model&from=2024-11-03T00:00:00Z&to=2026-11-01T00:00:00Z",
		"unknown parameter":    "/api/v1/fleet/stats?group_by=model&limit=3",
		"outliers of nothing":  "/api/v1/fleet/outliers?group_by=model",
		"bad min_devices":      "/api/v1/fleet/outliers?group_by=model&event=reboot&min_devices=0",
		"min_devices on stats": "/api/v1/fleet/stats?group_by=model&min_devices=3",
	}
	for name, path := range bad {
		t.Run(name, func(t *testing.T) {
			r := e.must(t, http.StatusBadRequest, "GET", path, e.system, nil)
			if p := r.problem(t); p.Code != steward.CodeInvalid {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	r := e.must(t, http.StatusUnauthorized, "GET", "/api/v1/fleet/stats?group_by=model", "", nil)
	if p := r.problem(t); !strings.Contains(p.Detail, "token") {
		t.Fatalf("problem %+v", p)
	}
}

// TestFleetAnalyticsDisabled checks the answer of a server without the
// analytics service.
func TestFleetAnalyticsDisabled(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.api.cfg.Analytics = nil
	r := e.must(t, http.StatusServiceUnavailable, "GET", "/api/v1/fleet/stats?group_by=model", e.system, nil)
	if p := r.problem(t); p.Code != steward.CodeUnavailable {
		t.Fatalf("problem %+v", p)
	}
}
