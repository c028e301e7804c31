package api

import (
	"bytes"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
)

// FuzzDecodeJSON feeds arbitrary bodies and content types to decodeJSON,
// which reads every request body of the API, into request types with
// nested objects, durations, pointers, maps and raw JSON: it must never
// panic; an error is a *steward.Error with CodeInvalid, CodeTooLarge or
// CodeUnsupported; and what it accepts, encoded again, decodes to the same
// value.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []struct {
		kind     byte
		ct, body string
	}{
		{0, "application/json", `{"personal":true,"granted":["telemetry"]}`},
		{1, "application/json", `{"name":"hot","kind":"threshold","severity":"major","scope":"site = paris","for":"5m","threshold":{"metric":"temperature","aggregation":"avg","window":"10m","operator":">","value":80}}`},
		{2, "application/merge-patch+json; charset=utf-8", `{"labels":{"a":"b","c":null},"owner":"x"}`},
		{3, "application/json", `{"name":"c","kind":"webhook","webhook":{"url":"https://h.example/x","headers":{"A":"b"}}}`},
		{4, "application/json", `{"name":"reboot","params":{"delay":5,"x":[1,{"y":null}]},"timeout":"30s"}`},
		{0, "application/json", `{"personal":true}{"personal":false}`},
		{0, "application/json", `{"personal":true} x`},
		{0, "application/json", `{"personal":"yes"}`},
		{0, "application/json", `{"Personal":true,"unknown":1}`},
		{1, "application/json", `{"for":"forever"}`},
		{0, "text/plain", `{}`},
		{0, "application/json", ``},
		{0, "application/json", `[`},
		{0, "application/json", `{"granted":["` + strings.Repeat("a", MaxBodyBytes) + `"]}`},
	} {
		f.Add(s.kind, s.ct, []byte(s.body))
	}
	kinds := []func() any{
		func() any { return new(ConsentRequest) },
		func() any { return new(AlertRuleRequest) },
		func() any { return new(steward.DevicePatch) },
		func() any { return new(ChannelRequest) },
		func() any { return new(CommandRequest) },
	}
	f.Fuzz(func(t *testing.T, kind byte, ct string, body []byte) {
		mk := kinds[int(kind)%len(kinds)]
		v := mk()
		err := decode(ct, body, v)
		if err != nil {
			switch c := steward.ErrorCode(err); c {
			case steward.CodeInvalid, steward.CodeTooLarge, steward.CodeUnsupported:
			default:
				t.Fatalf("error code %s: %v", c, err)
			}
			if c := steward.ErrorCode(err); c == steward.CodeTooLarge && len(body) <= MaxBodyBytes {
				t.Fatalf("a body of %d bytes is too large: %v", len(body), err)
			}
			return
		}
		if len(body) > MaxBodyBytes {
			t.Fatalf("a body of %d bytes was read whole", len(body))
		}
		out, err := marshal(v)
		if err != nil {
			t.Fatalf("accepted %q, which cannot be encoded again: %v", body, err)
		}
		again := mk()
		if err := decode("application/json", out, again); err != nil {
			t.Fatalf("accepted %q, encoded %s, which is refused: %v", body, out, err)
		}
		if !reflect.DeepEqual(v, again) {
			t.Fatalf("accepted %q as %#v; encoded %s decodes to %#v", body, v, out, again)
		}
	})
}

// decode runs decodeJSON on a request with the body and content type.
func decode(ct string, body []byte, v any) error {
	r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return decodeJSON(httptest.NewRecorder(), r, v)
}
