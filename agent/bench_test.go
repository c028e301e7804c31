package agent

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// The agent's hot paths: a telemetry sample (read /proc, encode) every
// interval, and every command. They run on small devices, so their cost
// is watched.

func BenchmarkHostTelemetry(b *testing.B) {
	h, err := NewHost("testdata/host", b.TempDir(), steward.SystemClock{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(h.Telemetry()) == 0 {
			b.Fatal("no metrics")
		}
	}
}

func BenchmarkEncodeBatch(b *testing.B) {
	metrics := map[string]float64{"cpu": 0.31, "memory": 0.52, "disk": 0.4, "uptime": 3600, "load1": 0.5, "temperature": 48.5}
	for _, n := range []int{1, maxPointsPerMessage} {
		b.Run(fmt.Sprintf("points=%d", n), func(b *testing.B) {
			ps := make([]point, n)
			for i := range ps {
				ps[i] = point{TS: time.Now().UTC().Format(time.RFC3339), Metrics: metrics}
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := encodeBatch(ps); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkTelemetryBuffer(b *testing.B) {
	buf := telemetryBuffer{max: 120}
	p := point{TS: "2026-01-01T00:00:00Z", Metrics: map[string]float64{"cpu": 0.5}}
	b.ReportAllocs()
	for b.Loop() {
		buf.add(p)
		buf.remove(buf.batch())
	}
}

func BenchmarkHandleCommand(b *testing.B) {
	a := &Agent{cfg: Config{Clock: steward.SystemClock{}}}
	payload := []byte(`{"id":"c-1","name":"ping","sent_at":"2026-01-01T00:00:00Z"}`)
	b.ReportAllocs()
	for b.Loop() {
		if res, _ := a.handleCommand(payload); res.Status != steward.CommandOK {
			b.Fatal(res)
		}
	}
}
