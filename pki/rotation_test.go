package pki

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/steward-iot/steward"
)

// TestRotateDeviceCA rotates a tenant's device CA: during the overlap both
// generations verify and the new one issues; another node sees the new CA
// for issuance at once; after the overlap (or on retirement) the old
// generation's certificates are refused.
func TestRotateDeviceCA(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	a := e.authority(t)
	other := e.authority(t) // a second node on the same store
	old, err := a.IssueDevice(ctx, "acme", "d-old", newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.VerifyDevice(ctx, old); err != nil {
		t.Fatalf("before rotation: %v", err)
	}

	if _, err := a.RotateDeviceCA(ctx, "acme", 0, ""); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Errorf("zero overlap: %v, want invalid", err)
	}
	status, err := a.RotateDeviceCA(ctx, "acme", time.Hour, "apr-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(status) != 2 || status[0].State != steward.CAPrevious || status[1].State != steward.CAActive || status[1].Generation != 1 || status[1].ApprovalID != "apr-1" {
		t.Fatalf("status after rotation: %+v", status)
	}
	if _, err := a.RotateDeviceCA(ctx, "acme", time.Hour, ""); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("second rotation during the overlap: %v, want failed precondition", err)
	}

	// The other node issues with the new CA at once.
	fresh, err := other.IssueDevice(ctx, "acme", "d-new", newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	newCA, _ := a.DeviceCA(ctx, "acme")
	if err := fresh.CheckSignatureFrom(newCA); err != nil {
		t.Fatalf("new certificate not from the new CA: %v", err)
	}
	trusted, err := other.TrustedDeviceCAs(ctx, "acme")
	if err != nil || len(trusted) != 2 || !trusted[0].Equal(newCA) {
		t.Fatalf("trusted during overlap: %d %v", len(trusted), err)
	}
	for _, n := range []*Authority{a, other} {
		for _, c := range []*x509.Certificate{old, fresh} {
			if _, err := n.VerifyDevice(ctx, c); err != nil {
				t.Errorf("during overlap %s: %v", c.Subject.CommonName, err)
			}
		}
	}

	// After the overlap, the old generation is refused by time alone.
	e.clock.Advance(2 * time.Hour)
	wantCode(t, verifyErr(a, old), steward.CodeUnauthenticated, "retired device CA")
	if _, err := a.VerifyDevice(ctx, fresh); err != nil {
		t.Errorf("new generation after the overlap: %v", err)
	}
	status, err = a.RetirePreviousCA(ctx, "acme")
	if err != nil || status[0].State != steward.CARetired || status[0].RetiredAt == nil {
		t.Fatalf("retire: %+v %v", status, err)
	}
	if _, err := a.RetirePreviousCA(ctx, "acme"); steward.ErrorCode(err) != steward.CodeFailedPrecondition {
		t.Errorf("retire twice: %v", err)
	}
	// A restarted node knows all of it from the store.
	restarted := e.authority(t)
	wantCode(t, verifyErr(restarted, old), steward.CodeUnauthenticated, "retired device CA")
	if _, err := restarted.VerifyDevice(ctx, fresh); err != nil {
		t.Errorf("restarted node: %v", err)
	}
	// A new rotation is allowed again.
	if _, err := a.RotateDeviceCA(ctx, "acme", time.Hour, ""); err != nil {
		t.Errorf("third generation: %v", err)
	}
}

func verifyErr(a *Authority, c *x509.Certificate) error {
	_, err := a.VerifyDevice(context.Background(), c)
	return err
}

// TestSignCRLAndRecord checks that a CRL and a record signed by the
// Authority verify against the tenant's device CA.
func TestSignCRLAndRecord(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	a := e.authority(t)
	ca, err := a.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	kid := hexKeyID(ca)
	now := e.clock.Now()
	der, err := a.SignCRL(ctx, "acme", kid, &x509.RevocationList{Number: big.NewInt(7), ThisUpdate: now, NextUpdate: now.Add(time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: big.NewInt(42), RevocationTime: now, ReasonCode: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := crl.CheckSignatureFrom(ca); err != nil || crl.Number.Int64() != 7 || len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("CRL: %v %v", err, crl.Number)
	}
	if _, err := a.SignCRL(ctx, "acme", "00ff", &x509.RevocationList{Number: big.NewInt(1)}); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Errorf("unknown issuer: %v", err)
	}

	rec, err := a.SignRecord(ctx, "acme", []byte(`{"device":"d-1"}`))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(rec)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if err := p7.VerifyWithChain(roots); err != nil {
		t.Fatalf("record does not verify: %v", err)
	}
	if string(p7.Content) != `{"device":"d-1"}` {
		t.Errorf("content %q", p7.Content)
	}
	// Another tenant's CA does not vouch for it.
	if err := e.store.CreateTenant(ctx, steward.Tenant{ID: "beta", Name: "beta", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	beta, _ := a.DeviceCA(ctx, "beta")
	other := x509.NewCertPool()
	other.AddCert(beta)
	p7, _ = pkcs7.Parse(rec)
	if err := p7.VerifyWithChain(other); err == nil {
		t.Error("record verified against another tenant's CA")
	}
}

func hexKeyID(c *x509.Certificate) string { return hex.EncodeToString(c.SubjectKeyId) }
