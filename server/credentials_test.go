package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/credentials"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/sim"
)

// runCredAgent starts the real agent with its state in dir; the channel is
// closed when Run returns.
func (n *node) runCredAgent(t *testing.T, factory tls.Certificate, dir string) (*agent.Agent, <-chan struct{}) {
	t.Helper()
	a, err := agent.New(agent.Config{
		ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool, FactoryCert: factory, StateDir: dir,
		Model: "gw-100", Firmware: "1.0.0", Hardware: "revB",
		Attributes:        func() map[string]any { return map[string]any{"hostname": "gw-17"} },
		Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.25} },
		TelemetryInterval: 100 * time.Millisecond, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, done
}

// deviceGet fetches a device or fails.
func (n *node) deviceGet(t *testing.T, id string) steward.DeviceDetail {
	t.Helper()
	d, err := n.admin.GetDevice(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fetchCRL reads a CRL from the device plane, without credentials.
func (n *node) fetchCRL(t *testing.T, path string) *x509.RevocationList {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.pool}}, Timeout: 10 * time.Second}
	resp, err := hc.Get(n.DeviceURL() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/pkix-crl" {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, body)
	}
	crl, err := x509.ParseRevocationList(body)
	if err != nil {
		t.Fatal(err)
	}
	return crl
}

func waitLost(t *testing.T, lost <-chan error, what string) {
	t.Helper()
	select {
	case <-lost:
	case <-time.After(15 * time.Second):
		t.Fatalf("live session not closed: %s", what)
	}
}

// TestRevocationClosesLiveSessions revokes a certificate, then a whole
// enrollment group, then its manufacturer CA, each with a connected paho
// client that must be disconnected at once and refused afterwards; the
// tenant's CRL on the device plane lists what was revoked, signed by the
// tenant's CA and numbered.
func TestRevocationClosesLiveSessions(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	g := n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op1 := n.enroll(t, mfr.Factory(t, "SN-1"))
	op2 := n.enroll(t, mfr.Factory(t, "SN-2"))
	id1, id2 := op1.Leaf.Subject.CommonName, op2.Leaf.Subject.CommonName
	serial1, serial2 := op1.Leaf.SerialNumber.Text(16), op2.Leaf.SerialNumber.Text(16)
	ca, err := n.Authority.DeviceCA(ctx, steward.DefaultTenant)
	if err != nil {
		t.Fatal(err)
	}

	lost1 := make(chan error, 1)
	if _, err := n.mqttClient(t, op1, id1, lost1); err != nil {
		t.Fatal(err)
	}
	// Bad input changes nothing.
	if _, err := n.admin.RevokeCertificate(ctx, serial1, "because"); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("unknown reason: %v, want 400", err)
	}
	if _, err := n.admin.RevokeCertificate(ctx, "not-hex", steward.ReasonKeyCompromise); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("bad serial: %v, want 400", err)
	}
	if d := n.deviceGet(t, id1); d.Certificates[0].Revoked() {
		t.Fatal("a refused revocation revoked the certificate")
	}

	t.Run("certificate", func(t *testing.T) {
		c, err := n.admin.RevokeCertificate(ctx, serial1, steward.ReasonKeyCompromise)
		if err != nil || !c.Revoked() || c.DeviceID != id1 {
			t.Fatalf("revoke: %+v %v", c, err)
		}
		waitLost(t, lost1, "revoked certificate")
		if _, err := n.mqttClient(t, op1, id1, nil); err == nil {
			t.Fatal("revoked certificate connected again")
		}
		if _, err := n.admin.RevokeCertificate(ctx, serial1, steward.ReasonKeyCompromise); !is409(err) {
			t.Errorf("revoking twice: %v, want 409", err)
		}
		crl := n.fetchCRL(t, "/crl/default.crl")
		if err := crl.CheckSignatureFrom(ca); err != nil {
			t.Fatalf("CRL not signed by the device CA: %v", err)
		}
		if len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Text(16) != serial1 ||
			crl.RevokedCertificateEntries[0].ReasonCode != 1 || crl.Number.Int64() != 1 || !crl.NextUpdate.After(time.Now()) {
			t.Fatalf("CRL: number %v, entries %+v", crl.Number, crl.RevokedCertificateEntries)
		}
		// Unchanged revocations: the same CRL again, not a new number.
		if again := n.fetchCRL(t, "/crl/default.crl"); again.Number.Int64() != 1 {
			t.Errorf("CRL re-signed without a change: number %v", again.Number)
		}
		der, err := n.admin.CRL(ctx, "")
		if err != nil || !bytes.Equal(der, crl.Raw) {
			t.Errorf("CRL from the API differs: %v", err)
		}
		// The check docs/security.md shows, when openssl is installed.
		if _, err := exec.LookPath("openssl"); err == nil {
			dir := t.TempDir()
			crlFile, caFile := filepath.Join(dir, "default.crl"), filepath.Join(dir, "ca.pem")
			_ = os.WriteFile(crlFile, crl.Raw, 0o600)
			_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o600)
			out, err := exec.Command("openssl", "crl", "-inform", "DER", "-in", crlFile, "-CAfile", caFile, "-noout", "-text").CombinedOutput()
			if err != nil || !bytes.Contains(out, []byte("verify OK")) || !bytes.Contains(out, []byte("Key Compromise")) {
				t.Errorf("openssl crl: %v\n%s", err, out)
			}
		}
	})

	t.Run("enrollment group", func(t *testing.T) {
		lost2 := make(chan error, 1)
		if _, err := n.mqttClient(t, op2, id2, lost2); err != nil {
			t.Fatal(err)
		}
		res, err := n.admin.RevokeGroup(ctx, g.ID, "batch recall")
		if err != nil || !slices.Contains(res.Devices, id1) || !slices.Contains(res.Devices, id2) || res.CARevoked {
			t.Fatalf("revoke group: %+v %v", res, err)
		}
		waitLost(t, lost2, "revoked group")
		crl := n.fetchCRL(t, "/crl/default.crl")
		var serials []string
		for _, e := range crl.RevokedCertificateEntries {
			serials = append(serials, e.SerialNumber.Text(16))
		}
		if crl.Number.Int64() != 2 || !slices.Contains(serials, serial2) || !slices.Contains(serials, serial1) {
			t.Fatalf("CRL after the group: number %v, %v", crl.Number, serials)
		}
	})

	t.Run("manufacturer CA", func(t *testing.T) {
		fresh := n.enroll(t, mfr.Factory(t, "SN-3")) // still allowed
		lost3 := make(chan error, 1)
		if _, err := n.mqttClient(t, fresh, fresh.Leaf.Subject.CommonName, lost3); err != nil {
			t.Fatal(err)
		}
		res, err := n.admin.RevokeManufacturerCA(ctx, g.ID, "signing key leaked", true)
		if err != nil || !res.CARevoked || !slices.Contains(res.Devices, fresh.Leaf.Subject.CommonName) {
			t.Fatalf("revoke CA: %+v %v", res, err)
		}
		waitLost(t, lost3, "revoked manufacturer CA")
		before := n.deviceCount(t)
		_, csr := newCSR(t)
		factory := mfr.Factory(t, "SN-4")
		if _, err := n.est(&factory).SimpleEnroll(ctx, csr); steward.ErrorCode(err) != steward.CodePermissionDenied {
			t.Fatalf("enrollment with a revoked manufacturer CA: %v, want 403", err)
		}
		if n.deviceCount(t) != before {
			t.Error("a refused enrollment created a device")
		}
		evs, err := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{Kind: steward.SecEnrollRefused})
		if err != nil || len(evs) == 0 {
			t.Errorf("no enroll_refused event: %v %v", evs, err)
		}
	})
}

// TestCredentialRotationWithFleetConnected rotates one device's
// credentials and then the tenant's device CA, with real agents connected
// all along: every device moves to the new CA and none is lost.
func TestCredentialRotationWithFleetConnected(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	var ids []string
	for _, sn := range []string{"SN-1", "SN-2", "SN-3"} {
		a, _ := n.runCredAgent(t, mfr.Factory(t, sn), t.TempDir())
		ids = append(ids, n.waitState(t, a, steward.StateActive).ID)
	}
	// A device that is enrolled but not connected stays on the old CA.
	offline := n.enroll(t, mfr.Factory(t, "SN-OFF"))
	ping := func(id string) {
		t.Helper()
		eventually(t, "ping "+id, func() bool {
			res, err := n.admin.SendCommand(ctx, id, "ping", nil, 5*time.Second)
			return err == nil && res.Status == steward.CommandOK
		})
	}

	t.Run("device", func(t *testing.T) {
		id := ids[0]
		old := n.deviceGet(t, id).Certificates[0].Serial
		rot, err := n.admin.RotateCredentials(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if rot.Serial == old || !slices.Equal(rot.Revoked, []string{old}) {
			t.Fatalf("rotation: %+v (old %s)", rot, old)
		}
		ping(id)
		for _, c := range n.deviceGet(t, id).Certificates {
			if (c.Serial == old) != c.Revoked() {
				t.Errorf("certificate %s revoked=%v after rotation", c.Serial, c.Revoked())
			}
		}
		if _, err := n.admin.RotateCredentials(ctx, offline.Leaf.Subject.CommonName); steward.ErrorCode(err) != steward.CodeUnavailable {
			t.Errorf("rotating an offline device: %v, want unavailable", err)
		}
		if d := n.deviceGet(t, offline.Leaf.Subject.CommonName); d.Certificates[0].Revoked() {
			t.Error("a failed rotation revoked the offline device's certificate")
		}
	})

	t.Run("tenant CA", func(t *testing.T) {
		oldCA, _ := n.Authority.DeviceCA(ctx, steward.DefaultTenant)
		if _, err := n.admin.RotateCA(ctx, 0, ""); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("zero overlap: %v", err)
		}
		res, err := n.admin.RotateCA(ctx, 720*time.Hour, "")
		if err != nil || len(res.Generations) != 2 || res.Generations[0].State != steward.CAPrevious || res.Generations[1].State != steward.CAActive {
			t.Fatalf("rotate: %+v %v", res, err)
		}
		newKey := res.Generations[1].KeyID
		// EST cacerts serves both device CAs, the active one first.
		cas, err := n.est(nil).CACerts(ctx)
		if err != nil || len(cas) != 3 || hex.EncodeToString(cas[0].SubjectKeyId) != newKey || !cas[1].Equal(oldCA) {
			t.Fatalf("cacerts during the overlap: %d certificates, %v", len(cas), err)
		}
		// During the overlap the fleet stays connected on the old CA.
		for _, id := range ids {
			ping(id)
		}
		mig, err := n.admin.MigrateCA(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(mig.Moved) != 3 || len(mig.Pending) != 1 || mig.Pending[offline.Leaf.Subject.CommonName] == "" {
			t.Fatalf("migration: moved %+v pending %+v", mig.Moved, mig.Pending)
		}
		for _, m := range mig.Moved {
			if m.IssuerKey != newKey {
				t.Errorf("device %s moved to issuer %s, want %s", m.DeviceID, m.IssuerKey, newKey)
			}
		}
		gens, err := n.admin.RetireOldCA(ctx)
		if err != nil || gens[0].State != steward.CARetired {
			t.Fatalf("retire: %+v %v", gens, err)
		}
		// None lost: every device answers, is active, and holds exactly
		// one unrevoked certificate, from the new CA.
		for _, id := range ids {
			ping(id)
			d := n.deviceGet(t, id)
			if d.State != steward.StateActive {
				t.Errorf("device %s is %s", id, d.State)
			}
			var live []string
			for _, c := range d.Certificates {
				if !c.Revoked() {
					b, _ := pem.Decode([]byte(c.PEM))
					x, _ := x509.ParseCertificate(b.Bytes)
					if hex.EncodeToString(x.AuthorityKeyId) != newKey {
						t.Errorf("device %s holds an unrevoked certificate of another CA", id)
					}
					live = append(live, c.Serial)
				}
			}
			if len(live) != 1 {
				t.Errorf("device %s holds %d unrevoked certificates", id, len(live))
			}
		}
		// The old CA's certificates are refused now.
		if _, err := n.mqttClient(t, offline, offline.Leaf.Subject.CommonName, nil); err == nil {
			t.Error("a certificate of the retired CA connected")
		}
		if _, err := offline.Leaf.Verify(x509.VerifyOptions{Roots: poolOf(oldCA), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			t.Fatalf("test setup: offline certificate not from the old CA: %v", err)
		}
	})
}

// is409 reports whether err is the API's 409: a conflict or a failed
// precondition (the client reads both back as a conflict).
func is409(err error) bool {
	c := steward.ErrorCode(err)
	return c == steward.CodeConflict || c == steward.CodeFailedPrecondition
}

func poolOf(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

// TestDecommissionEndToEnd decommissions a device run by the real agent:
// the wipe is acknowledged and the agent's key is gone, the device's old
// certificate (with the agent's real old key) is refused by MQTT and by
// EST, the inventory says decommissioned with the reason, its telemetry is
// deleted, and the decommissioning certificate verifies, with the pkcs7
// library and with openssl when it is installed.
func TestDecommissionEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	dir := t.TempDir()
	a, stopped := n.runCredAgent(t, mfr.Factory(t, "SN-1"), dir)
	id := n.waitState(t, a, steward.StateActive).ID
	eventually(t, "telemetry", func() bool {
		s, err := n.admin.LatestTelemetry(ctx, id)
		return err == nil && len(s) > 0
	})
	// The agent's real key and certificate, as a thief with a copy of the
	// device's disk would have them.
	old, err := tls.LoadX509KeyPair(filepath.Join(dir, agent.IdentityFile), filepath.Join(dir, agent.IdentityFile))
	if err != nil {
		t.Fatal(err)
	}

	// Bad input changes nothing.
	for _, bad := range []steward.DecommissionRequest{{}, {Reason: "x", Policy: "shred"}, {Reason: "x", Policy: steward.DataDelete, RetentionDays: 5}} {
		if _, err := n.admin.Decommission(ctx, id, bad); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("%+v: %v, want 400", bad, err)
		}
	}
	if recs, err := n.admin.Decommissions(ctx, id); err != nil || len(recs) != 0 || n.deviceGet(t, id).State != steward.StateActive {
		t.Fatalf("refused requests left a trace: %+v %v", recs, err)
	}

	// The cloud keeps a desired configuration for the device, until it
	// leaves.
	if _, err := n.admin.PatchTwin(ctx, id, json.RawMessage(`{"interval": 30}`), nil); err != nil {
		t.Fatal(err)
	}

	res, err := n.admin.Decommission(ctx, id, steward.DecommissionRequest{Reason: "end of life", Policy: steward.DataDelete})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	for _, s := range rec.Steps {
		if s.Name == decommission.StepCloudAccess && !strings.Contains(s.Detail, "device twin deleted") {
			t.Errorf("cloud access step: %s", s.Detail)
		}
	}
	if _, err := n.admin.GetTwin(ctx, id); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Errorf("the twin of a decommissioned device: %v, want not found", err)
	}
	if _, err := n.admin.PatchTwin(ctx, id, json.RawMessage(`{"interval": 60}`), nil); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("configuring a decommissioned device: %v, want a failed precondition", err)
	}
	var names []string
	for _, s := range rec.Steps {
		names = append(names, s.Name)
		if s.Outcome != steward.StepOK {
			t.Errorf("step %s: %s %s", s.Name, s.Outcome, s.Detail)
		}
	}
	want := []string{decommission.StepWipe, decommission.StepRevoke, decommission.StepCloudAccess, decommission.StepDataPolicy, decommission.StepInventory, decommission.StepVerify}
	if rec.State != steward.DecommissionCompleted || !slices.Equal(names, want) || rec.Certificate == "" {
		t.Fatalf("record: %s %v", rec.State, names)
	}

	// The device: wiped and stopped.
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		t.Fatal("the agent did not stop after the wipe")
	}
	if !a.Wiped() {
		t.Error("agent not wiped")
	}
	if _, err := os.Stat(filepath.Join(dir, agent.IdentityFile)); !os.IsNotExist(err) {
		t.Errorf("identity file still there: %v", err)
	}
	// Started again on its state, the agent refuses: a wiped device does
	// not enroll again by itself.
	again, err := agent.New(agent.Config{ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool, FactoryCert: mfr.Factory(t, "SN-1"), StateDir: dir,
		Attributes: func() map[string]any { return nil }, Telemetry: func() map[string]float64 { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Run(ctx); !errors.Is(err, agent.ErrWiped) {
		t.Errorf("restarted wiped agent: %v, want ErrWiped", err)
	}
	// The inventory and the data policy.
	d := n.deviceGet(t, id)
	if d.State != steward.StateDecommissioned || d.StateReason != "end of life" {
		t.Errorf("inventory: %s %q", d.State, d.StateReason)
	}
	for _, c := range d.Certificates {
		if !c.Revoked() {
			t.Errorf("certificate %s not revoked", c.Serial)
		}
	}
	if s, err := n.admin.LatestTelemetry(ctx, id); err != nil || len(s) != 0 {
		t.Errorf("telemetry left after delete: %v %v", s, err)
	}
	// The old credentials, for real, at both doors.
	if _, err := n.mqttClient(t, old, id, nil); err == nil {
		t.Error("MQTT took the old certificate")
	}
	_, csr := newCSR(t)
	if _, err := n.est(&old).SimpleReenroll(ctx, csr); steward.ErrorCode(err) != steward.CodeUnauthenticated {
		t.Errorf("EST re-enrollment with the old certificate: %v, want 401", err)
	}
	if _, err := n.admin.Decommission(ctx, id, steward.DecommissionRequest{Reason: "again"}); !is409(err) {
		t.Errorf("decommissioning twice: %v, want 409", err)
	}
	// Every step is in the audit log too.
	recs, _, err := n.admin.SearchAudit(ctx, client.AuditQuery{Target: "device:" + id, Asc: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var audited []string
	for _, r := range recs {
		audited = append(audited, r.Action)
	}
	for _, step := range want {
		if !slices.Contains(audited, "device.decommission."+step) {
			t.Errorf("step %s not in the audit log: %v", step, audited)
		}
	}
	if !slices.Contains(audited, "device.decommission") {
		t.Errorf("the decommissioning is not in the audit log: %v", audited)
	}

	// The decommissioning certificate.
	pemCert, err := n.admin.DecommissionCertificate(ctx, rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	caDER, _ := n.Authority.DeviceCA(ctx, steward.DefaultTenant)
	block, _ := pem.Decode(pemCert)
	if block == nil || block.Type != decommission.PEMType {
		t.Fatalf("certificate is not PEM %s", decommission.PEMType)
	}
	p7, err := pkcs7.Parse(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := p7.VerifyWithChain(poolOf(caDER)); err != nil {
		t.Fatalf("certificate does not verify: %v", err)
	}
	var content decommission.CertificateContent
	if err := json.Unmarshal(p7.Content, &content); err != nil || content.Type != decommission.ContentType ||
		content.Record.DeviceID != id || content.Record.State != steward.DecommissionCompleted || len(content.Record.Steps) != len(want) {
		t.Fatalf("signed content: %+v %v", content, err)
	}
	tampered := bytes.Replace(block.Bytes, []byte("end of life"), []byte("end of lift"), 1)
	if p, err := pkcs7.Parse(tampered); err == nil && p.VerifyWithChain(poolOf(caDER)) == nil {
		t.Error("a tampered certificate verified")
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Log("openssl not installed; skipping the openssl check")
		return
	}
	tmp := t.TempDir()
	certFile, caFile, out := filepath.Join(tmp, "dc.pem"), filepath.Join(tmp, "ca.pem"), filepath.Join(tmp, "record.json")
	_ = os.WriteFile(certFile, pemCert, 0o600)
	_ = os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER.Raw}), 0o600)
	cmd := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "PEM", "-in", certFile, "-CAfile", caFile, "-purpose", "any", "-out", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl cms -verify: %v\n%s", err, b)
	}
	if got, _ := os.ReadFile(out); !bytes.Equal(got, p7.Content) {
		t.Error("openssl's content differs")
	}
}

// TestTransferRequiresReprovisioning transfers a connected device to
// another owner: its session is closed, its certificate refused, its
// configuration reset; the factory identity provisions it again with a new
// key.
func TestTransferRequiresReprovisioning(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-1")
	op := n.enroll(t, factory)
	id := op.Leaf.Subject.CommonName
	lost := make(chan error, 1)
	if _, err := n.mqttClient(t, op, id, lost); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.Transfer(ctx, id, steward.TransferRequest{Owner: "north-plant"}); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("transfer without a reason: %v, want 400", err)
	}
	d, err := n.admin.Transfer(ctx, id, steward.TransferRequest{Owner: "north-plant", Reason: "sold"})
	if err != nil || d.State != steward.StateRegistered || d.Owner != "north-plant" || d.Labels["site"] != "plant-7" {
		t.Fatalf("transfer: %+v %v", d, err)
	}
	waitLost(t, lost, "transferred device")
	if _, err := n.mqttClient(t, op, id, nil); err == nil {
		t.Fatal("the old certificate connected after the transfer")
	}
	again := n.enroll(t, factory) // a new key: provisioned again, not a clone
	if again.Leaf.Subject.CommonName != id {
		t.Fatalf("provisioned again as %s, want %s", again.Leaf.Subject.CommonName, id)
	}
	if got := n.deviceGet(t, id); got.State != steward.StateProvisioned {
		t.Errorf("after provisioning again: %s", got.State)
	}
	if _, err := n.mqttClient(t, again, id, nil); err != nil {
		t.Errorf("new credentials refused: %v", err)
	}
}

// TestDecommissionPolicies decommissions devices that are not connected
// (the wipe is a warning, every other step runs) under the keep policy,
// whose data goes once its retention has passed, and the anonymise policy,
// which keeps the measurements and strips the record.
func TestDecommissionPolicies(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	kept := n.enroll(t, mfr.Factory(t, "SN-KEEP")).Leaf.Subject.CommonName
	anon := n.enroll(t, mfr.Factory(t, "SN-ANON")).Leaf.Subject.CommonName
	now := n.clock.Now()
	owner := "alice@example.com"
	if _, err := n.Fleet.UpdateDevice(ctx, steward.DefaultTenant, anon, steward.DevicePatch{Owner: &owner, Location: &steward.Location{Site: "home"}}, "test"); err != nil {
		t.Fatal(err)
	}
	var samples []steward.Sample
	for _, id := range []string{kept, anon} {
		samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.5, At: now.Add(-time.Minute)})
	}
	if err := n.Store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}

	res, err := n.admin.Decommission(ctx, kept, steward.DecommissionRequest{Reason: "legal hold", Policy: steward.DataKeep, RetentionDays: 1})
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	if rec.State != steward.DecommissionCompleted || rec.Steps[0].Name != decommission.StepWipe || rec.Steps[0].Outcome != steward.StepWarning ||
		rec.RetainUntil == nil || rec.Certificate == "" {
		t.Fatalf("keep record: %+v", rec)
	}
	for _, s := range rec.Steps[1:] {
		if s.Outcome != steward.StepOK {
			t.Errorf("step %s: %s %s", s.Name, s.Outcome, s.Detail)
		}
	}
	if purged, err := n.Decommission.Purge(ctx); err != nil || purged != 0 {
		t.Fatalf("purge before the retention ends: %d %v", purged, err)
	}
	if s, _ := n.admin.LatestTelemetry(ctx, kept); len(s) != 1 {
		t.Fatalf("kept telemetry: %v", s)
	}

	res, err = n.admin.Decommission(ctx, anon, steward.DecommissionRequest{Reason: "returned", Policy: steward.DataAnonymise})
	if err != nil || res.Record.State != steward.DecommissionCompleted {
		t.Fatalf("anonymise: %+v %v", res.Record, err)
	}
	d := n.deviceGet(t, anon)
	if d.Owner != "" || d.Location.Site != "" || len(d.Labels) != 0 || d.Attributes["hostname"] != nil || d.State != steward.StateDecommissioned {
		t.Errorf("anonymised record: %+v", d.Device)
	}
	if s, _ := n.admin.LatestTelemetry(ctx, anon); len(s) != 1 {
		t.Errorf("anonymise dropped the measurements: %v", s)
	}

	n.clock.Add(48 * time.Hour)
	if purged, err := n.Decommission.Purge(ctx); err != nil || purged != 1 {
		t.Fatalf("purge after the retention: %d %v", purged, err)
	}
	if s, _ := n.admin.LatestTelemetry(ctx, kept); len(s) != 0 {
		t.Errorf("telemetry left after the retention: %v", s)
	}
	if purged, err := n.Decommission.Purge(ctx); err != nil || purged != 0 {
		t.Errorf("purged twice: %d %v", purged, err)
	}
}

// TestDecommissionNeedsApproval runs a decommissioning and a CA rotation
// under approval policies: the first call only opens a request (nothing is
// done), the requester cannot approve it, and the call with the approved
// request's ID runs.
func TestDecommissionNeedsApproval(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	id := n.enroll(t, mfr.Factory(t, "SN-1")).Leaf.Subject.CommonName
	other := n.enroll(t, mfr.Factory(t, "SN-2")).Leaf.Subject.CommonName
	for _, action := range []string{"device.decommission", "ca.rotate"} {
		if _, err := n.admin.CreateApprovalPolicy(ctx, client.ApprovalPolicyRequest{Name: action, Action: action, Approvals: 1}); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := n.admin.CreateToken(ctx, "approver", steward.RoleApprover)
	if err != nil {
		t.Fatal(err)
	}
	approver := client.New(n.APIURL(), tok.Secret, nil)

	res, err := n.admin.Decommission(ctx, id, steward.DecommissionRequest{Reason: "end of life"})
	if err != nil || res.Approval == nil || res.Record.State != steward.DecommissionAwaitingApproval {
		t.Fatalf("first call: %+v %v", res, err)
	}
	if d := n.deviceGet(t, id); d.State == steward.StateDecommissioned || d.Certificates[0].Revoked() {
		t.Fatal("a decommissioning awaiting approval changed the device")
	}
	if _, err := n.admin.Approve(ctx, res.Approval.ID, "mine"); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Errorf("requester approving their own request: %v, want 403", err)
	}
	if _, err := n.admin.Decommission(ctx, id, steward.DecommissionRequest{Reason: "end of life", ApprovalID: res.Approval.ID}); !is409(err) {
		t.Errorf("before approval: %v, want 409", err)
	}
	if _, err := approver.Approve(ctx, res.Approval.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.Decommission(ctx, other, steward.DecommissionRequest{Reason: "x", ApprovalID: res.Approval.ID}); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Errorf("another device's approval: %v, want 403", err)
	}
	done, err := n.admin.Decommission(ctx, id, steward.DecommissionRequest{Reason: "end of life", ApprovalID: res.Approval.ID})
	if err != nil || done.Record.State != steward.DecommissionCompleted || done.Record.ApprovalID != res.Approval.ID || done.Record.ID != res.Record.ID {
		t.Fatalf("approved call: %+v %v", done.Record, err)
	}

	rot, err := n.admin.RotateCA(ctx, time.Hour, "")
	if err != nil || rot.Approval == nil || len(rot.Generations) != 0 {
		t.Fatalf("CA rotation without approval: %+v %v", rot, err)
	}
	if gens, _ := n.admin.CAStatus(ctx); len(gens) != 1 {
		t.Fatalf("a rotation awaiting approval rotated: %+v", gens)
	}
	if _, err := approver.Approve(ctx, rot.Approval.ID, "ok"); err != nil {
		t.Fatal(err)
	}
	rot, err = n.admin.RotateCA(ctx, time.Hour, rot.Approval.ID)
	if err != nil || len(rot.Generations) != 2 || rot.Generations[1].ApprovalID == "" {
		t.Fatalf("approved rotation: %+v %v", rot, err)
	}
}

// TestCARotationWithSimulatedFleet rotates the tenant's device CA with a
// simulated fleet (package sim: real agents in one process) connected:
// every device moves to the new CA, the old one is retired, and none is
// lost.
func TestCARotationWithSimulatedFleet(t *testing.T) {
	t.Parallel()
	const fleet = 6
	n := startNode(t)
	ctx := context.Background()
	mfr, err := sim.NewManufacturer("Sim Devices")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{Name: "sim", CAPEM: string(mfr.CertPEM()), Models: []string{"sim-gw"},
		Firmware: map[string][]string{"sim-gw": {"1.0.0"}}}); err != nil {
		t.Fatal(err)
	}
	s, err := sim.New(sim.Config{Devices: fleet, Manufacturer: mfr, ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool,
		StateDir: t.TempDir(), TelemetryInterval: 200 * time.Millisecond, Seed: 7, ConnectRate: -1,
		BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = s.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	online := func() []steward.Device {
		ds, err := n.admin.AllDevices(ctx, "state = active AND online = true")
		if err != nil {
			t.Fatal(err)
		}
		return ds
	}
	eventually(t, "the simulated fleet active and online", func() bool { return len(online()) == fleet })

	res, err := n.admin.RotateCA(ctx, 24*time.Hour, "")
	if err != nil {
		t.Fatal(err)
	}
	newKey := res.Generations[len(res.Generations)-1].KeyID
	mig, err := n.admin.MigrateCA(ctx)
	if err != nil || len(mig.Moved) != fleet || len(mig.Pending) != 0 {
		t.Fatalf("migration: %d moved, pending %v, %v", len(mig.Moved), mig.Pending, err)
	}
	if _, err := n.admin.RetireOldCA(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the whole fleet back online on the new CA", func() bool { return len(online()) == fleet })
	for _, d := range online() {
		res, err := n.admin.SendCommand(ctx, d.ID, "ping", nil, 10*time.Second)
		if err != nil || res.Status != steward.CommandOK {
			t.Errorf("device %s after the rotation: %+v %v", d.ID, res, err)
		}
		for _, c := range n.deviceGet(t, d.ID).Certificates {
			b, _ := pem.Decode([]byte(c.PEM))
			x, _ := x509.ParseCertificate(b.Bytes)
			if onNew := hex.EncodeToString(x.AuthorityKeyId) == newKey; onNew == c.Revoked() {
				t.Errorf("device %s: certificate %s on the new CA=%v revoked=%v", d.ID, c.Serial, onNew, c.Revoked())
			}
		}
	}
}

// TestExpiringCertificates: the report lists the certificates that expire
// within the window, and the expiry watch writes a credential.expiring
// event for a device that has not renewed, which an event alert rule turns
// into an alert for that device only.
func TestExpiringCertificates(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.AlertInterval = 20 * time.Millisecond })
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	early := n.enroll(t, mfr.Factory(t, "SN-EARLY")).Leaf.Subject.CommonName
	n.clock.Add(30 * 24 * time.Hour)
	late := n.enroll(t, mfr.Factory(t, "SN-LATE")).Leaf.Subject.CommonName
	n.clock.Add(50 * 24 * time.Hour) // early expires in 10 days, late in 40

	if _, err := n.admin.ExpiringCertificates(ctx, 0, 0); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Errorf("days=0: %v, want 400", err)
	}
	certs, err := n.admin.ExpiringCertificates(ctx, 14, 0)
	if err != nil || len(certs) != 1 || certs[0].DeviceID != early {
		t.Fatalf("expiring within 14 days: %+v %v", certs, err)
	}
	if certs, _ := n.admin.ExpiringCertificates(ctx, 60, 0); len(certs) != 2 || certs[0].DeviceID != early || certs[1].DeviceID != late {
		t.Errorf("expiring within 60 days, soonest first: %+v", certs)
	}

	rule, err := n.admin.CreateAlertRule(ctx, steward.AlertRule{Name: "certificate expiring", Kind: steward.RuleEvent, Severity: steward.AlertMajor, Enabled: true,
		Event: &steward.EventCondition{Type: credentials.EventCredentialExpiring, Window: steward.Duration(24 * time.Hour)}})
	if err != nil {
		t.Fatal(err)
	}
	reported, err := n.Credentials.ReportExpiring(ctx, credentials.DefaultExpiryWindow)
	if err != nil || reported != 1 {
		t.Fatalf("reported %d devices, %v; want 1", reported, err)
	}
	eventually(t, "an alert for the device that did not renew", func() bool {
		as, err := n.admin.ListAlerts(ctx, steward.AlertFilter{RuleID: rule.ID})
		return err == nil && len(as) == 1 && as[0].DeviceID == early && as[0].State == steward.AlertFiring
	})
	if as, _ := n.admin.ListAlerts(ctx, steward.AlertFilter{RuleID: rule.ID, DeviceID: late}); len(as) != 0 {
		t.Errorf("alert for a device whose certificate is fine: %+v", as)
	}
}

// TestCredentialRoutesRefuseBadInput sends what the credential and
// decommissioning routes must refuse, and checks the status and that
// nothing changed: no certificate revoked, no CA rotated, no record made.
func TestCredentialRoutesRefuseBadInput(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	g := n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id, serial := op.Leaf.Subject.CommonName, op.Leaf.SerialNumber.Text(16)
	post := func(path, contentType, body string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.APIURL()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+n.AdminToken)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	const js = "application/json"
	tests := []struct {
		name, path, ct, body string
		status               int
	}{
		{"revoke: unknown field", "/api/v1/certificates/" + serial + "/revoke", js, `{"reason":"key_compromise","why":"x"}`, 400},
		{"revoke: not JSON", "/api/v1/certificates/" + serial + "/revoke", js, `{`, 400},
		{"revoke: wrong content type", "/api/v1/certificates/" + serial + "/revoke", "text/plain", `{}`, 415},
		{"revoke: unknown serial", "/api/v1/certificates/abcdef/revoke", js, `{"reason":"key_compromise"}`, 404},
		{"revoke: revoke_devices on a certificate", "/api/v1/certificates/" + serial + "/revoke", js, `{"revoke_devices":true}`, 400},
		{"group: no reason", "/api/v1/enrollment-groups/" + g.ID + "/revoke", js, `{}`, 400},
		{"group: unknown", "/api/v1/enrollment-groups/eg-nope/revoke", js, `{"reason":"x"}`, 404},
		{"revoke-ca: no reason", "/api/v1/enrollment-groups/" + g.ID + "/revoke-ca", js, `{"revoke_devices":true}`, 400},
		{"rotate CA: bad overlap", "/api/v1/ca/rotate", js, `{"overlap":"a month"}`, 400},
		{"rotate CA: negative overlap", "/api/v1/ca/rotate", js, `{"overlap":"-5h"}`, 400},
		{"rotate CA: overlap too long", "/api/v1/ca/rotate", js, `{"overlap":"200000h"}`, 400},
		{"retire-old without a rotation", "/api/v1/ca/retire-old", "", ``, 409},
		{"decommission: no reason", "/api/v1/devices/" + id + "/decommission", js, `{"data_policy":"delete"}`, 400},
		{"decommission: unknown policy", "/api/v1/devices/" + id + "/decommission", js, `{"reason":"x","data_policy":"shred"}`, 400},
		{"decommission: retention without keep", "/api/v1/devices/" + id + "/decommission", js, `{"reason":"x","retention_days":3}`, 400},
		{"decommission: retention too long", "/api/v1/devices/" + id + "/decommission", js, `{"reason":"x","data_policy":"keep","retention_days":99999}`, 400},
		{"decommission: unknown device", "/api/v1/devices/d-nope/decommission", js, `{"reason":"x"}`, 404},
		{"transfer: no owner", "/api/v1/devices/" + id + "/transfer", js, `{"reason":"sold"}`, 400},
		{"transfer: unknown device", "/api/v1/devices/d-nope/transfer", js, `{"owner":"o","reason":"sold"}`, 404},
		{"rotate credentials: unknown device", "/api/v1/devices/d-nope/rotate-credentials", "", ``, 404},
	}
	for _, tc := range tests {
		if got := post(tc.path, tc.ct, tc.body); got != tc.status {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.status)
		}
	}
	if _, err := n.admin.CRL(ctx, "00ff"); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Errorf("CRL of an unknown CA: %v, want 404", err)
	}
	// Nothing changed.
	d := n.deviceGet(t, id)
	if d.State != steward.StateProvisioned || d.Certificates[0].Revoked() || d.Owner != "" {
		t.Errorf("device changed by refused requests: %s revoked=%v owner=%q", d.State, d.Certificates[0].Revoked(), d.Owner)
	}
	if gens, _ := n.admin.CAStatus(ctx); len(gens) != 1 {
		t.Errorf("CA generations after refused requests: %+v", gens)
	}
	if recs, _ := n.admin.Decommissions(ctx, ""); len(recs) != 0 {
		t.Errorf("decommissioning records after refused requests: %+v", recs)
	}
	if _, err := n.mqttClient(t, op, id, nil); err != nil {
		t.Errorf("the device's certificate refused after refused requests: %v", err)
	}
}
