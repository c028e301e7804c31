package server

import (
	"context"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestTenantSuspensionOnDevicePlane suspends a tenant with a device
// connected over MQTT: the session is closed at once, the device is refused
// at MQTT and at EST while suspended (each refusal a tenant_suspended
// security event), the tenant's token is refused, and all of it works again
// once the tenant is resumed. Then the tenant is deleted: its device is
// refused for good and its token no longer authenticates.
func TestTenantSuspensionOnDevicePlane(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	created, err := n.admin.CreateTenant(ctx, "acme", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	acme := client.New(n.APIURL(), created.Token.Secret, nil)
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, acme, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName
	lost := make(chan error, 1)
	if _, err := n.mqttClient(t, op, id, lost); err != nil {
		t.Fatal(err)
	}

	tn, err := n.admin.SuspendTenant(ctx, "acme", "unpaid")
	if err != nil || tn.Status != steward.TenantSuspended {
		t.Fatalf("suspend: %+v, %v", tn, err)
	}
	waitLost(t, lost, "tenant suspended")
	if _, err := n.mqttClient(t, op, id, nil); err == nil {
		t.Fatal("a device of a suspended tenant connected")
	}
	if _, err := n.est(&op).SimpleReenroll(ctx, mustCSR(t)); err == nil {
		t.Fatal("a device of a suspended tenant renewed its certificate")
	}
	if _, err := n.est(ptr(mfr.Factory(t, "SN-2"))).SimpleEnroll(ctx, mustCSR(t)); err == nil {
		t.Fatal("a new device of a suspended tenant enrolled")
	}
	if _, err := acme.ListEnrollmentGroups(ctx); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Fatalf("the suspended tenant's token: %v", err)
	}
	evs, err := n.Store.ListSecurityEvents(ctx, "acme", steward.SecurityEventFilter{Kind: steward.SecTenantSuspended})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) < 3 {
		t.Fatalf("%d tenant_suspended security events, want one per refusal (MQTT, re-enroll, enroll): %+v", len(evs), evs)
	}

	if _, err := n.admin.ResumeTenant(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.mqttClient(t, op, id, nil); err != nil {
		t.Fatalf("after resumption: %v", err)
	}
	if _, err := acme.ListEnrollmentGroups(ctx); err != nil {
		t.Fatalf("the resumed tenant's token: %v", err)
	}

	deleted, _, err := n.admin.DeleteTenant(ctx, "acme", "", "test")
	if err != nil || !deleted {
		t.Fatalf("delete: %v, %v", deleted, err)
	}
	if _, err := n.mqttClient(t, op, id, nil); err == nil {
		t.Fatal("a device of a deleted tenant connected")
	}
	if _, err := acme.ListEnrollmentGroups(ctx); steward.ErrorCode(err) != steward.CodeUnauthenticated {
		t.Fatalf("the deleted tenant's token: %v", err)
	}
}
