package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// addEvents stores events of a device, as the events handler would.
func (e *testEnv) addEvents(t *testing.T, evs ...steward.DeviceEvent) {
	t.Helper()
	if err := e.store.AddDeviceEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

func TestDeviceEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id := deviceID("ev")
	e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	ev := func(typ string, sev steward.Severity, msg string, min int) steward.DeviceEvent {
		at := base.Add(time.Duration(min) * time.Minute)
		return steward.DeviceEvent{TenantID: steward.DefaultTenant, DeviceID: id, Type: typ, Severity: sev, Message: msg, At: at, Received: at}
	}
	crash := ev("crash", steward.SeverityCritical, "segfault", 3)
	crash.Fields = map[string]any{"pid": 4242, "proc": "collector"}
	e.addEvents(t, ev("boot", steward.SeverityInfo, "booted", 0), ev("log", steward.SeverityDebug, "noise", 1),
		ev("log", steward.SeverityWarning, "disk 90%", 2), crash)

	messages := func(r response) []string {
		var l List[steward.DeviceEvent]
		r.decode(t, &l)
		out := []string{}
		for _, e := range l.Items {
			out = append(out, e.Message)
		}
		return out
	}
	path := "/api/v1/devices/" + id + "/events"
	tests := []struct {
		query string
		want  string
	}{
		{"", "[segfault disk 90% noise booted]"},
		{"type=log", "[disk 90% noise]"},
		{"severity=warning", "[segfault disk 90%]"},
		{"type=log&severity=notice", "[disk 90%]"},
		{"from=2026-11-27T10:01:00Z&to=2026-11-27T10:03:00Z", "[disk 90% noise]"},
		{"from=2026-11-27T11:01:00%2B01:00", "[segfault disk 90% noise]"},
		{"limit=1", "[segfault]"},
		{"type=none", "[]"},
	}
	for _, tt := range tests {
		t.Run("query "+tt.query, func(t *testing.T) {
			r := e.must(t, http.StatusOK, "GET", path+"?"+tt.query, e.system, nil)
			if got := fmt.Sprint(messages(r)); got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
	var l List[steward.DeviceEvent]
	e.must(t, http.StatusOK, "GET", path+"?limit=1", e.system, nil).decode(t, &l)
	if got := l.Items[0]; got.Type != "crash" || got.Severity != steward.SeverityCritical || fmt.Sprint(got.Fields["pid"]) != "4242" || !got.At.Equal(crash.At) {
		t.Fatalf("event = %+v", got)
	}

	bad := map[string]string{
		"unknown parameter": "kind=x",
		"bad severity":      "severity=fatal",
		"bad type":          "type=a%2Fb",
		"bad from":          "from=yesterday",
		"bad to":            "to=1795773600000",
		"to before from":    "from=2026-11-27T11:00:00Z&to=2026-11-27T10:00:00Z",
		"limit 0":           "limit=0",
		"limit too large":   "limit=1001",
	}
	for name, query := range bad {
		t.Run(name, func(t *testing.T) {
			r := e.must(t, http.StatusBadRequest, "GET", path+"?"+query, e.system, nil)
			if p := r.problem(t); p.Code != steward.CodeInvalid {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	t.Run("unknown device", func(t *testing.T) {
		e.must(t, http.StatusNotFound, "GET", "/api/v1/devices/"+deviceID("none")+"/events", e.system, nil).problem(t)
	})
	t.Run("another tenant's device", func(t *testing.T) {
		other := e.newTenant(t, "other-ev")
		e.must(t, http.StatusNotFound, "GET", path, other, nil).problem(t)
	})
	t.Run("no token", func(t *testing.T) {
		e.must(t, http.StatusUnauthorized, "GET", path, "", nil).problem(t)
	})
}

func TestDevicePresence(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := deviceID("pr")
	e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	// First connect at 10:00, then reconnects at 10:30, 11:15 and 11:45:
	// four connects, three disconnects, three reconnects.
	for _, c := range []struct {
		online bool
		min    int
	}{{true, 0}, {false, 29}, {true, 30}, {false, 70}, {true, 75}, {false, 100}, {true, 105}} {
		if err := e.store.AddPresenceEvent(ctx, steward.PresenceEvent{TenantID: steward.DefaultTenant, DeviceID: id,
			Online: c.online, At: base.Add(time.Duration(c.min) * time.Minute), RemoteAddr: "192.0.2.1:1"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: true, ConnectedSince: base.Add(105 * time.Minute)}); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/devices/" + id + "/presence"
	q := func(from, to string) string {
		v := url.Values{}
		if from != "" {
			v.Set("from", from)
		}
		if to != "" {
			v.Set("to", to)
		}
		return path + "?" + v.Encode()
	}
	tests := []struct {
		name      string
		path      string
		items     int
		want      steward.PresenceSummary
		firstItem string // online and time of the newest item
	}{
		{"whole history", q("2026-11-27T10:00:00Z", "2026-11-27T12:00:00Z"), 7,
			steward.PresenceSummary{Online: true, Connects: 4, Disconnects: 3, Reconnects: 3, ReconnectsPerHour: 1.5}, "true 11:45"},
		{"a window after the first connect", q("2026-11-27T10:15:00Z", "2026-11-27T11:15:00Z"), 3,
			steward.PresenceSummary{Online: true, Connects: 1, Disconnects: 2, Reconnects: 1, ReconnectsPerHour: 1}, "false 11:10"},
		{"a quiet window", q("2026-11-27T12:00:00Z", "2026-11-27T14:00:00Z"), 0,
			steward.PresenceSummary{Online: true}, ""},
		{"limit caps the items, not the summary", q("2026-11-27T10:00:00Z", "2026-11-27T12:00:00Z") + "&limit=2", 2,
			steward.PresenceSummary{Online: true, Connects: 4, Disconnects: 3, Reconnects: 3, ReconnectsPerHour: 1.5}, "true 11:45"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h PresenceHistory
			e.must(t, http.StatusOK, "GET", tt.path, e.system, nil).decode(t, &h)
			got := h.Summary
			got.From, got.To = time.Time{}, time.Time{}
			if got != tt.want || len(h.Items) != tt.items {
				t.Fatalf("summary %+v with %d items, want %+v with %d", h.Summary, len(h.Items), tt.want, tt.items)
			}
			if tt.items > 0 {
				if first := fmt.Sprint(h.Items[0].Online, " ", h.Items[0].At.Format("15:04")); first != tt.firstItem {
					t.Fatalf("newest item %s, want %s", first, tt.firstItem)
				}
			}
		})
	}
	t.Run("the default window is the last day", func(t *testing.T) {
		var h PresenceHistory
		e.must(t, http.StatusOK, "GET", path, e.system, nil).decode(t, &h)
		if span := h.Summary.To.Sub(h.Summary.From); span != DefaultPresenceWindow || time.Since(h.Summary.To) > time.Minute {
			t.Fatalf("window %v to %v", h.Summary.From, h.Summary.To)
		}
	})

	bad := map[string]string{
		"unknown parameter": "type=x",
		"bad from":          "from=noon",
		"from after to":     "from=2026-11-27T12:00:00Z&to=2026-11-27T10:00:00Z",
		"empty window":      "from=2026-11-27T12:00:00Z&to=2026-11-27T12:00:00Z",
		"limit too large":   "limit=5000",
	}
	for name, query := range bad {
		t.Run(name, func(t *testing.T) {
			if p := e.must(t, http.StatusBadRequest, "GET", path+"?"+query, e.system, nil).problem(t); p.Code != steward.CodeInvalid {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	t.Run("unknown device", func(t *testing.T) {
		e.must(t, http.StatusNotFound, "GET", "/api/v1/devices/"+deviceID("none")+"/presence", e.system, nil).problem(t)
	})
	t.Run("another tenant's device", func(t *testing.T) {
		other := e.newTenant(t, "other-pr")
		e.must(t, http.StatusNotFound, "GET", path, other, nil).problem(t)
	})
}
