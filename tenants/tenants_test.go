package tenants

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/steward-iot/steward/internal/testclock"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/approvals"
	"github.com/steward-iot/steward/inproc"
)

type auditLog struct {
	mu   sync.Mutex
	recs []steward.AuditRecord
}

func (l *auditLog) Record(_ context.Context, r steward.AuditRecord) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return nil
}

type env struct {
	store    steward.Store
	svc      *Service
	appr     *approvals.Service
	audit    *auditLog
	mu       sync.Mutex
	controls []steward.SessionControl
}

const acme = "acme"

// newEnv is the service over a real SQLite store and in-process bus, with
// the default tenant (system tokens "sys1", "sys2") and tenant acme with
// 1001 devices (more than one page).
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	clock := testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	store := statusStore(t, clock.Now()) // status_test.go
	for _, id := range []string{"sys1", "sys2"} {
		if err := store.CreateToken(ctx, steward.APIToken{ID: id, TenantID: steward.DefaultTenant, Name: id, Role: steward.RoleSystem, Hash: "h" + id, CreatedAt: clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.InTx(ctx, func(tx steward.Store) error {
		for i := range 1001 {
			d := steward.Device{ID: fmt.Sprintf("d-%04d", i), TenantID: acme, State: steward.StateActive, StateChangedAt: clock.Now(),
				CreatedAt: clock.Now(), UpdatedAt: clock.Now()}
			if err := tx.CreateDevice(ctx, d); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	e := &env{store: store, audit: &auditLog{}}
	bus := inproc.New(nil)
	bus.HandleControl(func(_ context.Context, c steward.SessionControl) {
		e.mu.Lock()
		e.controls = append(e.controls, c)
		e.mu.Unlock()
	})
	e.appr = approvals.New(approvals.Config{Store: store, Clock: clock})
	e.svc = New(Config{Store: store, Bus: bus, Approvals: e.appr, Auditor: e.audit, Clock: clock})
	return e
}

func (e *env) closed() []steward.SessionControl {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.controls)
}

func TestSuspendResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	tn, err := e.svc.Suspend(ctx, acme, "unpaid", "token:sys1", steward.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	if tn.Status != steward.TenantSuspended || tn.StatusReason != "unpaid" {
		t.Fatalf("suspended = %+v", tn)
	}
	cs := e.closed()
	if len(cs) != 1001 {
		t.Fatalf("%d sessions closed, want all 1001 devices'", len(cs))
	}
	seen := map[string]bool{}
	for _, c := range cs {
		if c.TenantID != acme || !c.Close || c.Reason != "tenant suspended" || seen[c.DeviceID] {
			t.Fatalf("control %+v", c)
		}
		seen[c.DeviceID] = true
	}
	tn, err = e.svc.Resume(ctx, acme, "token:sys1", steward.DefaultTenant)
	if err != nil || tn.Status != steward.TenantActive {
		t.Fatalf("resumed = %+v, %v", tn, err)
	}
	var acts []string
	for _, r := range e.audit.recs {
		if r.TenantID != steward.DefaultTenant || r.Target != "tenant:"+acme || len(r.Before) == 0 || len(r.After) == 0 {
			t.Fatalf("audit record %+v", r)
		}
		acts = append(acts, r.Action)
	}
	if !slices.Equal(acts, []string{"tenant.suspend", "tenant.resume"}) {
		t.Fatalf("audit = %v", acts)
	}

	_, err = e.svc.Suspend(ctx, steward.DefaultTenant, "", "token:sys1", steward.DefaultTenant)
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("suspend the default tenant: %v", err)
	}
	_, err = e.svc.Suspend(ctx, "nope", "", "token:sys1", steward.DefaultTenant)
	if !steward.IsNotFound(err) {
		t.Fatalf("suspend an unknown tenant: %v", err)
	}
	if d, _ := e.store.GetTenant(ctx, steward.DefaultTenant); d.Status != steward.TenantActive {
		t.Fatalf("default tenant = %+v", d)
	}
}

func TestDeleteWithoutPolicy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	_, err := e.svc.Delete(ctx, steward.DefaultTenant, "", "", "token:sys1", steward.DefaultTenant)
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("delete the default tenant: %v", err)
	}
	res, err := e.svc.Delete(ctx, acme, "", "customer left", "token:sys1", steward.DefaultTenant)
	if err != nil || !res.Deleted || res.Approval != nil {
		t.Fatalf("Delete = %+v, %v", res, err)
	}
	if len(e.closed()) != 1001 {
		t.Fatalf("%d sessions closed", len(e.closed()))
	}
	rows, err := e.store.TenantRows(ctx, acme)
	if err != nil {
		t.Fatal(err)
	}
	for table, n := range rows {
		if n != 0 {
			t.Fatalf("%s keeps %d rows of the deleted tenant", table, n)
		}
	}
	if _, err := e.store.GetTenant(ctx, acme); !steward.IsNotFound(err) {
		t.Fatalf("deleted tenant: %v", err)
	}
	last := e.audit.recs[len(e.audit.recs)-1]
	if last.Action != ActionDelete || last.Detail != "customer left" {
		t.Fatalf("audit %+v", last)
	}
}

func TestDeleteNeedsApproval(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.appr.CreatePolicy(ctx, steward.ApprovalPolicy{TenantID: steward.DefaultTenant, Name: "tenant deletion",
		Action: "tenant.*", Approvals: 1, Conditions: []steward.ApprovalCondition{{Attribute: "device_count", Op: ">", Value: "0"}}}, "token:sys1"); err != nil {
		t.Fatal(err)
	}
	res, err := e.svc.Delete(ctx, acme, "", "customer left", "token:sys1", steward.DefaultTenant)
	if err != nil || res.Deleted || res.Approval == nil {
		t.Fatalf("Delete without approval = %+v, %v", res, err)
	}
	req := *res.Approval
	var attrs map[string]string
	_ = json.Unmarshal(mustJSON(req.Attributes), &attrs)
	if req.Action != ActionDelete || req.Target != "tenant:"+acme || attrs["device_count"] != "1001" || req.Requester != "token:sys1" {
		t.Fatalf("approval request %+v", req)
	}
	if len(e.closed()) != 0 {
		t.Fatal("sessions closed before the deletion was approved")
	}
	// Not approved yet: refused, nothing deleted.
	_, err = e.svc.Delete(ctx, acme, req.ID, "", "token:sys1", steward.DefaultTenant)
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("delete with a pending approval: %v", err)
	}
	// An approval of something else does not count.
	other, err := e.appr.Request(ctx, steward.ApprovalRequest{TenantID: steward.DefaultTenant, Action: ActionDelete, Target: "tenant:other", Requester: "token:sys1", Approvals: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.appr.Decide(ctx, steward.DefaultTenant, other.ID, steward.Decision{Approver: "token:sys2", Approve: true}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Delete(ctx, acme, other.ID, "", "token:sys1", steward.DefaultTenant)
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("delete with another target's approval: %v", err)
	}
	// An approval in another tenant's name is not found.
	_, err = e.svc.Delete(ctx, acme, req.ID, "", "token:x", acme)
	if steward.ErrorCode(err) == "" {
		t.Fatal("an approval of another tenant was accepted")
	}
	if _, err := e.store.GetTenant(ctx, acme); err != nil {
		t.Fatalf("tenant deleted without approval: %v", err)
	}

	if _, err := e.appr.Decide(ctx, steward.DefaultTenant, req.ID, steward.Decision{Approver: "token:sys2", Approve: true}); err != nil {
		t.Fatal(err)
	}
	res, err = e.svc.Delete(ctx, acme, req.ID, "customer left", "token:sys1", steward.DefaultTenant)
	if err != nil || !res.Deleted || res.Approval == nil || res.Approval.ID != req.ID {
		t.Fatalf("Delete with approval = %+v, %v", res, err)
	}
	if _, err := e.store.GetTenant(ctx, acme); !steward.IsNotFound(err) {
		t.Fatalf("tenant after approved deletion: %v", err)
	}
	// Created again under the same ID: the old approval is spent.
	if err := e.store.CreateTenant(ctx, steward.Tenant{ID: acme, Name: acme, CreatedAt: time.Date(2026, 11, 27, 11, 0, 0, 0, time.UTC)}); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateDevice(ctx, steward.Device{ID: "d-new", TenantID: acme, State: steward.StateActive, CreatedAt: time.Now(), UpdatedAt: time.Now(), StateChangedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Delete(ctx, acme, req.ID, "", "token:sys1", steward.DefaultTenant)
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("reuse of an approval on a new tenant of the same ID: %v", err)
	}
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}
