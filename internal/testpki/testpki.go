// Package testpki makes the certificate authorities and certificates that
// tests need: a manufacturer's CA and its factory identities, a device CA
// and operational certificates, a TLS server certificate for loopback.
// Everything is ECDSA P-256 and lives in memory. For tests only.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"testing"
	"time"
)

// caValidity is long, as a manufacturer's CA is, so that tests that move
// a clock forward by months still find it valid.
const caValidity = 10 * 365 * 24 * time.Hour

// CA is a certificate authority made in a test.
type CA struct {
	Cert *x509.Certificate // self-signed
	Key  *ecdsa.PrivateKey // signs what it issues
}

// NewCA makes a self-signed CA with the given common name, valid from an
// hour ago for ten years.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := NewKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

// NewKey makes an ECDSA P-256 key.
func NewKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// serial is a random certificate serial number.
func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Pool returns a pool holding the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// PEM returns the CA certificate in PEM, as an enrollment group takes it.
func (ca *CA) PEM() string {
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}))
}

// Sign issues a certificate for pub from tmpl, setting a random serial
// number on tmpl.
func (ca *CA) Sign(t testing.TB, tmpl *x509.Certificate, pub *ecdsa.PublicKey) *x509.Certificate {
	t.Helper()
	tmpl.SerialNumber = serial(t)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// ServerCert issues a TLS server certificate for 127.0.0.1 and localhost,
// valid from an hour ago for a day.
func (ca *CA) ServerCert(t testing.TB) tls.Certificate {
	t.Helper()
	key := NewKey(t)
	cert := ca.Sign(t, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "steward test server"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &key.PublicKey)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// ClientCert issues a TLS client certificate with the given subject, valid
// in [notBefore, notAfter].
func (ca *CA) ClientCert(t testing.TB, subject pkix.Name, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	key := NewKey(t)
	cert := ca.Sign(t, &x509.Certificate{
		Subject:     subject,
		NotBefore:   notBefore,
		NotAfter:    notAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, &key.PublicKey)
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// Issue issues a TLS client certificate with common name cn and, unless it
// is empty, the subject serialNumber attribute serial.
func (ca *CA) Issue(t testing.TB, cn, serial string, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	return ca.ClientCert(t, pkix.Name{CommonName: cn, SerialNumber: serial}, notBefore, notAfter)
}

// Device issues an operational certificate for device id (its CN), valid
// from a minute ago for an hour.
func (ca *CA) Device(t testing.TB, id string) tls.Certificate {
	t.Helper()
	return ca.Issue(t, id, "", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// Factory issues a factory (IDevID) identity for the device with the given
// serial number: CN "factory <serial>", the serial as the subject
// serialNumber, valid from an hour ago for ten years.
func (ca *CA) Factory(t testing.TB, serial string) tls.Certificate {
	t.Helper()
	return ca.Issue(t, "factory "+serial, serial, time.Now().Add(-time.Hour), time.Now().Add(caValidity))
}
