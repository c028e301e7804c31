package testpki

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestIssuedCertificatesVerify(t *testing.T) {
	t.Parallel()
	ca := NewCA(t, "Acme Devices")
	other := NewCA(t, "Acme Devices")
	if ca.Cert.SerialNumber.Cmp(other.Cert.SerialNumber) == 0 {
		t.Fatal("two CAs got the same serial number")
	}
	for _, tc := range []struct {
		name  string
		cert  func() *x509.Certificate
		usage x509.ExtKeyUsage
		host  string
	}{
		{"server", func() *x509.Certificate { return ca.ServerCert(t).Leaf }, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{"device", func() *x509.Certificate { return ca.Device(t, "d-0123456789abcdef0123").Leaf }, x509.ExtKeyUsageClientAuth, ""},
		{"factory", func() *x509.Certificate { return ca.Factory(t, "SN-1").Leaf }, x509.ExtKeyUsageClientAuth, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.cert()
			if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Fatalf("does not verify against its CA: %v", err)
			}
			if _, err := c.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err == nil {
				t.Fatal("verifies against another CA of the same name")
			}
		})
	}
	f := ca.Factory(t, "SN-1").Leaf
	if f.Subject.CommonName != "factory SN-1" || f.Subject.SerialNumber != "SN-1" {
		t.Errorf("factory subject %v", f.Subject)
	}
	expired := ca.Issue(t, "old", "", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour)).Leaf
	if _, err := expired.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("expired certificate verifies")
	}
	block, rest := pem.Decode([]byte(ca.PEM()))
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 || string(block.Bytes) != string(ca.Cert.Raw) {
		t.Errorf("PEM does not hold the CA certificate: %q", ca.PEM())
	}
}
