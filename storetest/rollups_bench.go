package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// BenchmarkRollupSamples measures one run of the rollup job's transaction
// over one minute (the steady state: every minute, the minute that just
// closed) for a fleet of 1000 devices × 10 metrics sending every 10 s: 60000
// samples in the minute, 10000 minute buckets and their hours upserted. It
// reports samples rolled up per second.
func BenchmarkRollupSamples(b *testing.B, open func(b *testing.B) steward.Store) {
	s := open(b)
	const devices, metrics, perMinute = 1000, 10, 6
	start := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	var batch []steward.Sample
	for d := range devices {
		for m := range metrics {
			for k := range perMinute {
				batch = append(batch, steward.Sample{TenantID: "default", DeviceID: fmt.Sprintf("d-%020x", d*7919), Metric: fmt.Sprintf("metric%d", m),
					Value: float64(d + m + k), At: start.Add(time.Duration(k)*10*time.Second + time.Duration(d)*time.Millisecond)})
			}
		}
	}
	for len(batch) > 0 {
		n := min(len(batch), 5000)
		if err := s.WriteSamples(b.Context(), batch[:n]); err != nil {
			b.Fatal(err)
		}
		batch = batch[n:]
	}
	for b.Loop() {
		if err := s.RollupSamples(b.Context(), start, start.Add(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(devices*metrics*perMinute*b.N)/b.Elapsed().Seconds(), "samples/s")
}
