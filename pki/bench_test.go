package pki

import (
	"context"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
)

// BenchmarkIssueDevice measures issuing one operational certificate with a
// warm CA cache: CSR re-check, ECDSA signing, and x509's check of its own
// signature.
func BenchmarkIssueDevice(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, "acme")
	a := e.authority(b)
	csr := newCSR(b, p256(b))
	if _, err := a.IssueDevice(ctx, "acme", "d-1", csr); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.IssueDevice(ctx, "acme", "d-1", csr); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseCSR(b *testing.B) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		der  []byte
	}{
		{"P-256", csrDER(b, ecKey(b, elliptic.P256()))},
		{"Ed25519", csrDER(b, ed)},
		{"RSA-2048", csrDER(b, rsaKey(b, 2048))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseCSR(bc.der); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkVerifyDevice is the check made at every device TLS handshake.
func BenchmarkVerifyDevice(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b, "acme")
	a := e.authority(b)
	cert, err := a.IssueDevice(ctx, "acme", "d-1", newCSR(b, p256(b)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.VerifyDevice(ctx, cert); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServerCertificateCached is the cost GetCertificateFunc adds to
// each server-side TLS handshake.
func BenchmarkServerCertificateCached(b *testing.B) {
	ctx := context.Background()
	e := newEnv(b)
	a := e.authority(b)
	hosts := []string{"steward.example.com", "10.0.0.1"}
	if _, err := a.ServerCertificate(ctx, hosts); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.ServerCertificate(ctx, hosts); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSealOpen(b *testing.B) {
	k, err := NewKeyring(randomKey(b))
	if err != nil {
		b.Fatal(err)
	}
	secret := make([]byte, 400) // about a sealed CA record
	b.ReportAllocs()
	b.SetBytes(int64(len(secret)))
	for b.Loop() {
		sealed, err := k.Seal("pki/device-ca/acme", secret)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := k.Open("pki/device-ca/acme", sealed); err != nil {
			b.Fatal(err)
		}
	}
}
