package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// transfer returns a pending transfer of a device of tenant A to tenant B.
func transfer(id, deviceID, codeHash string) steward.DeviceTransfer {
	return steward.DeviceTransfer{ID: id, TenantID: tenantA, DeviceID: deviceID, TargetTenantID: tenantB, Reason: "sold",
		Policy: steward.DataDelete, State: steward.TransferPending, CodeHash: codeHash, FactoryID: "fac-" + deviceID,
		Model: "gw-100", Serial: "SN-" + deviceID, Hardware: "revB", RequestedBy: "token:a",
		CreatedAt: t0, ExpiresAt: at(7 * 24 * time.Hour), UpdatedAt: t0}
}

// testDeviceTransfers covers transfers between tenants: one pending
// transfer per device, finding one by its code across tenants, finishing
// it once only, expiry, and tenant isolation; bad input changes nothing.
func testDeviceTransfers(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	must(t, s.CreateDevice(c, device(tenantB, "d-3")))

	for name, mutate := range map[string]func(*steward.DeviceTransfer){
		"no code":         func(tr *steward.DeviceTransfer) { tr.CodeHash = "" },
		"same tenant":     func(tr *steward.DeviceTransfer) { tr.TargetTenantID = tenantA },
		"not pending":     func(tr *steward.DeviceTransfer) { tr.State = steward.TransferAccepted },
		"unknown policy":  func(tr *steward.DeviceTransfer) { tr.Policy = "shred" },
		"already expired": func(tr *steward.DeviceTransfer) { tr.ExpiresAt = t0 },
	} {
		bad := transfer("tr-bad", "d-1", "h-bad")
		mutate(&bad)
		if err := s.CreateDeviceTransfer(c, bad); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("%s: %v, want invalid", name, err)
		}
	}
	other := transfer("tr-x", "d-3", "h-x") // d-3 is tenant B's
	wantCode(t, s.CreateDeviceTransfer(c, other), steward.CodeNotFound)
	if list, err := s.ListDeviceTransfers(c, tenantA, ""); err != nil || len(list) != 0 {
		t.Fatalf("bad input left transfers: %+v %v", list, err)
	}

	tr := transfer("tr-1", "d-1", "h-1")
	must(t, s.CreateDeviceTransfer(c, tr))
	wantCode(t, s.CreateDeviceTransfer(c, transfer("tr-2", "d-1", "h-2")), steward.CodeConflict) // one pending per device
	wantCode(t, s.CreateDeviceTransfer(c, transfer("tr-3", "d-2", "h-1")), steward.CodeConflict) // codes are unique

	got, err := s.GetDeviceTransfer(c, tenantA, "tr-1")
	must(t, err)
	if got.CodeHash != "h-1" || got.FactoryID != "fac-d-1" || got.Serial != "SN-d-1" || got.State != steward.TransferPending ||
		!got.ExpiresAt.Equal(stored(tr.ExpiresAt)) || got.FinishedAt != nil {
		t.Fatalf("stored transfer: %+v", got)
	}
	_, err = s.GetDeviceTransfer(c, tenantB, "tr-1") // the target does not read it by ID
	wantCode(t, err, steward.CodeNotFound)
	if byCode, err := s.DeviceTransferByCode(c, "h-1"); err != nil || byCode.ID != "tr-1" {
		t.Fatalf("by code: %+v %v", byCode, err)
	}
	_, err = s.DeviceTransferByCode(c, "h-none")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.DeviceTransferByCode(c, "")
	wantCode(t, err, steward.CodeNotFound)
	if lb, err := s.ListDeviceTransfers(c, tenantB, ""); err != nil || len(lb) != 0 {
		t.Fatalf("tenant B lists A's transfers: %+v %v", lb, err)
	}
	if in, err := s.ListIncomingTransfers(c, tenantB); err != nil || len(in) != 0 {
		t.Fatalf("a pending transfer listed as incoming: %+v %v", in, err)
	}

	// Finishing: once only; B cannot finish A's transfer.
	done := at(time.Hour)
	acc := got
	acc.State, acc.FinishedBy, acc.FinishedAt, acc.TargetDeviceID = steward.TransferAccepted, "token:b", &done, "d-9"
	wrong := acc
	wrong.TenantID = tenantB
	wantCode(t, s.FinishDeviceTransfer(c, wrong), steward.CodeNotFound)
	bad := acc
	bad.State = steward.TransferPending
	wantCode(t, s.FinishDeviceTransfer(c, bad), steward.CodeInvalid)
	must(t, s.FinishDeviceTransfer(c, acc))
	cancel := acc
	cancel.State = steward.TransferCancelled
	wantCode(t, s.FinishDeviceTransfer(c, cancel), steward.CodeFailedPrecondition)
	must(t, s.SetTransferDecommission(c, tenantA, "tr-1", "dc-1"))
	wantCode(t, s.SetTransferDecommission(c, tenantB, "tr-1", "dc-2"), steward.CodeNotFound)
	got, err = s.GetDeviceTransfer(c, tenantA, "tr-1")
	must(t, err)
	if got.State != steward.TransferAccepted || got.FinishedBy != "token:b" || got.FinishedAt == nil || !got.FinishedAt.Equal(stored(done)) ||
		got.TargetDeviceID != "d-9" || got.DecommissionID != "dc-1" {
		t.Fatalf("accepted transfer: %+v", got)
	}
	if in, err := s.ListIncomingTransfers(c, tenantB); err != nil || len(in) != 1 || in[0].ID != "tr-1" {
		t.Fatalf("incoming: %+v %v", in, err)
	}
	if in, err := s.ListIncomingTransfers(c, tenantA); err != nil || len(in) != 0 {
		t.Fatalf("incoming of the source: %+v %v", in, err)
	}

	// A second transfer of the device may start once the first finished;
	// expiry takes only those past their time.
	later := transfer("tr-4", "d-1", "h-4")
	later.CreatedAt, later.ExpiresAt = at(2*time.Hour), at(3*time.Hour)
	must(t, s.CreateDeviceTransfer(c, later))
	must(t, s.CreateDeviceTransfer(c, transfer("tr-5", "d-2", "h-5")))
	if gone, err := s.ExpireDeviceTransfers(c, at(2*time.Hour)); err != nil || len(gone) != 0 {
		t.Fatalf("expired early: %+v %v", gone, err)
	}
	gone, err := s.ExpireDeviceTransfers(c, at(3*time.Hour))
	must(t, err)
	if len(gone) != 1 || gone[0].ID != "tr-4" || gone[0].State != steward.TransferExpired {
		t.Fatalf("expired: %+v", gone)
	}
	if got, _ := s.GetDeviceTransfer(c, tenantA, "tr-4"); got.State != steward.TransferExpired || got.FinishedBy != "system" {
		t.Fatalf("expired transfer: %+v", got)
	}
	if got, _ := s.GetDeviceTransfer(c, tenantA, "tr-5"); got.State != steward.TransferPending {
		t.Fatalf("another transfer expired: %+v", got)
	}
	list, err := s.ListDeviceTransfers(c, tenantA, "d-1")
	must(t, err)
	if len(list) != 2 || list[0].ID != "tr-4" || list[1].ID != "tr-1" {
		t.Fatalf("transfers of d-1, newest first: %+v", list)
	}
}

// testIndividualEnrollments covers individual enrollments: one per factory
// certificate across tenants, replaced when the device moves on, and
// tenant isolation of the listing.
func testIndividualEnrollments(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantB, "d-2")))
	must(t, s.CreateDevice(c, device(tenantB, "d-3")))

	e := steward.IndividualEnrollment{TenantID: tenantA, DeviceID: "d-1", FactoryID: "fac-x", Model: "gw-100", Serial: "SN-1", TransferID: "tr-1", CreatedAt: t0}
	bad := e
	bad.FactoryID = ""
	wantCode(t, s.PutIndividualEnrollment(c, bad, ""), steward.CodeInvalid)
	bad = e
	bad.DeviceID = "d-2" // tenant B's device
	wantCode(t, s.PutIndividualEnrollment(c, bad, ""), steward.CodeNotFound)
	_, err := s.IndividualEnrollmentByFactoryID(c, "fac-x")
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.PutIndividualEnrollment(c, e, ""))
	got, err := s.IndividualEnrollmentByFactoryID(c, "fac-x")
	must(t, err)
	if got.TenantID != tenantA || got.DeviceID != "d-1" || got.Model != "gw-100" || got.Serial != "SN-1" || got.TransferID != "tr-1" || !got.CreatedAt.Equal(stored(t0)) {
		t.Fatalf("stored enrollment: %+v", got)
	}
	// Another tenant cannot pin the same certificate, unless it replaces
	// the tenant the device leaves; nothing changed by the refusal.
	inB := steward.IndividualEnrollment{TenantID: tenantB, DeviceID: "d-2", FactoryID: "fac-x", CreatedAt: at(time.Hour)}
	wantCode(t, s.PutIndividualEnrollment(c, inB, ""), steward.CodeConflict)
	wantCode(t, s.PutIndividualEnrollment(c, inB, tenantB), steward.CodeConflict) // replacing its own, not A's
	if got, err := s.IndividualEnrollmentByFactoryID(c, "fac-x"); err != nil || got.TenantID != tenantA {
		t.Fatalf("after refusals: %+v %v", got, err)
	}
	if lb, err := s.ListIndividualEnrollments(c, tenantB); err != nil || len(lb) != 0 {
		t.Fatalf("tenant B lists: %+v %v", lb, err)
	}
	must(t, s.PutIndividualEnrollment(c, inB, tenantA))
	if got, err := s.IndividualEnrollmentByFactoryID(c, "fac-x"); err != nil || got.TenantID != tenantB || got.DeviceID != "d-2" {
		t.Fatalf("after the move: %+v %v", got, err)
	}
	if la, err := s.ListIndividualEnrollments(c, tenantA); err != nil || len(la) != 0 {
		t.Fatalf("tenant A keeps an enrollment: %+v %v", la, err)
	}
	// One enrollment per device.
	wantCode(t, s.PutIndividualEnrollment(c, steward.IndividualEnrollment{TenantID: tenantB, DeviceID: "d-2", FactoryID: "fac-y", CreatedAt: t0}, ""), steward.CodeConflict)
	must(t, s.PutIndividualEnrollment(c, steward.IndividualEnrollment{TenantID: tenantB, DeviceID: "d-3", FactoryID: "fac-y", CreatedAt: t0}, ""))
	lb, err := s.ListIndividualEnrollments(c, tenantB)
	must(t, err)
	if len(lb) != 2 || lb[0].DeviceID != "d-2" || lb[1].DeviceID != "d-3" {
		t.Fatalf("tenant B's enrollments: %+v", lb)
	}
}
