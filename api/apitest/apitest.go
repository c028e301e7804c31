// Package apitest starts a real management API server for tests of the
// packages that talk to it (the Go client, the CLI): the SQLite store, the
// PKI, the in-process bus and the lifecycle and provisioning services,
// wired as `steward serve` wires them, behind an httptest server.
package apitest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/analytics"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/approvals"
	"github.com/steward-iot/steward/compliance"
	"github.com/steward-iot/steward/deploy"
	"github.com/steward-iot/steward/health"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/notify"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/privacy"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/quarantine"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/tenants"
	"github.com/steward-iot/steward/twin"
)

// Env is a running API server with a system token of the default tenant.
type Env struct {
	URL         string // base URL of the API
	SystemToken string // secret of a system token of the default tenant
	Store       steward.Store
	Bus         *inproc.Bus
	Server      *httptest.Server
}

// New starts a server that lives until the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	clock := steward.SystemClock{}
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), log)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = store.Close() })
	key := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(key)
	auth, err := pki.New(ctx, pki.Config{Store: store, MasterKey: key, Clock: clock, Logger: log})
	if err != nil {
		t.Fatalf("pki: %v", err)
	}
	bus := inproc.New(log)
	bus.HandleControl(func(context.Context, steward.SessionControl) {})
	fleet := lifecycle.New(store, bus, clock, log)
	prov := provisioning.New(provisioning.Config{Store: store, Authority: auth, Bus: bus, Lifecycle: fleet, ParseCSR: pki.ParseCSR, Clock: clock, Logger: log})
	if err := store.CreateTenant(ctx, steward.Tenant{ID: steward.DefaultTenant, Name: "Default", CreatedAt: clock.Now()}); err != nil {
		t.Fatalf("create default tenant: %v", err)
	}
	if _, err := auth.DeviceCA(ctx, steward.DefaultTenant); err != nil {
		t.Fatalf("device CA: %v", err)
	}
	secret, _, err := api.CreateToken(ctx, store, steward.DefaultTenant, "first admin", steward.RoleSystem, clock)
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	srv := httptest.NewServer(api.New(api.Config{Fleet: fleet, Groups: prov, Authority: auth, Store: store, Analytics: analytics.New(store, log), Health: health.New(store, clock, health.DefaultRules()),
		Notifier: notify.New(notify.Config{Store: store, Clock: clock, Logger: log}), Approvals: approvals.New(approvals.Config{Store: store, Clock: clock, Logger: log}), Tenants: tenants.New(tenants.Config{Store: store, Bus: bus, Approvals: approvals.New(approvals.Config{Store: store, Clock: clock, Logger: log}), Clock: clock, Logger: log}), Clock: clock, Logger: log,
		Twins: twin.New(twin.Config{Store: store, Clock: clock, Logger: log}), Privacy: privacy.New(privacy.Config{Store: store, Clock: clock, Logger: log}),
		Quarantine:  quarantine.New(quarantine.Config{Store: store, Clock: clock, Logger: log}),
		Compliance:  compliance.New(store, nil, clock, log),
		Deployments: deploy.New(deploy.Config{Store: store, Bus: bus, Clock: clock, Logger: log, Policy: deploy.Policy{MaxDevices: 2}})}))
	t.Cleanup(srv.Close)
	return &Env{URL: srv.URL, SystemToken: secret, Store: store, Bus: bus, Server: srv}
}

// AddDevice stores an active device, as enrollment and validation would
// have left it.
func (e *Env) AddDevice(t testing.TB, tenantID, id, model string, labels map[string]string) steward.Device {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := steward.Device{
		ID: id, TenantID: tenantID, Model: model, Serial: "SN-" + id, Firmware: "1.2.0",
		Labels: labels, Attributes: map[string]any{"model": model},
		State: steward.StateActive, StateChangedAt: now, StateActor: "system",
		CreatedAt: now, UpdatedAt: now, Version: 1,
	}
	if err := e.Store.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("create device: %v", err)
	}
	return d
}

// ConnectDevices plays the device plane for the given devices: each
// answers a "ping" command with {"pong": <args.n>} and rejects any other.
// Commands to other devices find them not connected.
func (e *Env) ConnectDevices(ids ...string) {
	var mu sync.Mutex
	connected := map[string]bool{}
	for _, id := range ids {
		connected[id] = true
	}
	e.Bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		mu.Lock()
		ok := connected[m.DeviceID]
		mu.Unlock()
		if !ok || m.Channel != steward.ChannelCmdReq {
			return steward.Errorf(steward.CodeUnavailable, "device %s is not connected", m.DeviceID)
		}
		var c steward.Command
		if err := json.Unmarshal(m.Payload, &c); err != nil {
			return err
		}
		res := steward.CommandResult{ID: c.ID, Status: steward.CommandOK, Result: map[string]any{"pong": c.Args["n"]}}
		if c.Name != "ping" {
			res = steward.CommandResult{ID: c.ID, Status: steward.CommandRejected, Error: "unknown command " + c.Name}
		}
		payload, err := json.Marshal(res)
		if err != nil {
			return err
		}
		// The answer comes back later, from the device's own session.
		go e.Bus.PublishInbound(context.Background(), steward.DeviceMessage{
			TenantID: m.TenantID, DeviceID: m.DeviceID, Channel: steward.ChannelCmdRes,
			Payload: payload, QoS: 1, Received: time.Now(),
		}, func(error) {})
		return nil
	})
}
