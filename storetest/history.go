package storetest

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// devEvent returns an event of tenant A's device d-1.
func devEvent(typ string, sev steward.Severity, msg string, when time.Time) steward.DeviceEvent {
	return steward.DeviceEvent{TenantID: tenantA, DeviceID: "d-1", Type: typ, Severity: sev, Message: msg, At: when, Received: when.Add(time.Second)}
}

// eventMessages returns the messages of events, in order.
func eventMessages(evs []steward.DeviceEvent) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Message)
	}
	return out
}

// sameEvent fails unless got is want as stored (times in UTC to the
// microsecond, fields equal as JSON).
func sameEvent(t *testing.T, got, want steward.DeviceEvent) {
	t.Helper()
	gf, _ := json.Marshal(got.Fields)
	wf, _ := json.Marshal(want.Fields)
	if got.ID == 0 {
		t.Fatalf("event without an ID: %+v", got)
	}
	want.ID = got.ID
	want.At, want.Received = stored(want.At), stored(want.Received)
	if !equalEvents(got, want) || string(gf) != string(wf) {
		t.Fatalf("event differs:\n got %+v fields %s\nwant %+v fields %s", got, gf, want, wf)
	}
}

func equalEvents(a, b steward.DeviceEvent) bool {
	return a.ID == b.ID && a.TenantID == b.TenantID && a.DeviceID == b.DeviceID && a.Type == b.Type &&
		a.Severity == b.Severity && a.Message == b.Message && a.At.Equal(b.At) && a.Received.Equal(b.Received) &&
		a.At.Location() == time.UTC && a.Received.Location() == time.UTC
}

func testDeviceEvents(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	withFields := devEvent("crash", steward.SeverityCritical, "segfault", at(3*time.Minute))
	withFields.Fields = map[string]any{"pid": json.Number("4242"), "counter": json.Number("18446744073709551615"), "proc": "collector", "ok": false, "tags": []any{"a", "b"}, "nested": map[string]any{"x": json.Number("1.5")}}
	batch := []steward.DeviceEvent{
		devEvent("boot", steward.SeverityInfo, "booted", t0),
		devEvent("log", steward.SeverityDebug, "debug line", at(time.Minute)),
		devEvent("log", steward.SeverityWarning, "disk 90%", at(2*time.Minute)),
		withFields,
		devEvent("log", steward.SeverityError, "same time, later", at(3*time.Minute)),
	}
	must(t, s.AddDeviceEvents(c, batch))
	must(t, s.AddDeviceEvents(c, nil))
	other := devEvent("boot", steward.SeverityInfo, "d-2 booted", at(time.Minute))
	other.DeviceID = "d-2"
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{other}))

	all, err := s.ListDeviceEvents(c, tenantA, "d-1", steward.DeviceEventFilter{})
	must(t, err)
	// Newest first; of equal times, the later arrival first.
	eqStrings(t, "all events", eventMessages(all), []string{"same time, later", "segfault", "disk 90%", "debug line", "booted"})
	sameEvent(t, all[1], withFields)
	sameEvent(t, all[4], batch[0])
	if all[4].Fields != nil {
		t.Fatalf("an event without fields reads back with %v", all[4].Fields)
	}
	if n, ok := all[1].Fields["counter"].(json.Number); !ok || n.String() != "18446744073709551615" {
		t.Fatalf("a 64-bit counter did not survive: %#v", all[1].Fields["counter"])
	}

	tests := []struct {
		name string
		f    steward.DeviceEventFilter
		want []string
	}{
		{"type", steward.DeviceEventFilter{Type: "log"}, []string{"same time, later", "disk 90%", "debug line"}},
		{"min severity warning", steward.DeviceEventFilter{MinSeverity: steward.SeverityWarning}, []string{"same time, later", "segfault", "disk 90%"}},
		{"min severity debug is all", steward.DeviceEventFilter{MinSeverity: steward.SeverityDebug}, []string{"same time, later", "segfault", "disk 90%", "debug line", "booted"}},
		{"min severity critical", steward.DeviceEventFilter{MinSeverity: steward.SeverityCritical}, []string{"segfault"}},
		{"type and severity", steward.DeviceEventFilter{Type: "log", MinSeverity: steward.SeverityNotice}, []string{"same time, later", "disk 90%"}},
		{"from is in, to is out", steward.DeviceEventFilter{From: at(time.Minute), To: at(3 * time.Minute)}, []string{"disk 90%", "debug line"}},
		{"from only", steward.DeviceEventFilter{From: at(2 * time.Minute)}, []string{"same time, later", "segfault", "disk 90%"}},
		{"to only", steward.DeviceEventFilter{To: at(time.Minute)}, []string{"booted"}},
		{"limit keeps the newest", steward.DeviceEventFilter{Limit: 2}, []string{"same time, later", "segfault"}},
		{"unknown type", steward.DeviceEventFilter{Type: "nothing"}, nil},
		{"empty range", steward.DeviceEventFilter{From: at(time.Hour), To: at(time.Hour)}, nil},
	}
	for _, tc := range tests {
		got, err := s.ListDeviceEvents(c, tenantA, "d-1", tc.f)
		must(t, err)
		eqStrings(t, tc.name, eventMessages(got), tc.want)
	}
	got, err := s.ListDeviceEvents(c, tenantA, "d-2", steward.DeviceEventFilter{})
	must(t, err)
	eqStrings(t, "the other device", eventMessages(got), []string{"d-2 booted"})
}

func testDeviceEventsInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	good := devEvent("boot", steward.SeverityInfo, "ok", t0)
	bad := func(mutate func(e *steward.DeviceEvent)) steward.DeviceEvent {
		e := good
		mutate(&e)
		return e
	}
	tests := []struct {
		name string
		e    steward.DeviceEvent
		code steward.Code
	}{
		{"no tenant", bad(func(e *steward.DeviceEvent) { e.TenantID = "" }), steward.CodeInvalid},
		{"no device", bad(func(e *steward.DeviceEvent) { e.DeviceID = "" }), steward.CodeInvalid},
		{"no type", bad(func(e *steward.DeviceEvent) { e.Type = "" }), steward.CodeInvalid},
		{"type with a slash", bad(func(e *steward.DeviceEvent) { e.Type = "a/b" }), steward.CodeInvalid},
		{"type too long", bad(func(e *steward.DeviceEvent) { e.Type = strings.Repeat("t", 65) }), steward.CodeInvalid},
		{"unknown severity", bad(func(e *steward.DeviceEvent) { e.Severity = "fatal" }), steward.CodeInvalid},
		{"no severity", bad(func(e *steward.DeviceEvent) { e.Severity = "" }), steward.CodeInvalid},
		{"message too long", bad(func(e *steward.DeviceEvent) { e.Message = strings.Repeat("m", 4097) }), steward.CodeInvalid},
		{"no time", bad(func(e *steward.DeviceEvent) { e.At = time.Time{} }), steward.CodeInvalid},
		{"no time of receipt", bad(func(e *steward.DeviceEvent) { e.Received = time.Time{} }), steward.CodeInvalid},
		{"unknown device", bad(func(e *steward.DeviceEvent) { e.DeviceID = "d-none" }), steward.CodeNotFound},
		{"fields that are not JSON", bad(func(e *steward.DeviceEvent) { e.Fields = map[string]any{"f": func() {}} }), steward.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// The good event before the bad one must not land either.
			wantCode(t, s.AddDeviceEvents(c, []steward.DeviceEvent{good, tc.e}), tc.code)
		})
	}
	// The longest message and type are fine.
	edge := bad(func(e *steward.DeviceEvent) {
		e.Message, e.Type = strings.Repeat("m", 4096), strings.Repeat("t", 64)
	})
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{edge}))
	got, err := s.ListDeviceEvents(c, tenantA, "d-1", steward.DeviceEventFilter{})
	must(t, err)
	if len(got) != 1 || got[0].Message != edge.Message {
		t.Fatalf("refused batches were written: %d events", len(got))
	}

	for name, f := range map[string]steward.DeviceEventFilter{
		"negative limit":   {Limit: -1},
		"unknown severity": {MinSeverity: "fatal"},
		"bad type":         {Type: "a b"},
		"to before from":   {From: at(time.Hour), To: t0},
	} {
		_, err := s.ListDeviceEvents(c, tenantA, "d-1", f)
		if steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

func testDeviceEventsIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantB, "d-b")))
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{devEvent("boot", steward.SeverityInfo, "A's", t0)}))

	got, err := s.ListDeviceEvents(c, tenantB, "d-1", steward.DeviceEventFilter{})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("tenant B reads tenant A's events: %+v", got)
	}
	// Tenant B cannot write into tenant A's device, not even in a batch
	// with one of its own.
	forged := devEvent("boot", steward.SeverityInfo, "forged", t0)
	forged.TenantID = tenantB
	own := forged
	own.DeviceID, own.Message = "d-b", "B's"
	wantCode(t, s.AddDeviceEvents(c, []steward.DeviceEvent{own, forged}), steward.CodeNotFound)
	got, err = s.ListDeviceEvents(c, tenantA, "d-1", steward.DeviceEventFilter{})
	must(t, err)
	eqStrings(t, "tenant A's events", eventMessages(got), []string{"A's"})
	got, err = s.ListDeviceEvents(c, tenantB, "d-b", steward.DeviceEventFilter{})
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("half of a refused batch was written: %+v", got)
	}
}

// presence returns a presence event of tenant A's device d-1.
func presence(online bool, when time.Time) steward.PresenceEvent {
	return steward.PresenceEvent{TenantID: tenantA, DeviceID: "d-1", Online: online, At: when, RemoteAddr: "192.0.2.1:1234"}
}

// onlines renders a presence history as "+" (connect) and "-" (disconnect)
// with the minute of each change.
func onlines(evs []steward.PresenceEvent) []string {
	out := []string{}
	for _, e := range evs {
		sign := "-"
		if e.Online {
			sign = "+"
		}
		out = append(out, sign+e.At.Sub(stored(t0)).String())
	}
	return out
}

func testPresenceEvents(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	hist := []steward.PresenceEvent{
		presence(true, t0),
		presence(false, at(10*time.Minute)),
		presence(true, at(11*time.Minute)),
		presence(false, at(30*time.Minute)),
		presence(true, at(30*time.Minute)), // a takeover: same time, later arrival
	}
	for _, e := range hist {
		must(t, s.AddPresenceEvent(c, e))
	}
	o := presence(true, at(5*time.Minute))
	o.DeviceID = "d-2"
	must(t, s.AddPresenceEvent(c, o))

	got, err := s.ListPresenceEvents(c, tenantA, "d-1", time.Time{}, time.Time{}, 0)
	must(t, err)
	eqStrings(t, "history", onlines(got), []string{"+30m0s", "-30m0s", "+11m0s", "-10m0s", "+0s"})
	want := hist[4]
	want.ID, want.At = got[0].ID, stored(want.At)
	if got[0] != want || got[0].ID == 0 || got[0].At.Location() != time.UTC {
		t.Fatalf("newest presence event = %+v, want %+v", got[0], want)
	}

	tests := []struct {
		name     string
		from, to time.Time
		limit    int
		want     []string
	}{
		{"from is in, to is out", at(10 * time.Minute), at(30 * time.Minute), 0, []string{"+11m0s", "-10m0s"}},
		{"from only", at(11 * time.Minute), time.Time{}, 0, []string{"+30m0s", "-30m0s", "+11m0s"}},
		{"limit keeps the newest", time.Time{}, time.Time{}, 2, []string{"+30m0s", "-30m0s"}},
		{"nothing in range", at(time.Hour), at(2 * time.Hour), 0, nil},
	}
	for _, tc := range tests {
		got, err := s.ListPresenceEvents(c, tenantA, "d-1", tc.from, tc.to, tc.limit)
		must(t, err)
		eqStrings(t, tc.name, onlines(got), tc.want)
	}

	counts := []struct {
		from, to time.Time
		want     steward.PresenceCounts
	}{
		{time.Time{}, time.Time{}, steward.PresenceCounts{Connects: 3, Disconnects: 2}},
		{at(time.Minute), at(30 * time.Minute), steward.PresenceCounts{Connects: 1, Disconnects: 1}},
		{at(time.Hour), time.Time{}, steward.PresenceCounts{}},
	}
	for _, tc := range counts {
		got, err := s.CountPresenceEvents(c, tenantA, "d-1", tc.from, tc.to)
		must(t, err)
		if got != tc.want {
			t.Fatalf("CountPresenceEvents(%v, %v) = %+v, want %+v", tc.from, tc.to, got, tc.want)
		}
	}
}

func testPresenceEventsInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	noTenant := presence(true, t0)
	noTenant.TenantID = ""
	noDevice := presence(true, t0)
	noDevice.DeviceID = ""
	unknown := presence(true, t0)
	unknown.DeviceID = "d-none"
	wantCode(t, s.AddPresenceEvent(c, noTenant), steward.CodeInvalid)
	wantCode(t, s.AddPresenceEvent(c, noDevice), steward.CodeInvalid)
	wantCode(t, s.AddPresenceEvent(c, presence(true, time.Time{})), steward.CodeInvalid)
	wantCode(t, s.AddPresenceEvent(c, unknown), steward.CodeNotFound)
	got, err := s.ListPresenceEvents(c, tenantA, "d-1", time.Time{}, time.Time{}, 0)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("refused presence events were written: %+v", got)
	}
	_, err = s.ListPresenceEvents(c, tenantA, "d-1", time.Time{}, time.Time{}, -1)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.ListPresenceEvents(c, tenantA, "d-1", at(time.Hour), t0, 0)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.CountPresenceEvents(c, tenantA, "d-1", at(time.Hour), t0)
	wantCode(t, err, steward.CodeInvalid)
}

func testPresenceEventsIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.AddPresenceEvent(c, presence(true, t0)))
	got, err := s.ListPresenceEvents(c, tenantB, "d-1", time.Time{}, time.Time{}, 0)
	must(t, err)
	if len(got) != 0 {
		t.Fatalf("tenant B reads tenant A's presence history: %+v", got)
	}
	n, err := s.CountPresenceEvents(c, tenantB, "d-1", time.Time{}, time.Time{})
	must(t, err)
	if n != (steward.PresenceCounts{}) {
		t.Fatalf("tenant B counts tenant A's presence history: %+v", n)
	}
	forged := presence(false, at(time.Minute))
	forged.TenantID = tenantB
	wantCode(t, s.AddPresenceEvent(c, forged), steward.CodeNotFound)
	got, err = s.ListPresenceEvents(c, tenantA, "d-1", time.Time{}, time.Time{}, 0)
	must(t, err)
	eqStrings(t, "tenant A's history", onlines(got), []string{"+0s"})
}
