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

func TestDeviceHistory(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	id := devID(42)
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2026, 11, 27, 10, 0, 0, 123456000, time.UTC)
	ev := func(typ string, sev steward.Severity, min int) steward.DeviceEvent {
		at := base.Add(time.Duration(min) * time.Minute)
		return steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: typ, Severity: sev, Message: typ, At: at, Received: at}
	}
	if err := env.Store.AddDeviceEvents(ctx, []steward.DeviceEvent{ev("boot", steward.SeverityInfo, 0), ev("oom", steward.SeverityError, 1), ev("log", steward.SeverityDebug, 2)}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		f    steward.DeviceEventFilter
		want []string
	}{
		{"all", steward.DeviceEventFilter{}, []string{"log", "oom", "boot"}},
		{"type", steward.DeviceEventFilter{Type: "boot"}, []string{"boot"}},
		{"severity", steward.DeviceEventFilter{MinSeverity: steward.SeverityInfo}, []string{"oom", "boot"}},
		// The times keep their fraction: from is inclusive to the microsecond.
		{"range", steward.DeviceEventFilter{From: base.Add(time.Minute), To: base.Add(2 * time.Minute)}, []string{"oom"}},
		{"limit", steward.DeviceEventFilter{Limit: 1}, []string{"log"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			evs, err := c.ListDeviceEvents(ctx, id, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, e.Type)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
	if _, err := c.ListDeviceEvents(ctx, id, steward.DeviceEventFilter{MinSeverity: "fatal"}); steward.ErrorCode(err) != steward.CodeInvalid || !client.IsStatus(err, 400) {
		t.Fatalf("bad severity: %v", err)
	}
	if _, err := c.ListDeviceEvents(ctx, devID(43), steward.DeviceEventFilter{}); !steward.IsNotFound(err) {
		t.Fatalf("unknown device: %v", err)
	}

	for i, online := range []bool{true, false, true} {
		if err := env.Store.AddPresenceEvent(ctx, steward.PresenceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Online: online, At: base.Add(time.Duration(i) * 10 * time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	items, sum, err := c.DevicePresence(ctx, id, base, base.Add(time.Hour), 0)
	if err != nil || len(items) != 3 || !items[0].Online || !items[0].At.Equal(base.Add(20*time.Minute)) {
		t.Fatalf("presence %+v %v", items, err)
	}
	if sum.Connects != 2 || sum.Disconnects != 1 || sum.Reconnects != 1 || sum.ReconnectsPerHour != 1 || !sum.From.Equal(base) || !sum.To.Equal(base.Add(time.Hour)) {
		t.Fatalf("summary %+v", sum)
	}
	if items, _, err = c.DevicePresence(ctx, id, time.Time{}, time.Time{}, 1); err != nil || len(items) > 1 {
		t.Fatalf("default window: %+v %v", items, err)
	}
	if _, _, err := c.DevicePresence(ctx, id, base.Add(time.Hour), base, 0); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("from after to: %v", err)
	}
	if _, _, err := c.DevicePresence(ctx, devID(43), time.Time{}, time.Time{}, 0); !steward.IsNotFound(err) {
		t.Fatalf("unknown device: %v", err)
	}
}
