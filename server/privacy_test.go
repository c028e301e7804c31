package server

import (
	"context"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestEraseIsAudited: erasing a device through the API on a node leaves
// the service's own audit record (device.erase, with the device as its
// target), which survives the erasure of everything else about the device.
func TestEraseIsAudited(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-ERASE-1"))
	id := op.Leaf.Subject.CommonName
	if _, err := n.admin.EraseDevice(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.GetDevice(ctx, id); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("erased device: %v", err)
	}
	recs, _, err := n.admin.SearchAudit(ctx, client.AuditQuery{Action: "device.erase", Target: "device:" + id})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Outcome != steward.AuditSuccess {
		t.Fatalf("audit records of the erasure: %+v", recs)
	}
	rep, err := n.admin.VerifyAudit(ctx, false)
	if err != nil || !rep.OK {
		t.Fatalf("audit log after the erasure: %+v %v", rep, err)
	}
}
