package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestDeviceHealth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := deviceID("hl")
	e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	now := time.Now().UTC()
	if err := e.store.UpdatePresence(ctx, steward.DefaultTenant, id, steward.Presence{Online: true, ConnectedSince: now.Add(-time.Hour), LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.WriteSamples(ctx, []steward.Sample{
		{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "temperature", Value: 91, At: now.Add(-time.Minute)},
		{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "disk", Value: 0.9, At: now.Add(-time.Minute)},
	}); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/devices/" + id + "/health"

	var h steward.DeviceHealth
	e.must(t, http.StatusOK, "GET", path, e.system, nil).decode(t, &h)
	if h.DeviceID != id || h.Level != steward.HealthCritical || len(h.Reasons) != 2 ||
		h.Reasons[0].Code != "temperature_high" || h.Reasons[0].Level != steward.HealthCritical ||
		h.Reasons[1].Code != "disk_full" || h.Reasons[1].Level != steward.HealthDegraded ||
		h.EvaluatedAt.Before(now.Add(-time.Second)) {
		t.Fatalf("health = %+v", h)
	}

	t.Run("another tenant's token", func(t *testing.T) {
		other := e.newTenant(t, "other-hl")
		if p := e.must(t, http.StatusNotFound, "GET", path, other, nil).problem(t); p.Code != steward.CodeNotFound {
			t.Fatalf("problem %+v", p)
		}
	})
	t.Run("unknown device", func(t *testing.T) {
		e.must(t, http.StatusNotFound, "GET", "/api/v1/devices/"+deviceID("none")+"/health", e.system, nil).problem(t)
	})
	t.Run("not a device ID", func(t *testing.T) {
		e.must(t, http.StatusNotFound, "GET", "/api/v1/devices/a%20b/health", e.system, nil).problem(t)
	})
	t.Run("unknown parameter", func(t *testing.T) {
		if p := e.must(t, http.StatusBadRequest, "GET", path+"?level=ok", e.system, nil).problem(t); p.Code != steward.CodeInvalid {
			t.Fatalf("problem %+v", p)
		}
	})
	t.Run("no token", func(t *testing.T) {
		e.must(t, http.StatusUnauthorized, "GET", path, "", nil).problem(t)
	})
	t.Run("not enabled", func(t *testing.T) {
		srv := httptest.NewServer(New(Config{Fleet: e.api.cfg.Fleet, Store: e.store}))
		t.Cleanup(srv.Close)
		env := &testEnv{api: e.api, srv: srv, store: e.store, http: e.http}
		if p := env.must(t, http.StatusServiceUnavailable, "GET", path, e.system, nil).problem(t); p.Code != steward.CodeUnavailable {
			t.Fatalf("problem %+v", p)
		}
	})
}
