package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestDeviceHealth(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	id := devID(51)
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	now := time.Now().UTC()
	if err := env.Store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: true, ConnectedSince: now, LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := env.Store.WriteSamples(ctx, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "battery", Value: 0.15, At: now}}); err != nil {
		t.Fatal(err)
	}
	h, err := c.DeviceHealth(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if h.DeviceID != id || h.Level != steward.HealthDegraded || len(h.Reasons) != 1 || h.Reasons[0].Code != "battery_low" ||
		h.Reasons[0].Message == "" || h.EvaluatedAt.IsZero() {
		t.Fatalf("health = %+v", h)
	}

	if _, err := c.DeviceHealth(ctx, devID(52)); !steward.IsNotFound(err) || !client.IsStatus(err, 404) {
		t.Fatalf("unknown device: %v", err)
	}
	other, err := c.CreateTenant(ctx, "other-health", "Other")
	if err != nil {
		t.Fatal(err)
	}
	oc := client.New(env.URL, other.Token.Secret, nil)
	if _, err := oc.DeviceHealth(ctx, id); !steward.IsNotFound(err) {
		t.Fatalf("another tenant's device: %v", err)
	}
}
