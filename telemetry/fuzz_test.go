package telemetry

import (
	"cmp"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// FuzzDecodeRoundTrip checks the telemetry payload decoder on arbitrary
// input: an error is CodeInvalid (CodeTooLarge past the sample limit) and
// comes with no samples; accepted samples carry the message's tenant and
// device, a valid metric name and a finite value, at most the limit of
// them; and written back as a payload (one point per sample, the time as
// RFC 3339) they decode to the same samples.
func FuzzDecodeRoundTrip(f *testing.F) {
	for _, s := range []string{
		`{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.31,"temperature":48.5}}`,
		`[{"ts":1795773600000,"metrics":{"a":true,"b":false}},{"metrics":{"c":-1e-300}}]`,
		`{"ts":"2026-11-27T10:00:00.123456789+05:30","seq":7,"metrics":{"x.y-z_1":1e308}}`,
		`{"ts":999999999999999,"metrics":{"a":0}}`,
		`{"ts":1.5,"metrics":{"a":-0}}`,
		`{"TS":"2026-11-27T10:00:00Z","Metrics":{"a":1}}`,
		`[{"metrics":{"a":1}},null]`,
		`{"metrics":{"a":1},"metrics":{"b":2}}`,
		`{"ts":"0000-01-01T00:00:00Z","metrics":{"a":1}}`,
		`{"ts":"2026-11-27T10:00:00+23:59","metrics":{"a":1}}`,
		`[]`, `{}`, ` `, `"x"`,
	} {
		f.Add([]byte(s))
	}
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		samples, err := Decode(b, "t", "d", now)
		if err != nil {
			if samples != nil {
				t.Fatal("samples returned with an error")
			}
			if c := steward.ErrorCode(err); c != steward.CodeInvalid && c != steward.CodeTooLarge {
				t.Fatalf("error code %s: %v", c, err)
			}
			if !strings.HasPrefix(steward.ErrorMessage(err), "telemetry") {
				t.Fatalf("error %q does not say it is about telemetry", steward.ErrorMessage(err))
			}
			return
		}
		if len(samples) > maxSamplesPerMessage {
			t.Fatalf("%d samples accepted", len(samples))
		}
		type wire struct {
			TS      string             `json:"ts"`
			Metrics map[string]float64 `json:"metrics"`
		}
		var back []wire
		for _, s := range samples {
			if s.TenantID != "t" || s.DeviceID != "d" || !validMetric(s.Metric) || math.IsNaN(s.Value) || math.IsInf(s.Value, 0) || s.At.IsZero() {
				t.Fatalf("bad sample accepted: %+v", s)
			}
			back = append(back, wire{TS: s.At.Format(time.RFC3339Nano), Metrics: map[string]float64{s.Metric: s.Value}})
		}
		if len(back) == 0 {
			return // an empty array: nothing to write back
		}
		payload, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		again, err := Decode(payload, "t", "d", now)
		if err != nil {
			t.Fatalf("%s does not decode again: %v", payload, err)
		}
		order := func(a, b steward.Sample) int {
			return cmp.Or(a.At.Compare(b.At), strings.Compare(a.Metric, b.Metric), cmp.Compare(a.Value, b.Value))
		}
		slices.SortFunc(samples, order)
		slices.SortFunc(again, order)
		if len(again) != len(samples) {
			t.Fatalf("%d samples, %d after the round trip", len(samples), len(again))
		}
		for i := range samples {
			if !samples[i].At.Equal(again[i].At) || samples[i].Metric != again[i].Metric || samples[i].Value != again[i].Value {
				t.Fatalf("sample %d: %+v, after the round trip %+v", i, samples[i], again[i])
			}
		}
	})
}
