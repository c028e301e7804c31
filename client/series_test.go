package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestDeviceTelemetrySeries(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	id := devID(77)
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	var samples []steward.Sample
	for i := range 6 { // 10:00:00, 10:00:30, … 10:02:30
		samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "temp", Value: float64(10 + i), At: base.Add(time.Duration(i) * 30 * time.Second)})
	}
	if err := env.Store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.RollupSamples(ctx, base, base.Add(3*time.Minute)); err != nil {
		t.Fatal(err)
	}
	raw, err := c.DeviceTelemetry(ctx, id, client.SeriesQuery{Metric: "temp", From: base, To: base.Add(time.Hour), Limit: 4})
	if err != nil || raw.Resolution != "raw" || len(raw.Points) != 4 || !raw.Truncated || *raw.Points[3].Value != 13 || raw.Points[0].Avg != nil {
		t.Fatalf("raw %+v %v", raw, err)
	}
	mins, err := c.DeviceTelemetry(ctx, id, client.SeriesQuery{Metric: "temp", From: base, To: base.Add(time.Hour), Resolution: "1m"})
	if err != nil || mins.Resolution != "1m" || len(mins.Points) != 3 || *mins.Points[1].Min != 12 || *mins.Points[1].Max != 13 || *mins.Points[1].Avg != 12.5 || *mins.Points[1].Count != 2 {
		t.Fatalf("minutes %+v %v", mins, err)
	}
	if _, err := c.DeviceTelemetry(ctx, id, client.SeriesQuery{Metric: "temp", Resolution: "5m"}); steward.ErrorCode(err) != steward.CodeInvalid || !client.IsStatus(err, 400) {
		t.Fatalf("bad resolution: %v", err)
	}
	if _, err := c.DeviceTelemetry(ctx, devID(78), client.SeriesQuery{Metric: "temp"}); !steward.IsNotFound(err) {
		t.Fatalf("unknown device: %v", err)
	}
}
