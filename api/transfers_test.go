package api

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/lifecycle"
)

// withTransfers wires the real transfer service into e, as `steward serve`
// does, with a device plane that takes every outbound message.
func withTransfers(t *testing.T, e *testEnv) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	clock := steward.SystemClock{}
	e.bus.HandleSend(func(context.Context, steward.OutboundMessage) error { return nil })
	fleet := lifecycle.New(e.store, e.bus, clock, log)
	signer, ok := e.api.cfg.Authority.(decommission.Signer)
	if !ok {
		t.Fatalf("the authority %T cannot sign records", e.api.cfg.Authority)
	}
	e.api.cfg.Transfers = decommission.New(decommission.Config{Store: e.store, Fleet: fleet, Lifecycle: fleet, Bus: e.bus, Signer: signer,
		Clock: clock, Logger: log})
}

// addFactoryDevice stores an active device of the default tenant with a
// factory identity, which a transfer to another tenant needs.
func (e *testEnv) addFactoryDevice(t *testing.T, id string) {
	t.Helper()
	now := time.Now().UTC().Truncate(time.Millisecond)
	d := steward.Device{
		ID: id, TenantID: steward.DefaultTenant, FactoryID: strings.Repeat("f", 64), Model: "gw-100", Serial: "SN-" + id, Firmware: "1.2.0",
		Labels: map[string]string{}, Attributes: map[string]any{"model": "gw-100"},
		State: steward.StateActive, StateChangedAt: now, StateActor: "system",
		CreatedAt: now, UpdatedAt: now, Version: 1,
	}
	if err := e.store.CreateDevice(context.Background(), d); err != nil {
		t.Fatalf("create device: %v", err)
	}
}

// wantInvalid fails unless r is a 400 invalid problem whose detail holds
// each of details.
func wantInvalid(t *testing.T, r response, details ...string) {
	t.Helper()
	wantProblem(t, r, http.StatusBadRequest)
	p := r.problem(t)
	if p.Code != steward.CodeInvalid {
		t.Errorf("code %q, want %q (%s)", p.Code, steward.CodeInvalid, p.Detail)
	}
	for _, d := range details {
		if !strings.Contains(p.Detail, d) {
			t.Errorf("detail %q does not contain %q", p.Detail, d)
		}
	}
}

// snapshot reads each path with token and returns the bodies, to show
// later that a refused request wrote nothing.
func (e *testEnv) snapshot(t *testing.T, token string, paths ...string) [][]byte {
	t.Helper()
	out := make([][]byte, len(paths))
	for i, p := range paths {
		out[i] = e.must(t, http.StatusOK, "GET", p, token, nil).body
	}
	return out
}

// sameAs fails when a path reads differently from before.
func (e *testEnv) sameAs(t *testing.T, token string, before [][]byte, paths ...string) {
	t.Helper()
	for i, after := range e.snapshot(t, token, paths...) {
		if !bytes.Equal(before[i], after) {
			t.Errorf("GET %s changed:\nbefore %s\nafter  %s", paths[i], before[i], after)
		}
	}
}

func TestListTransfersUnknownDirection(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withTransfers(t, e)
	id := deviceID("dir")
	e.addFactoryDevice(t, id)
	e.newTenant(t, "beta")
	e.must(t, http.StatusCreated, "POST", "/api/v1/devices/"+id+"/tenant-transfer", e.system,
		steward.TenantTransferRequest{ToTenant: "beta", Reason: "sold"})
	paths := []string{"/api/v1/device-transfers", "/api/v1/device-transfers?direction=incoming", "/api/v1/devices"}
	before := e.snapshot(t, e.system, paths...)

	for _, dir := range []string{"x", "OUTGOING", "incoming ", "both", "in"} {
		t.Run(dir, func(t *testing.T) {
			r := e.call(t, "GET", "/api/v1/device-transfers?direction="+strings.ReplaceAll(dir, " ", "%20"), e.system, nil)
			wantInvalid(t, r, "direction", `"`+dir+`"`)
		})
	}
	// With a device too: the direction is still what is refused.
	wantInvalid(t, e.call(t, "GET", "/api/v1/device-transfers?direction=x&device="+id, e.system, nil), "direction", `"x"`)
	e.sameAs(t, e.system, before, paths...)
}

func TestAcceptTransferCodeTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withTransfers(t, e)
	id := deviceID("long")
	e.addFactoryDevice(t, id)
	beta := e.newTenant(t, "beta")
	var res steward.TenantTransferResult
	e.must(t, http.StatusCreated, "POST", "/api/v1/devices/"+id+"/tenant-transfer", e.system,
		steward.TenantTransferRequest{ToTenant: "beta", Reason: "sold"}).decode(t, &res)
	if res.Transfer == nil || res.Code == "" {
		t.Fatalf("transfer %+v", res)
	}
	sourcePaths := []string{"/api/v1/device-transfers", "/api/v1/device-transfers/" + res.Transfer.ID, "/api/v1/devices", "/api/v1/devices/" + id}
	targetPaths := []string{"/api/v1/device-transfers?direction=incoming", "/api/v1/devices"}
	source, target := e.snapshot(t, e.system, sourcePaths...), e.snapshot(t, beta, targetPaths...)

	for _, tc := range []struct{ name, code string }{
		{"129 characters", "stx-" + strings.Repeat("a", 125)},
		{"the real code with more after it", res.Code + strings.Repeat("a", 129-len(res.Code))},
		{"the real code twice over and more", strings.Repeat(res.Code, 4)},
		{"60 000 characters", strings.Repeat("a", 60_000)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.code) <= 128 {
				t.Fatalf("code of %d characters is not over-long", len(tc.code))
			}
			wantInvalid(t, e.call(t, "POST", "/api/v1/transfer-acceptances", beta, TransferAcceptRequest{Code: tc.code}), "at most 128 characters")
		})
	}
	e.sameAs(t, e.system, source, sourcePaths...)
	e.sameAs(t, beta, target, targetPaths...)

	// The refusals used nothing up: the code still takes the device.
	var acc steward.TransferAcceptance
	e.must(t, http.StatusOK, "POST", "/api/v1/transfer-acceptances", beta, TransferAcceptRequest{Code: res.Code}).decode(t, &acc)
	var tr steward.DeviceTransfer
	e.must(t, http.StatusOK, "GET", "/api/v1/device-transfers/"+res.Transfer.ID, e.system, nil).decode(t, &tr)
	if tr.State != steward.TransferAccepted {
		t.Fatalf("transfer after acceptance %+v", tr)
	}
}
