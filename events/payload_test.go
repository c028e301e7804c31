package events

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	type want struct {
		typ    string
		sev    steward.Severity
		msg    string
		at     time.Time
		fields string // JSON of Fields, "null" for none
	}
	tests := []struct {
		name    string
		payload string
		want    []want
	}{
		{"object", `{"ts":"2026-11-27T10:00:00Z","type":"reboot","severity":"warning","message":"watchdog"}`,
			[]want{{"reboot", steward.SeverityWarning, "watchdog", at, "null"}}},
		{"defaults: now and info", `{"type":"boot"}`, []want{{"boot", steward.SeverityInfo, "", now, "null"}}},
		{"null ts, severity and message are absent", `{"type":"boot","ts":null,"severity":null,"message":null}`,
			[]want{{"boot", steward.SeverityInfo, "", now, "null"}}},
		{"unix millis", `{"ts":1795773600000,"type":"boot"}`, []want{{"boot", steward.SeverityInfo, "", time.UnixMilli(1795773600000).UTC(), "null"}}},
		{"zone converted to UTC", `{"ts":"2026-11-27T11:00:00+01:00","type":"boot"}`, []want{{"boot", steward.SeverityInfo, "", at, "null"}}},
		{"other keys kept as fields", ` {"type":"crash","severity":"critical","pid":4242,"counter":18446744073709551615,"proc":"collector","tags":["a"],"ctx":{"x":1.5},"ok":false,"none":null} `,
			[]want{{"crash", steward.SeverityCritical, "", now, `{"counter":18446744073709551615,"ctx":{"x":1.5},"none":null,"ok":false,"pid":4242,"proc":"collector","tags":["a"]}`}}},
		{"every severity", `[{"type":"a","severity":"debug"},{"type":"a","severity":"info"},{"type":"a","severity":"notice"},{"type":"a","severity":"warning"},{"type":"a","severity":"error"},{"type":"a","severity":"critical"}]`,
			[]want{{"a", "debug", "", now, "null"}, {"a", "info", "", now, "null"}, {"a", "notice", "", now, "null"}, {"a", "warning", "", now, "null"}, {"a", "error", "", now, "null"}, {"a", "critical", "", now, "null"}}},
		{"longest type and message", `{"type":"` + strings.Repeat("t", 64) + `","message":"` + strings.Repeat("é", 2048) + `"}`,
			[]want{{strings.Repeat("t", 64), steward.SeverityInfo, strings.Repeat("é", 2048), now, "null"}}},
		{"type characters", `{"type":"Fw.update-OK_2"}`, []want{{"Fw.update-OK_2", steward.SeverityInfo, "", now, "null"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tt.payload), "t1", "d-1", now)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, e := range got {
				w := tt.want[i]
				fields, _ := json.Marshal(e.Fields)
				if e.TenantID != "t1" || e.DeviceID != "d-1" || e.Type != w.typ || e.Severity != w.sev || e.Message != w.msg ||
					!e.At.Equal(w.at) || e.At.Location() != time.UTC || !e.Received.Equal(now) || string(fields) != w.fields {
					t.Errorf("event %d = %+v fields %s, want %+v", i, e, fields, w)
				}
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxEventsPerMessage+1)
	for i := range many {
		many[i] = fmt.Sprintf(`{"type":"e%d"}`, i)
	}
	tests := map[string]struct {
		payload string
		code    steward.Code
		msg     string // in the error
	}{
		"empty":                 {``, steward.CodeInvalid, "JSON object or array"},
		"not json":              {`reboot`, steward.CodeInvalid, "JSON object or array"},
		"broken json":           {`{"type":"a"`, steward.CodeInvalid, "syntax error"},
		"trailing garbage":      {`{"type":"a"}}`, steward.CodeInvalid, "not a JSON object"},
		"no type":               {`{"message":"hi"}`, steward.CodeInvalid, "type is required"},
		"null type":             {`{"type":null}`, steward.CodeInvalid, "type is required"},
		"empty type":            {`{"type":""}`, steward.CodeInvalid, "type"},
		"type not a string":     {`{"type":7}`, steward.CodeInvalid, "type is required and must be a string"},
		"type with a space":     {`{"type":"re boot"}`, steward.CodeInvalid, "letters, digits"},
		"type with a slash":     {`{"type":"a/b"}`, steward.CodeInvalid, "letters, digits"},
		"type too long":         {`{"type":"` + strings.Repeat("t", 65) + `"}`, steward.CodeInvalid, "1 to 64"},
		"unknown severity":      {`{"type":"a","severity":"fatal"}`, steward.CodeInvalid, "severity must be one of"},
		"severity in capitals":  {`{"type":"a","severity":"INFO"}`, steward.CodeInvalid, "severity must be one of"},
		"severity not a string": {`{"type":"a","severity":3}`, steward.CodeInvalid, "severity must be one of"},
		"message not a string":  {`{"type":"a","message":{"x":1}}`, steward.CodeInvalid, "message must be a string"},
		"message too long":      {`{"type":"a","message":"` + strings.Repeat("m", 4097) + `"}`, steward.CodeInvalid, "at most 4096"},
		"bad ts":                {`{"type":"a","ts":"yesterday"}`, steward.CodeInvalid, "RFC 3339"},
		"negative ts":           {`{"type":"a","ts":-5}`, steward.CodeInvalid, "Unix milliseconds"},
		"ts as quoted ms":       {`{"type":"a","ts":"1795773600000"}`, steward.CodeInvalid, "RFC 3339"},
		"ts as object":          {`{"type":"a","ts":{}}`, steward.CodeInvalid, "Unix milliseconds"},
		"zero ts":               {`{"type":"a","ts":"0001-01-01T00:00:00Z"}`, steward.CodeInvalid, "time"},
		"empty array":           {`[]`, steward.CodeInvalid, "empty array"},
		"array of numbers":      {`[1,2]`, steward.CodeInvalid, "events[0]: not a JSON object"},
		"one bad in array":      {`[{"type":"a"},{"type":"b","severity":"loud"}]`, steward.CodeInvalid, "events[1]"},
		"too many events":       {"[" + strings.Join(many, ",") + "]", steward.CodeTooLarge, "at most 100"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tt.payload), "t", "d", time.Now())
			if steward.ErrorCode(err) != tt.code || got != nil {
				t.Fatalf("Decode = %v, %v; want nothing and %s", got, err, tt.code)
			}
			if !strings.Contains(steward.ErrorMessage(err), tt.msg) {
				t.Fatalf("message %q does not say %q", steward.ErrorMessage(err), tt.msg)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"ts":"2026-11-27T10:00:00Z","type":"reboot","severity":"info","message":"watchdog"}`))
	f.Add([]byte(`[{"ts":1795773600000,"type":"a","x":[1,{"y":null}]},{"type":"b","severity":"critical"}]`))
	f.Add([]byte(`{"type":""}`))
	f.Add([]byte(`{"type":"a","message":"\u00e9\ud800"}`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		evs, err := Decode(b, "t", "d", now)
		if err != nil {
			if evs != nil {
				t.Fatal("events returned with an error")
			}
			if c := steward.ErrorCode(err); c != steward.CodeInvalid && c != steward.CodeTooLarge {
				t.Fatalf("error code %s: %v", c, err)
			}
			return
		}
		if len(evs) == 0 || len(evs) > MaxEventsPerMessage {
			t.Fatalf("%d events accepted", len(evs))
		}
		for _, e := range evs {
			if err := e.Validate(); err != nil {
				t.Fatalf("invalid event accepted: %v", err)
			}
			if _, err := json.Marshal(e.Fields); err != nil {
				t.Fatalf("fields cannot be stored: %v", err)
			}
			if _, err := json.Marshal(e); err != nil {
				t.Fatalf("an accepted event cannot be shown: %v", err)
			}
		}
	})
}

// BenchmarkDecode decodes a typical event.
func BenchmarkDecode(b *testing.B) {
	payload := []byte(`{"ts":1764237600000,"type":"reboot","severity":"warning","message":"watchdog","uptime":86400}`)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if evs, err := Decode(payload, "default", "d-00000000000000000001", now); err != nil || len(evs) != 1 {
			b.Fatalf("decode: %v %v", evs, err)
		}
	}
}
