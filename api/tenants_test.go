package api

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/tenants"
)

// withTenants gives the env's API the tenant and approval services.
func withTenants(t *testing.T, e *testEnv) {
	t.Helper()
	appr := withApprovals(t, e)
	e.api.cfg.Tenants = tenants.New(tenants.Config{Store: e.store, Bus: e.bus, Approvals: appr})
}

func TestTenantSuspendResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withTenants(t, e)
	acme := e.newTenant(t, "acme")
	e.addDevice(t, "acme", "d-acme1", "gw-100", nil)
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", acme, nil)

	// Only the system role administers tenants.
	e.must(t, http.StatusForbidden, "POST", "/api/v1/tenants/acme/suspend", acme, nil).problem(t)
	var tn steward.Tenant
	e.must(t, http.StatusOK, "POST", "/api/v1/tenants/acme/suspend", e.system, TenantStatusRequest{Reason: "unpaid"}).decode(t, &tn)
	if tn.Status != steward.TenantSuspended || tn.StatusReason != "unpaid" {
		t.Fatalf("suspended = %+v", tn)
	}
	// Every route refuses the suspended tenant's token, saying why.
	for _, path := range []string{"/api/v1/devices", "/api/v1/devices/d-acme1", "/api/v1/tokens"} {
		p := e.must(t, http.StatusForbidden, "GET", path, acme, nil).problem(t)
		if !strings.Contains(p.Detail, "suspended") {
			t.Fatalf("%s: %q", path, p.Detail)
		}
	}
	e.must(t, http.StatusForbidden, "POST", "/api/v1/devices/d-acme1/quarantine", acme, map[string]string{"reason": "x"}).problem(t)
	if d, _ := e.store.GetDevice(context.Background(), "acme", "d-acme1"); d.State != steward.StateActive {
		t.Fatalf("a suspended tenant's token changed its device: %+v", d)
	}
	// Its device's live session was closed.
	found := false
	e.mu.Lock()
	for _, c := range e.controls {
		found = found || (c.TenantID == "acme" && c.DeviceID == "d-acme1" && c.Close)
	}
	e.mu.Unlock()
	if !found {
		t.Fatal("the suspended tenant's device session was not closed")
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/tenants/acme", e.system, nil).decode(t, &tn)
	if tn.Status != steward.TenantSuspended {
		t.Fatalf("GET tenant = %+v", tn)
	}
	var ts List[steward.Tenant]
	e.must(t, http.StatusOK, "GET", "/api/v1/tenants", e.system, nil).decode(t, &ts)
	if len(ts.Items) != 2 || ts.Items[0].ID != "acme" || ts.Items[0].Status != steward.TenantSuspended || ts.Items[1].Status != steward.TenantActive {
		t.Fatalf("tenants = %+v", ts)
	}

	e.must(t, http.StatusOK, "POST", "/api/v1/tenants/acme/resume", e.system, nil).decode(t, &tn)
	if tn.Status != steward.TenantActive {
		t.Fatalf("resumed = %+v", tn)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/devices", acme, nil)

	// Refused: the default tenant, an unknown one, a bad body.
	e.must(t, http.StatusConflict, "POST", "/api/v1/tenants/default/suspend", e.system, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", "/api/v1/tenants/nope/suspend", e.system, nil).problem(t)
	e.must(t, http.StatusBadRequest, "POST", "/api/v1/tenants/acme/suspend", e.system, map[string]any{"reason": 1}).problem(t)
	e.must(t, http.StatusBadRequest, "POST", "/api/v1/tenants/acme/suspend", e.system, TenantStatusRequest{Reason: strings.Repeat("x", 1025)}).problem(t)
	if got, _ := e.store.GetTenant(context.Background(), "acme"); got.Status != steward.TenantActive {
		t.Fatalf("a refused suspension was written: %+v", got)
	}
}

func TestTenantDelete(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	withTenants(t, e)
	ctx := context.Background()
	acme := e.newTenant(t, "acme")
	e.addDevice(t, "acme", "d-acme1", "gw-100", nil)
	second, _ := e.roleToken(t, steward.DefaultTenant, steward.RoleSystem)

	e.must(t, http.StatusConflict, "DELETE", "/api/v1/tenants/default", e.system, nil).problem(t)
	e.must(t, http.StatusForbidden, "DELETE", "/api/v1/tenants/acme", acme, nil).problem(t)
	e.must(t, http.StatusBadRequest, "DELETE", "/api/v1/tenants/acme?aproval=x", e.system, nil).problem(t)

	// A policy makes tenant deletion a two-person action.
	e.must(t, http.StatusCreated, "POST", "/api/v1/approval-policies", e.system,
		ApprovalPolicyRequest{Name: "tenant deletion", Action: "tenant.delete", Approvals: 1})
	var req steward.ApprovalRequest
	r := e.must(t, http.StatusAccepted, "DELETE", "/api/v1/tenants/acme?reason=contract+ended", e.system, nil)
	r.decode(t, &req)
	if r.header.Get("Location") != "/api/v1/approvals/"+req.ID || req.State != steward.ApprovalPending || req.Reason != "contract ended" {
		t.Fatalf("202 %+v, Location %q", req, r.header.Get("Location"))
	}
	e.must(t, http.StatusConflict, "DELETE", "/api/v1/tenants/acme?approval="+req.ID, e.system, nil).problem(t)
	e.must(t, http.StatusForbidden, "POST", "/api/v1/approvals/"+req.ID+"/approve", e.system, nil).problem(t) // the requester
	e.must(t, http.StatusOK, "POST", "/api/v1/approvals/"+req.ID+"/approve", second, nil)
	if _, err := e.store.GetTenant(ctx, "acme"); err != nil {
		t.Fatalf("tenant gone before the approved call: %v", err)
	}
	e.must(t, http.StatusNoContent, "DELETE", "/api/v1/tenants/acme?approval="+req.ID, e.system, nil)

	rows, err := e.store.TenantRows(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range rows {
		if n != 0 {
			t.Fatalf("%s keeps %d rows of the deleted tenant", table, n)
		}
	}
	// Its token no longer works; the tenant is gone.
	p := e.must(t, http.StatusUnauthorized, "GET", "/api/v1/devices", acme, nil).problem(t)
	if p.Code == "" {
		t.Fatal("no code")
	}
	e.must(t, http.StatusNotFound, "GET", "/api/v1/tenants/acme", e.system, nil).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", "/api/v1/tenants/acme", e.system, nil).problem(t)
}
