package client_test

import (
	"context"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

// BenchmarkListDevices fetches and decodes a page of 100 devices, the
// CLI's and integrations' most common call.
func BenchmarkListDevices(b *testing.B) {
	env := apitest.New(b)
	for i := range 100 {
		env.AddDevice(b, steward.DefaultTenant, devID(i), "gw-100", map[string]string{"site": "plant-1"})
	}
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		ds, _, err := c.ListDevices(ctx, steward.DeviceQuery{Limit: 100})
		if err != nil || len(ds) != 100 {
			b.Fatalf("%d devices, %v", len(ds), err)
		}
	}
}
