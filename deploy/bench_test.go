package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/steward-iot/steward"
)

// BenchmarkDeployment runs a deployment to 2,000 device records end to
// end: the engine's ticks start the devices, simulated devices answer
// each job on the bus with downloading, installing and succeeded, and the
// intake writes those in batches. It reports devices moved to succeeded
// per minute. bench/deployments runs the same at 100,000 devices.
func BenchmarkDeployment(b *testing.B) {
	const n = 2000
	for range b.N {
		b.StopTimer()
		e := newEnv(b, n)
		in := NewIntake(IntakeConfig{Store: e.store, MaxBatch: 1000}, e.bus)
		ctx, cancel := context.WithCancel(b.Context())
		go func() { _ = in.Run(ctx) }()
		jobs := make(chan [2]string, n)
		e.bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
			var j steward.UpdateJob
			if err := json.Unmarshal(m.Payload, &j); err != nil {
				return err
			}
			jobs <- [2]string{m.DeviceID, j.DeploymentID}
			return nil
		})
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for j := range jobs {
					for _, st := range []string{`"downloading"`, `"installing"`, `"succeeded"`} {
						e.bus.PublishInbound(ctx, steward.DeviceMessage{TenantID: tenant, DeviceID: j[0], Channel: steward.ChannelUpdateStatus,
							Payload: fmt.Appendf(nil, `{"deployment_id": %q, "attempt": 1, "state": %s}`, j[1], st)}, func(error) {})
					}
				}
			})
		}
		d := e.create(steward.DeploymentSpec{Concurrency: n, Phases: []steward.Phase{{Name: "canary", Count: 20}, {Name: "rest", Percent: 100}}})
		b.StartTimer()
		for d.State != steward.DeploymentCompleted {
			if d.State != steward.DeploymentRunning && d.State != steward.DeploymentScheduled {
				b.Fatalf("deployment %s: %s", d.State, d.StateReason)
			}
			d = e.tick(d.ID)
		}
		b.StopTimer()
		close(jobs)
		wg.Wait()
		cancel()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Minutes(), "devices/min")
}
