package twin

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/steward-iot/steward"
)

// BenchmarkHandleReported measures a device's report, from the bus to the
// acknowledgement: decoded, checked, written over the twin's revision and,
// in sync, recorded as known good (SQLite, one commit per report).
func BenchmarkHandleReported(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const devices = 100
	for i := range devices {
		id := fmt.Sprintf("d-%03d", i)
		e.device(b, id, "gw-100", "acme", "paris")
		if _, err := e.svc.UpdateTwin(ctx, tenant, id, json.RawMessage(`{"log": "info", "ntp": {"servers": ["a", "b"]}}`), nil, "token:op"); err != nil {
			b.Fatal(err)
		}
	}
	payload := []byte(`{"version": 1, "state": {"interval": 30, "log": "info", "ntp": {"servers": ["a", "b"]}}}`)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		done := make(chan error, 1)
		e.svc.HandleReported(ctx, steward.DeviceMessage{TenantID: tenant, DeviceID: fmt.Sprintf("d-%03d", i%devices), Channel: steward.ChannelTwinReported,
			Payload: payload, QoS: 1, Received: e.clock.Now()}, func(err error) { done <- err })
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompose measures building a device's desired document from five
// layers, each with a schema check on the base's schema.
func BenchmarkCompose(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	e.device(b, "d-1", "gw-100", "acme", "paris")
	for _, l := range []struct {
		layer    steward.ConfigLayer
		selector string
		doc      string
	}{
		{steward.LayerBase, "", `{"interval": 60, "log": "info", "ntp": {"servers": ["pool.ntp.org"], "port": 123}, "mqtt": {"keepalive": 60}}`},
		{steward.LayerModel, "gw-100", `{"interval": 30, "ntp": {"servers": ["ntp.gw"]}}`},
		{steward.LayerCustomer, "acme", `{"log": "debug"}`},
		{steward.LayerSite, "paris", `{"tz": "Europe/Paris"}`},
		{steward.LayerDevice, "d-1", `{"interval": 15}`},
	} {
		tm, err := e.svc.CreateTemplate(ctx, steward.ConfigTemplate{TenantID: tenant, Name: string(l.layer), Layer: l.layer, Selector: l.selector}, "token:op")
		if err != nil {
			b.Fatal(err)
		}
		v := steward.ConfigVersion{TenantID: tenant, TemplateID: tm.ID, Document: json.RawMessage(l.doc), Message: "m"}
		if l.layer == steward.LayerBase {
			v.Schema = json.RawMessage(schema)
		}
		if _, err := e.svc.CreateVersion(ctx, v, "token:op"); err != nil {
			b.Fatal(err)
		}
	}
	d, err := e.store.GetDevice(ctx, tenant, "d-1")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.svc.compose(ctx, d, nil, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
