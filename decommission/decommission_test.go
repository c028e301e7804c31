package decommission_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/sqlite"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// TestFailedStepStopsAndRestarts runs a decommissioning while the device
// plane is down: the wipe is a warning, the certificates are revoked, and
// removing cloud access fails, which stops the workflow with the record
// failed and the device not marked. Once the device plane is up, the
// decommissioning runs again, to completion, and its record verifies.
func TestFailedStepStopsAndRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := fixedClock{time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if err := store.CreateTenant(ctx, steward.Tenant{ID: "acme", Name: "acme", CreatedAt: clock.t}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(key)
	auth, err := pki.New(ctx, pki.Config{Store: store, MasterKey: key, Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	bus := inproc.New(log)
	fleet := lifecycle.New(store, bus, clock, log)
	prov := provisioning.New(provisioning.Config{Store: store, Authority: auth, Bus: bus, Lifecycle: fleet, ParseCSR: pki.ParseCSR, Clock: clock, Logger: log})

	// A device with a certificate of the tenant's CA.
	dk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csrDER, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, dk)
	csr, _ := x509.ParseCertificateRequest(csrDER)
	cert, err := auth.IssueDevice(ctx, "acme", "d-1", csr)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateDevice(ctx, steward.Device{ID: "d-1", TenantID: "acme", State: steward.StateActive, StateChangedAt: clock.t, CreatedAt: clock.t, UpdatedAt: clock.t}); err != nil {
		t.Fatal(err)
	}
	if err := store.AddCertificate(ctx, steward.Certificate{Serial: cert.SerialNumber.Text(16), TenantID: "acme", DeviceID: "d-1", KeyID: "k",
		NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, CreatedAt: clock.t,
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))}); err != nil {
		t.Fatal(err)
	}
	svc := decommission.New(decommission.Config{Store: store, Fleet: fleet, Lifecycle: fleet, Gate: prov, Enroller: prov, Bus: bus, Signer: auth,
		WipeTimeout: time.Second, Clock: clock})

	_, err = svc.Decommission(ctx, "acme", "d-1", steward.DecommissionRequest{Reason: "end of life"}, "token:t")
	if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Fatalf("with the device plane down: %v, want failed precondition", err)
	}
	recs, err := svc.ListDecommissions(ctx, "acme", "d-1")
	if err != nil || len(recs) != 1 {
		t.Fatalf("records: %+v %v", recs, err)
	}
	failed := recs[0]
	var outcomes []string
	for _, s := range failed.Steps {
		outcomes = append(outcomes, s.Name+"="+s.Outcome)
	}
	if failed.State != steward.DecommissionFailed || failed.Certificate != "" || failed.FinishedAt == nil ||
		!slices.Equal(outcomes, []string{"wipe=warning", "revoke=ok", "cloud_access=failed"}) {
		t.Fatalf("failed record: %s %v", failed.State, outcomes)
	}
	if d, _ := store.GetDevice(ctx, "acme", "d-1"); d.State != steward.StateActive {
		t.Errorf("device marked %s by a failed decommissioning", d.State)
	}

	// The device plane comes up: what it is sent is kept.
	var mu sync.Mutex
	var sent []steward.OutboundMessage
	bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		if m.Channel == steward.ChannelCmdReq {
			return steward.Errorf(steward.CodeNotFound, "device not connected")
		}
		mu.Lock()
		sent = append(sent, m)
		mu.Unlock()
		return nil
	})
	bus.HandleControl(func(context.Context, steward.SessionControl) {})
	res, err := svc.Decommission(ctx, "acme", "d-1", steward.DecommissionRequest{Reason: "end of life", Policy: steward.DataKeep, RetentionDays: 30}, "token:t")
	if err != nil {
		t.Fatal(err)
	}
	rec := res.Record
	if rec.ID == failed.ID || rec.State != steward.DecommissionCompleted || rec.RetainUntil == nil || !rec.RetainUntil.Equal(clock.t.Add(30*24*time.Hour)) {
		t.Fatalf("second run: %+v", rec)
	}
	if last := rec.Steps[len(rec.Steps)-1]; last.Name != decommission.StepVerify || last.Outcome != steward.StepOK {
		t.Errorf("verification: %+v", last)
	}
	mu.Lock()
	if len(sent) != 1 || sent[0].Channel != steward.ChannelTwinDesired || !sent[0].Retain || len(sent[0].Payload) != 0 {
		t.Errorf("cloud access removal sent %+v, want one empty retained desired configuration", sent)
	}
	mu.Unlock()
	if d, _ := store.GetDevice(ctx, "acme", "d-1"); d.State != steward.StateDecommissioned || d.StateReason != "end of life" {
		t.Errorf("device: %s %q", d.State, d.StateReason)
	}
	b, _ := pem.Decode([]byte(rec.Certificate))
	p7, err := pkcs7.Parse(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := auth.DeviceCA(ctx, "acme")
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if err := p7.VerifyWithChain(roots); err != nil {
		t.Fatalf("certificate: %v", err)
	}
	if _, err := svc.Decommission(ctx, "acme", "d-1", steward.DecommissionRequest{Reason: "again"}, "token:t"); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("a third time: %v", err)
	}
}
