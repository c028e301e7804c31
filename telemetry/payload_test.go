package telemetry

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestDecode(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		payload string
		want    map[string]float64 // metric → value
		wantAt  time.Time
	}{
		{"object", `{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.31,"temperature":48.5}}`, map[string]float64{"cpu": 0.31, "temperature": 48.5}, at},
		{"unix millis", `{"ts":1795773600000,"metrics":{"cpu":1}}`, map[string]float64{"cpu": 1}, time.UnixMilli(1795773600000).UTC()},
		{"no ts is now", `{"metrics":{"up":true,"down":false}}`, map[string]float64{"up": 1, "down": 0}, now},
		{"array", `[{"ts":"2026-11-27T10:00:00Z","metrics":{"a":1}},{"ts":"2026-11-27T10:00:00Z","metrics":{"b":2}}]`, map[string]float64{"a": 1, "b": 2}, at},
		{"unknown keys ignored", ` {"ts":"2026-11-27T10:00:00Z","seq":7,"metrics":{"a":1}}`, map[string]float64{"a": 1}, at},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tt.payload), "t1", "d-1", now)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d samples, want %d: %+v", len(got), len(tt.want), got)
			}
			for _, s := range got {
				if s.TenantID != "t1" || s.DeviceID != "d-1" || !s.At.Equal(tt.wantAt) || s.Value != tt.want[s.Metric] {
					t.Errorf("sample %+v", s)
				}
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	many := `{"metrics":{`
	for i := range 1001 {
		if i > 0 {
			many += ","
		}
		many += fmt.Sprintf(`"m%d":1`, i)
	}
	many += "}}"
	tests := map[string]struct {
		payload string
		code    steward.Code
	}{
		"empty":            {``, steward.CodeInvalid},
		"not json":         {`cpu=1`, steward.CodeInvalid},
		"broken json":      {`{"metrics":{"cpu":}`, steward.CodeInvalid},
		"string value":     {`{"metrics":{"cpu":"high"}}`, steward.CodeInvalid},
		"object value":     {`{"metrics":{"cpu":{}}}`, steward.CodeInvalid},
		"no metrics":       {`{"ts":"2026-11-27T10:00:00Z"}`, steward.CodeInvalid},
		"bad ts":           {`{"ts":"yesterday","metrics":{"a":1}}`, steward.CodeInvalid},
		"negative ts":      {`{"ts":-5,"metrics":{"a":1}}`, steward.CodeInvalid},
		"ts as quoted ms":  {`{"ts":"1795773600000","metrics":{"a":1}}`, steward.CodeInvalid},
		"ts as object":     {`{"ts":{},"metrics":{"a":1}}`, steward.CodeInvalid},
		"overflow":         {`{"metrics":{"a":1e999}}`, steward.CodeInvalid},
		"null value":       {`{"metrics":{"a":null}}`, steward.CodeInvalid},
		"bad metric name":  {`{"metrics":{"a/b":1}}`, steward.CodeInvalid},
		"one bad in array": {`[{"metrics":{"a":1}},{"metrics":{"b":"x"}}]`, steward.CodeInvalid},
		"array of numbers": {`[1,2]`, steward.CodeInvalid},
		"too many samples": {many, steward.CodeTooLarge},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			got, err := Decode([]byte(tt.payload), "t", "d", time.Now())
			if steward.ErrorCode(err) != tt.code || got != nil {
				t.Fatalf("Decode = %v, %v; want nothing and %s", got, err, tt.code)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.31}}`))
	f.Add([]byte(`[{"ts":1795773600000,"metrics":{"a":true}}]`))
	f.Add([]byte(`{"metrics":{"":1}}`))
	now := time.Now()
	f.Fuzz(func(t *testing.T, b []byte) {
		samples, err := Decode(b, "t", "d", now)
		if err != nil && samples != nil {
			t.Fatal("samples returned with an error")
		}
		for _, s := range samples {
			if !validMetric(s.Metric) {
				t.Fatalf("invalid metric name accepted: %q", s.Metric)
			}
		}
	})
}

// BenchmarkDecode decodes the payloads of the telemetry bench and
// FIGURES.md's load.
func BenchmarkDecode(b *testing.B) {
	for _, tt := range []struct{ name, payload string }{
		{"ts_ms_one_metric", `{"ts":1764237600000,"metrics":{"cpu":0.31}}`},
		{"no_ts_one_metric", `{"metrics":{"cpu":0.31}}`},
		{"no_ts_two_metrics", `{"metrics":{"cpu":0.31,"temperature":48.5}}`},
	} {
		b.Run(tt.name, func(b *testing.B) {
			payload := []byte(tt.payload)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if s, err := Decode(payload, "default", "d-00000000000000000001", now); err != nil || len(s) == 0 {
					b.Fatalf("decode: %v %v", s, err)
				}
			}
		})
	}
}
