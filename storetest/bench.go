package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// BenchmarkWriteSamples measures WriteSamples, the telemetry hot path:
// batches of 1000 samples, each batch its own transaction, on a store that
// open returns empty. It reports rows/s for two shapes of batch:
//   - spread: 100 devices × 10 metrics, one sample each, as when many
//     devices report once per batch window; every series gets one row per
//     batch, the most index pages a batch can touch;
//   - grouped: 10 devices × 10 metrics × 10 times, as when agents send
//     arrays of buffered samples.
func BenchmarkWriteSamples(b *testing.B, open func(b *testing.B) steward.Store) {
	shapes := []struct {
		name                    string
		devices, metrics, times int
	}{
		{"spread", 100, 10, 1},
		{"grouped", 10, 10, 10},
	}
	for _, sh := range shapes {
		b.Run(sh.name, func(b *testing.B) {
			s := open(b)
			deviceIDs := make([]string, sh.devices)
			for i := range deviceIDs {
				deviceIDs[i] = fmt.Sprintf("d-%020x", i*7919)
			}
			names := make([]string, sh.metrics)
			for i := range names {
				names[i] = fmt.Sprintf("metric%d", i)
			}
			batch := make([]steward.Sample, 0, sh.devices*sh.metrics*sh.times)
			start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
			rows := 0
			for i := 0; b.Loop(); i++ {
				batch = batch[:0]
				for d := range sh.devices {
					for tm := range sh.times {
						when := start.Add(time.Duration(i*sh.times+tm) * time.Second)
						for m := range sh.metrics {
							batch = append(batch, steward.Sample{TenantID: "default", DeviceID: deviceIDs[d], Metric: names[m], Value: float64(i + m), At: when})
						}
					}
				}
				if err := s.WriteSamples(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
				rows += len(batch)
			}
			b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}
