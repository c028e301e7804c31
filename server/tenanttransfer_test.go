package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/internal/testpki"
)

// newTenant creates a tenant and returns its admin's client.
func (n *node) newTenant(t *testing.T, id string) *client.Client {
	t.Helper()
	created, err := n.admin.CreateTenant(context.Background(), id, "Tenant "+id)
	if err != nil {
		t.Fatal(err)
	}
	return client.New(n.APIURL(), created.Token.Secret, nil)
}

// auditActions returns the actions of a tenant's audit records on target.
func auditActions(t *testing.T, c *client.Client, target string) []string {
	t.Helper()
	recs, _, err := c.SearchAudit(context.Background(), client.AuditQuery{Target: target, Asc: true, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Action)
	}
	return out
}

// TestTransferToAnotherTenant moves a device from the default tenant to
// tenant beta, end to end: the device enrolled with the real EST client and
// connected over MQTT in the source; the transfer closes its session and
// revokes its certificate, and refuses bad input and bad codes without
// changing anything; beta accepts with the code; the real agent, with the
// same factory certificate and a reset state, enrolls into beta through the
// individual enrollment, gets a certificate from beta's CA and becomes
// active there over MQTT; the old certificate stays refused at MQTT and EST;
// the source keeps a decommissioned tombstone with its signed record and
// its data is gone; beta has the inventory and nothing else.
// It runs on SQLite, and on PostgreSQL too when STEWARD_TEST_POSTGRES is
// set.
func TestTransferToAnotherTenant(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		testTransferToAnotherTenant(t, startNode(t))
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		base, ok := pgtest.URL()
		if !ok {
			t.Skip("STEWARD_TEST_POSTGRES is not set: skipping the transfer on PostgreSQL")
		}
		_, u := pgtest.Schema(t, base, "transfere2e_")
		testTransferToAnotherTenant(t, startNode(t, func(c *Config) { c.StoreURL = u }))
	})
}

func testTransferToAnotherTenant(t *testing.T, n *node) {
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-1")
	op := n.enroll(t, factory)
	id := op.Leaf.Subject.CommonName
	lost := make(chan error, 1)
	conn, err := n.mqttClient(t, op, id, lost)
	if err != nil {
		t.Fatal(err)
	}
	if tok := conn.Publish("dev/"+id+"/attributes", 1, false, `{"model":"gw-100","firmware":"1.0.0","hardware":"revB","hostname":"north-7"}`); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("publish attributes: %v", tok.Error())
	}
	eventually(t, "device active in the source", func() bool { return n.deviceGet(t, id).State == steward.StateActive })
	if err := n.Store.WriteSamples(ctx, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.5, At: n.clock.Now()}}); err != nil {
		t.Fatal(err)
	}
	beta := n.newTenant(t, "beta")

	// Bad input: refused, and the device is as it was.
	for name, r := range map[string]steward.TenantTransferRequest{
		"no reason":      {ToTenant: "beta"},
		"no tenant":      {Reason: "sold"},
		"its own tenant": {ToTenant: steward.DefaultTenant, Reason: "sold"},
		"bad policy":     {ToTenant: "beta", Reason: "sold", Policy: "shred"},
		"retention":      {ToTenant: "beta", Reason: "sold", RetentionDays: 3},
	} {
		if _, err := n.admin.TransferToTenant(ctx, id, r); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
	if _, err := n.admin.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: "nowhere", Reason: "sold"}); !steward.IsNotFound(err) {
		t.Errorf("unknown tenant: %v", err)
	}
	if _, err := beta.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: steward.DefaultTenant, Reason: "mine now"}); !steward.IsNotFound(err) {
		t.Errorf("the target started a transfer of the source's device: %v", err)
	}
	if d := n.deviceGet(t, id); d.State != steward.StateActive || d.Certificates[0].Revoked() {
		t.Fatalf("refused transfers changed the device: %+v", d.Device)
	}

	res, err := n.admin.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: "beta", Reason: "sold to Beta"})
	if err != nil {
		t.Fatal(err)
	}
	tr := res.Transfer
	if tr == nil || !strings.HasPrefix(res.Code, "stx-") || tr.State != steward.TransferPending || tr.Policy != steward.DataDelete ||
		tr.Serial != "SN-1" || tr.Model != "gw-100" || !tr.ExpiresAt.Equal(tr.CreatedAt.Add(steward.DefaultTransferTTL)) {
		t.Fatalf("transfer: %+v", res)
	}
	waitLost(t, lost, "device transferred to another tenant")
	if d := n.deviceGet(t, id); d.State != steward.StateRegistered || !d.Certificates[0].Revoked() || d.Attributes["hostname"] != nil {
		t.Fatalf("released device: %+v", d.Device)
	}
	if _, err := n.admin.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: "beta", Reason: "again"}); steward.ErrorCode(err) != steward.CodeConflict {
		t.Errorf("second pending transfer: %v", err)
	}
	// While it is pending, the factory identity cannot enroll in the source again.
	if _, err := n.est(&factory).SimpleEnroll(ctx, csrOnly(t)); err == nil {
		t.Fatal("a device awaiting its transfer enrolled in the source again")
	}

	// Bad codes: refused, nothing changed.
	if _, err := beta.AcceptTransfer(ctx, "stx-"+strings.Repeat("a", 32)); !steward.IsNotFound(err) {
		t.Errorf("wrong code: %v", err)
	}
	if _, err := beta.AcceptTransfer(ctx, ""); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Errorf("no code: %v", err)
	}
	gamma := n.newTenant(t, "gamma")
	if _, err := gamma.AcceptTransfer(ctx, res.Code); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Errorf("a code for another tenant: %v", err)
	}
	if ds, _ := beta.AllDevices(ctx, ""); len(ds) != 0 {
		t.Fatalf("refused codes created devices: %+v", ds)
	}
	if ds, _ := gamma.AllDevices(ctx, ""); len(ds) != 0 {
		t.Fatalf("refused codes created devices: %+v", ds)
	}
	if got, _ := n.admin.GetTransfer(ctx, tr.ID); got.State != steward.TransferPending {
		t.Fatalf("refused codes changed the transfer: %+v", got)
	}

	acc, err := beta.AcceptTransfer(ctx, res.Code)
	if err != nil {
		t.Fatal(err)
	}
	newID := acc.Device.ID
	if acc.Transfer.State != steward.TransferAccepted || newID == id || acc.Device.TenantID != "beta" || acc.Device.State != steward.StateRegistered ||
		acc.Device.Model != "gw-100" || acc.Device.Serial != "SN-1" || acc.Device.Hardware != "revB" || len(acc.Device.Attributes) != 0 {
		t.Fatalf("acceptance: %+v", acc)
	}
	if _, err := beta.AcceptTransfer(ctx, res.Code); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("accepted twice: %v", err)
	}
	if _, err := n.admin.CancelTransfer(ctx, tr.ID); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("cancelled after acceptance: %v", err)
	}
	if ds, _ := beta.AllDevices(ctx, ""); len(ds) != 1 {
		t.Fatalf("beta's devices after a second acceptance: %+v", ds)
	}
	// Beta has the inventory and none of the source's data.
	if s, err := beta.LatestTelemetry(ctx, newID); err != nil || len(s) != 0 {
		t.Errorf("beta sees telemetry of the source: %v %v", s, err)
	}

	// The source: a tombstone, its data gone under the delete policy, a
	// signed record, the transfer accepted.
	src := n.deviceGet(t, id)
	if src.State != steward.StateDecommissioned || src.FactoryID != "" || !strings.Contains(src.StateReason, tr.ID) {
		t.Fatalf("source's record: %+v", src.Device)
	}
	if active, _ := n.admin.AllDevices(ctx, "state = active"); len(active) != 0 {
		t.Errorf("the source lists the device as active: %+v", active)
	}
	if s, _ := n.admin.LatestTelemetry(ctx, id); len(s) != 0 {
		t.Errorf("the source kept telemetry under the delete policy: %v", s)
	}
	got, err := n.admin.GetTransfer(ctx, tr.ID)
	if err != nil || got.State != steward.TransferAccepted || got.TargetDeviceID != newID || got.DecommissionID == "" {
		t.Fatalf("source's transfer: %+v %v", got, err)
	}
	rec, err := n.admin.GetDecommission(ctx, got.DecommissionID)
	if err != nil || rec.State != steward.DecommissionCompleted || rec.Certificate == "" || rec.Steps[0].Name != decommission.StepWipe || rec.Steps[0].Outcome != steward.StepSkipped {
		t.Fatalf("tombstone record: %+v %v", rec, err)
	}
	for _, s := range rec.Steps[1:] {
		if s.Outcome != steward.StepOK {
			t.Errorf("tombstone step %s: %s %s", s.Name, s.Outcome, s.Detail)
		}
	}

	// The device, reset by its new owner, enrolls with its factory
	// certificate: into beta, with a certificate of beta's CA.
	a := n.runAgent(t, factory, "gw-100", "1.0.0")
	eventually(t, "transferred device active in beta", func() bool {
		d, err := beta.GetDevice(ctx, newID)
		return err == nil && d.State == steward.StateActive && d.Presence.Online
	})
	if a.DeviceID() != newID {
		t.Fatalf("the agent enrolled as %s, want %s", a.DeviceID(), newID)
	}
	d, err := beta.GetDevice(ctx, newID)
	if err != nil || len(d.Certificates) != 1 {
		t.Fatalf("beta's device: %+v %v", d, err)
	}
	caPEM, err := beta.DeviceCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	betaCA := parsePEMCert(t, caPEM)
	issued := parsePEMCert(t, []byte(d.Certificates[0].PEM))
	if err := issued.CheckSignatureFrom(betaCA); err != nil {
		t.Errorf("the certificate in beta is not from beta's CA: %v", err)
	}

	// The old certificate stays refused at MQTT and EST.
	if _, err := n.mqttClient(t, op, id, nil); err == nil {
		t.Error("the old certificate connected over MQTT")
	}
	if _, err := n.est(&op).SimpleReenroll(ctx, csrOnly(t)); err == nil {
		t.Error("the old certificate renewed over EST")
	}

	// Both sides audited.
	srcActions := strings.Join(auditActions(t, n.admin, "device:"+id), " ")
	for _, want := range []string{decommission.ActionTenantTransfer, "device.transfer_tenant.complete", "device.decommission.data_policy"} {
		if !strings.Contains(srcActions, want) {
			t.Errorf("source's audit log lacks %s: %s", want, srcActions)
		}
	}
	if got := auditActions(t, beta, "device:"+newID); !strings.Contains(strings.Join(got, " "), "device.transfer_tenant.accept") {
		t.Errorf("beta's audit log: %v", got)
	}
	if in, err := beta.Transfers(ctx, "", true); err != nil || len(in) != 1 || in[0].ID != tr.ID {
		t.Errorf("beta's incoming transfers: %+v %v", in, err)
	}
}

// TestTransferCancelAndExpiry cancels a pending transfer, after which its
// code is refused and the device enrolls again in its own tenant; and lets
// a second one expire, whose code is refused too.
func TestTransferCancelAndExpiry(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-2")
	id := n.enroll(t, factory).Leaf.Subject.CommonName
	beta := n.newTenant(t, "beta")

	res, err := n.admin.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: "beta", Reason: "lease ended", Policy: steward.DataKeep, RetentionDays: 30})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := beta.CancelTransfer(ctx, res.Transfer.ID); !steward.IsNotFound(err) {
		t.Errorf("the target cancelled: %v", err)
	}
	cancelled, err := n.admin.CancelTransfer(ctx, res.Transfer.ID)
	if err != nil || cancelled.State != steward.TransferCancelled {
		t.Fatalf("cancel: %+v %v", cancelled, err)
	}
	if _, err := n.admin.CancelTransfer(ctx, res.Transfer.ID); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("cancelled twice: %v", err)
	}
	if _, err := beta.AcceptTransfer(ctx, res.Code); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("a cancelled code: %v", err)
	}
	if ds, _ := beta.AllDevices(ctx, ""); len(ds) != 0 {
		t.Fatalf("a cancelled code created devices: %+v", ds)
	}
	// Cancelled, the device was released: it enrolls in its own tenant again.
	if again := n.enroll(t, factory); again.Leaf.Subject.CommonName != id {
		t.Fatalf("enrolled again as %s, want %s", again.Leaf.Subject.CommonName, id)
	}
	if d := n.deviceGet(t, id); d.State != steward.StateProvisioned {
		t.Fatalf("after the cancelled transfer: %s", d.State)
	}

	res, err = n.admin.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: "beta", Reason: "sold"})
	if err != nil {
		t.Fatal(err)
	}
	n.clock.Add(steward.DefaultTransferTTL + time.Minute)
	if _, err := beta.AcceptTransfer(ctx, res.Code); steward.ErrorCode(err) != steward.CodeFailedPrecondition || !strings.Contains(err.Error(), "expired") {
		t.Errorf("an expired code: %v", err)
	}
	if ds, _ := beta.AllDevices(ctx, ""); len(ds) != 0 {
		t.Fatalf("an expired code created devices: %+v", ds)
	}
	if got, _ := n.admin.GetTransfer(ctx, res.Transfer.ID); got.State != steward.TransferPending {
		t.Fatalf("a refused code changed the transfer: %+v", got)
	}
	if expired, err := n.Decommission.ExpireTransfers(ctx); err != nil || expired != 1 {
		t.Fatalf("expire: %d %v", expired, err)
	}
	if got, _ := n.admin.GetTransfer(ctx, res.Transfer.ID); got.State != steward.TransferExpired || got.FinishedBy != "system" {
		t.Fatalf("expired transfer: %+v", got)
	}
	if acts := strings.Join(auditActions(t, n.admin, "device:"+id), " "); !strings.Contains(acts, "device.transfer_tenant.cancel") || !strings.Contains(acts, "device.transfer_tenant.expire") {
		t.Errorf("source's audit log: %s", acts)
	}
	// Expired, the device enrolls in its own tenant again.
	if again := n.enroll(t, factory); again.Leaf.Subject.CommonName != id {
		t.Fatalf("enrolled again as %s, want %s", again.Leaf.Subject.CommonName, id)
	}
}

// csrOnly returns a PKCS#10 request for a new key.
func csrOnly(t *testing.T) []byte {
	t.Helper()
	_, csr := newCSR(t)
	return csr
}

func parsePEMCert(t *testing.T, p []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(p)
	if b == nil {
		t.Fatalf("not PEM: %q", p)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestTransferNeedsApproval puts a transfer to another tenant under the
// two-person rule: the first call opens an approval request and changes
// nothing else; the call with the approved request creates the transfer.
// The transferred device that then reports another model than it was
// transferred as is quarantined in the target.
func TestTransferNeedsApproval(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-3")
	op := n.enroll(t, factory)
	id := op.Leaf.Subject.CommonName
	conn, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatal(err)
	}
	if tok := conn.Publish("dev/"+id+"/attributes", 1, false, `{"model":"gw-100","firmware":"1.0.0"}`); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("publish attributes: %v", tok.Error())
	}
	eventually(t, "device active", func() bool { return n.deviceGet(t, id).State == steward.StateActive })
	beta := n.newTenant(t, "beta")
	if _, err := n.admin.CreateApprovalPolicy(ctx, client.ApprovalPolicyRequest{Name: "transfers", Action: decommission.ActionTenantTransfer, Approvals: 1}); err != nil {
		t.Fatal(err)
	}
	tok, err := n.admin.CreateToken(ctx, "approver", steward.RoleApprover)
	if err != nil {
		t.Fatal(err)
	}
	approver := client.New(n.APIURL(), tok.Secret, nil)

	req := steward.TenantTransferRequest{ToTenant: "beta", Reason: "sold"}
	first, err := n.admin.TransferToTenant(ctx, id, req)
	if err != nil || first.Approval == nil || first.Transfer != nil || first.Code != "" {
		t.Fatalf("first call: %+v %v", first, err)
	}
	if d := n.deviceGet(t, id); d.State != steward.StateActive || d.Certificates[0].Revoked() {
		t.Fatal("a transfer awaiting approval changed the device")
	}
	if trs, _ := n.admin.Transfers(ctx, id, false); len(trs) != 0 {
		t.Fatalf("a transfer awaiting approval was created: %+v", trs)
	}
	req.ApprovalID = first.Approval.ID
	if _, err := n.admin.TransferToTenant(ctx, id, req); !is409(err) {
		t.Errorf("before approval: %v, want 409", err)
	}
	if _, err := approver.Approve(ctx, first.Approval.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	res, err := n.admin.TransferToTenant(ctx, id, req)
	if err != nil || res.Transfer == nil || res.Transfer.ApprovalID != first.Approval.ID || res.Code == "" {
		t.Fatalf("approved call: %+v %v", res, err)
	}
	acc, err := beta.AcceptTransfer(ctx, res.Code)
	if err != nil {
		t.Fatal(err)
	}

	// In beta the device is held to the model it was transferred as.
	again := n.enroll(t, factory)
	if again.Leaf.Subject.CommonName != acc.Device.ID {
		t.Fatalf("enrolled as %s, want %s", again.Leaf.Subject.CommonName, acc.Device.ID)
	}
	conn, err = n.mqttClient(t, again, acc.Device.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Quarantine closes the session once the report is in, which may be
	// before the client sees its acknowledgement: the state tells.
	conn.Publish("dev/"+acc.Device.ID+"/attributes", 1, false, `{"model":"gw-200","firmware":"1.0.0"}`).WaitTimeout(15 * time.Second)
	var d steward.DeviceDetail
	eventually(t, "device quarantined in beta", func() bool {
		d, err = beta.GetDevice(ctx, acc.Device.ID)
		return err == nil && d.State == steward.StateQuarantined
	})
	if !strings.Contains(d.StateReason, `model "gw-200" is not the model "gw-100"`) {
		t.Errorf("quarantine reason: %q", d.StateReason)
	}
}

// TestTransferThereAndBack moves a device to beta and back: each tenant it
// leaves keeps a tombstone without its factory identity, so the identity
// can return, and the individual enrollment follows the device.
func TestTransferThereAndBack(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-4")
	first := n.enroll(t, factory).Leaf.Subject.CommonName
	beta := n.newTenant(t, "beta")
	move := func(from, to *client.Client, id, toTenant string) (string, tls.Certificate) {
		t.Helper()
		res, err := from.TransferToTenant(ctx, id, steward.TenantTransferRequest{ToTenant: toTenant, Reason: "moved"})
		if err != nil {
			t.Fatal(err)
		}
		acc, err := to.AcceptTransfer(ctx, res.Code)
		if err != nil {
			t.Fatal(err)
		}
		op := n.enroll(t, factory)
		if op.Leaf.Subject.CommonName != acc.Device.ID {
			t.Fatalf("enrolled as %s, want %s in %s", op.Leaf.Subject.CommonName, acc.Device.ID, toTenant)
		}
		return acc.Device.ID, op
	}
	inBeta, betaCert := move(n.admin, beta, first, "beta")
	back, _ := move(beta, n.admin, inBeta, steward.DefaultTenant)
	if back == first {
		t.Fatal("the device came back under its old ID")
	}
	if d, err := beta.GetDevice(ctx, inBeta); err != nil || d.State != steward.StateDecommissioned || d.FactoryID != "" {
		t.Fatalf("beta's tombstone: %+v %v", d, err)
	}
	if d := n.deviceGet(t, back); d.State != steward.StateProvisioned || d.TenantID != steward.DefaultTenant {
		t.Fatalf("back home: %+v", d.Device)
	}
	if _, err := n.mqttClient(t, betaCert, inBeta, nil); err == nil {
		t.Error("beta's certificate connected after the device left beta")
	}
}
