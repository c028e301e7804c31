package server

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// auditRecords returns the default tenant's records of action on target,
// oldest first.
func (n *node) auditRecords(t *testing.T, action, target string) []steward.AuditRecord {
	t.Helper()
	recs, _, err := n.admin.SearchAudit(t.Context(), client.AuditQuery{Action: action, Target: target, Asc: true})
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// TestAuditDevicePlane: a certificate renewal, a refused enrollment with
// its reason, and a flood of device-plane refusals (as the broker hands
// them to the gate) are in the audit log with who, from where and on what,
// the flood as one record with its count.
func TestAuditDevicePlane(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := t.Context()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "listed", mfr, func(g *steward.EnrollmentGroup) { g.Serials, g.Strict = []string{"SN-AUD-1"}, true })
	id := n.enroll(t, mfr.Factory(t, "SN-AUD-1"))
	dev := id.Leaf.Subject.CommonName

	// Renewal: the old certificate before, the new one after, from the
	// device's address.
	_, csr := newCSR(t)
	renewed, err := n.est(&id).SimpleReenroll(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	recs := n.auditRecords(t, "device.certificate.renew", "device:"+dev)
	if len(recs) != 1 {
		t.Fatalf("renewal records %+v", recs)
	}
	r := recs[0]
	if r.Actor != "device:"+dev || r.Outcome != steward.AuditSuccess || !strings.HasPrefix(r.Remote, "127.0.0.1:") ||
		!strings.Contains(string(r.Before), id.Leaf.SerialNumber.Text(16)) || !strings.Contains(string(r.After), renewed.SerialNumber.Text(16)) ||
		!strings.Contains(r.Detail, "new key") {
		t.Fatalf("renewal record %+v (before %s, after %s)", r, r.Before, r.After)
	}

	// A refused enrollment, with the reason, the identity it claimed and
	// its address, in the tenant's log.
	evil := mfr.Factory(t, "SN-EVIL")
	if _, err := n.est(&evil).SimpleEnroll(ctx, csr); err == nil {
		t.Fatal("a serial off the allow-list enrolled")
	}
	recs = n.auditRecords(t, "device.enroll", "factory:SN-EVIL")
	if len(recs) != 1 || recs[0].Outcome != steward.AuditDenied || recs[0].Actor != "anonymous" ||
		!strings.Contains(recs[0].Detail, "allow-list") || !strings.HasPrefix(recs[0].Remote, "127.0.0.1:") || recs[0].TenantID != steward.DefaultTenant {
		t.Fatalf("refused enrollment records %+v", recs)
	}

	// A factory certificate of no registered CA names no tenant: the
	// refusal is in the system log, aggregated by address, with the
	// identity it claimed.
	stranger := testpki.NewCA(t, "Stranger Inc").Factory(t, "SN-STRANGER")
	if _, err := n.est(&stranger).SimpleEnroll(ctx, csr); err == nil {
		t.Fatal("a factory certificate of an unregistered CA enrolled")
	}
	recs, _, err = n.admin.SearchAudit(ctx, client.AuditQuery{System: true, Action: "device.enroll"})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Target != "remote:127.0.0.1" || !strings.Contains(recs[0].Detail, `"SN-STRANGER"`) ||
		!strings.Contains(recs[0].Detail, "registered manufacturer CA") || recs[0].Outcome != steward.AuditDenied {
		t.Fatalf("system log records of the refusal %+v", recs)
	}

	// A flood of refused publishes: the first at once, the rest as one
	// record with the count once the window ends.
	for range 30 {
		n.Prov.RecordSecurityEvent(ctx, steward.SecurityEvent{TenantID: steward.DefaultTenant, DeviceID: dev, Kind: steward.SecACLDenied,
			Remote: "203.0.113.5:5000", Detail: `publish to "dev/other/telemetry" refused`})
	}
	if recs = n.auditRecords(t, "security.acl_denied", "device:"+dev); len(recs) != 1 {
		t.Fatalf("%d records of the flood before its window ended, want 1", len(recs))
	}
	n.clock.Add(provisioningWindow + time.Second)
	n.Prov.FlushRefusals(ctx)
	recs = n.auditRecords(t, "security.acl_denied", "device:"+dev)
	if len(recs) != 2 {
		t.Fatalf("records of the flood %+v, want the first and a summary", recs)
	}
	var sum struct{ Count int }
	if err := json.Unmarshal(recs[1].After, &sum); err != nil || sum.Count != 29 || recs[1].Remote != "203.0.113.5:5000" ||
		recs[1].Actor != "device:"+dev || !strings.Contains(recs[1].Detail, "aggregated") {
		t.Fatalf("the flood's summary %+v (%s): %v", recs[1], recs[1].After, err)
	}
	if rep, err := n.admin.VerifyAudit(ctx, false); err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}

// provisioningWindow is the refusal aggregation window of a node.
const provisioningWindow = 5 * time.Minute

// TestAuditRetention sets a tenant's audit retention through the API,
// refuses a period under the minimum, and runs the retention job a
// period later: the old records are archived and pruned, the run is
// recorded with what it deleted, and the log still verifies, online and
// from an export, and the archive against it.
func TestAuditRetention(t *testing.T) {
	t.Parallel()
	archiveDir := filepath.Join(t.TempDir(), "audit-archive")
	n := startNode(t, func(c *Config) { c.AuditArchive = archiveDir })
	ctx := t.Context()
	before, err := n.admin.AuditRetention(ctx)
	if err != nil || before.Period != nil || before.PrunedUpTo != 0 {
		t.Fatalf("retention of a new node %+v: %v", before, err)
	}
	size, err := n.Store.AuditSize(ctx, steward.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.admin.SetAuditRetention(ctx, steward.DefaultTenant, 364, ""); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("364 days: %v, want invalid", err)
	}
	if _, _, err := n.admin.SetAuditRetention(ctx, "no-such-tenant", 400, ""); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("unknown tenant: %v, want not found", err)
	}
	if got, _ := n.admin.AuditRetention(ctx); got.Period != nil {
		t.Fatalf("a refused period was set: %+v", got)
	}
	// A policy makes shortening the period a two-person action.
	if _, err := n.admin.CreateApprovalPolicy(ctx, client.ApprovalPolicyRequest{Name: "audit retention", Action: audit.RetentionAction,
		Conditions: []steward.ApprovalCondition{{Attribute: "shorter", Op: "=", Value: "true"}}, Approvals: 1}); err != nil {
		t.Fatal(err)
	}
	_, pending, err := n.admin.SetAuditRetention(ctx, steward.DefaultTenant, 400, "")
	if err != nil || pending == nil || pending.State != steward.ApprovalPending || pending.Attributes["period_days"] != "400" {
		t.Fatalf("shortening without approval: %+v %v", pending, err)
	}
	if got, _ := n.admin.AuditRetention(ctx); got.Period != nil {
		t.Fatalf("the period changed before the approval: %+v", got)
	}
	if _, _, err := n.admin.SetAuditRetention(ctx, steward.DefaultTenant, 400, pending.ID); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("with a pending approval: %v", err)
	}
	second, err := n.admin.CreateToken(ctx, "second", steward.RoleSystem)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.New(n.APIURL(), second.Secret, nil).Approve(ctx, pending.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := n.admin.SetAuditRetention(ctx, steward.DefaultTenant, 500, pending.ID); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("an approval of 400 days used for 500: %v", err)
	}
	pol, pending, err := n.admin.SetAuditRetention(ctx, steward.DefaultTenant, 400, pending.ID)
	if err != nil || pending != nil || pol.Period == nil || time.Duration(*pol.Period) != 400*24*time.Hour {
		t.Fatalf("set 400 days: %+v %+v %v", pol, pending, err)
	}
	// The change is recorded with the period before and after.
	changes := n.auditRecords(t, audit.RetentionAction, "audit-log:steward-audit/"+steward.DefaultTenant)
	if len(changes) != 1 || string(changes[0].Before) != `{"period":"forever"}` || !strings.HasPrefix(changes[0].Actor, "token:") ||
		!strings.Contains(changes[0].Detail, "approved by request") {
		t.Fatalf("records of the change %+v", changes)
	}

	// A period later the records written so far are past it.
	n.clock.Add(401 * 24 * time.Hour)
	after, err := n.Store.AuditSize(ctx, steward.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := n.DataRetention.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if int64(pruned[audit.RetentionClass]) != after || after <= size {
		t.Fatalf("pruned %v of a log of %d records", pruned, after)
	}
	runs := n.auditRecords(t, "retention.run", "")
	if len(runs) != 1 || !strings.Contains(string(runs[0].After), `"audit.log":`) || runs[0].Actor != "system:retention" {
		t.Fatalf("records of the run %+v", runs)
	}
	rep, err := n.admin.VerifyAudit(ctx, false)
	if err != nil || !rep.OK || rep.PrunedRecords != after || len(rep.Pruned) != 1 {
		t.Fatalf("verify after pruning: %+v %v", rep, err)
	}
	if pol, err = n.admin.AuditRetention(ctx); err != nil || pol.PrunedUpTo != after {
		t.Fatalf("retention after pruning %+v: %v", pol, err)
	}
	var export bytes.Buffer
	if err := n.admin.ExportAudit(ctx, false, &export); err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(archiveDir, "audit-"+steward.DefaultTenant+"-*.jsonl"))
	if err != nil || len(files) != 1 {
		t.Fatalf("archives %v: %v", files, err)
	}
	archive, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	off, err := audit.VerifyArchive(bytes.NewReader(archive), bytes.NewReader(export.Bytes()), n.Audit.VerifierKey())
	if err != nil || !off.OK || off.Archived != after {
		t.Fatalf("the archive against the export: %+v %v", off, err)
	}
}
