// Package esttest provides a small but real steward.Enroller for testing EST
// transports (the est handler, estclient, device agents) without the
// provisioning service. It has its own factory CA and device CA:
// simpleenroll accepts a TLS client certificate from the factory CA,
// simplereenroll one from the device CA, and both issue real operational
// certificates for the request's key. Tests only: its CA keys live in memory.
package esttest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"math/big"
	"slices"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Validity of the certificates the Enroller issues.
const Validity = 90 * 24 * time.Hour

// Enroller is a steward.Enroller with in-memory CAs. It is safe for
// concurrent use.
type Enroller struct {
	labels     []string
	factoryCA  *x509.Certificate
	factoryKey crypto.Signer
	deviceCA   *x509.Certificate
	deviceKey  crypto.Signer

	mu       sync.Mutex
	fail     error
	requests []steward.EnrollRequest
}

var _ steward.Enroller = (*Enroller)(nil)

// New returns an Enroller that accepts requests without a label and with
// any of labels; any other label is CodeNotFound.
func New(labels ...string) (*Enroller, error) {
	fk, fca, err := newCA("Test factory CA")
	if err != nil {
		return nil, err
	}
	dk, dca, err := newCA("Test device CA")
	if err != nil {
		return nil, err
	}
	return &Enroller{labels: labels, factoryCA: fca, factoryKey: fk, deviceCA: dca, deviceKey: dk}, nil
}

// FactoryCA returns the CA that factory certificates must chain to.
func (e *Enroller) FactoryCA() *x509.Certificate { return e.factoryCA }

// DeviceCA returns the CA that signs operational certificates.
func (e *Enroller) DeviceCA() *x509.Certificate { return e.deviceCA }

// FactoryIdentity makes a factory (IDevID) certificate and key with the
// given serial number as its subject serial, ready for a TLS client.
func (e *Enroller) FactoryIdentity(serial string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := e.sign(e.factoryCA, e.factoryKey, pkix.Name{CommonName: "factory " + serial, SerialNumber: serial}, &key.PublicKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// SetFailure makes every call return err until it is set back to nil.
func (e *Enroller) SetFailure(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fail = err
}

// Requests returns the enrollment requests received so far.
func (e *Enroller) Requests() []steward.EnrollRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.requests)
}

// CACerts returns the device CA.
func (e *Enroller) CACerts(_ context.Context, label string, _ []*x509.Certificate) ([]*x509.Certificate, error) {
	if err := e.check(label); err != nil {
		return nil, err
	}
	return []*x509.Certificate{e.deviceCA}, nil
}

// Enroll issues a first operational certificate to a holder of a factory
// certificate. The device ID is derived from the factory certificate, so
// the same factory identity always gets the same ID.
func (e *Enroller) Enroll(_ context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	return e.issue(r, e.factoryCA, "factory", func(leaf *x509.Certificate) string {
		sum := sha256.Sum256(leaf.Raw)
		return "d-" + hex.EncodeToString(sum[:10])
	})
}

// Reenroll renews an operational certificate, keeping its device ID.
func (e *Enroller) Reenroll(_ context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	return e.issue(r, e.deviceCA, "operational", func(leaf *x509.Certificate) string { return leaf.Subject.CommonName })
}

func (e *Enroller) issue(r steward.EnrollRequest, trust *x509.Certificate, kind string, deviceID func(*x509.Certificate) string) ([]*x509.Certificate, error) {
	e.mu.Lock()
	e.requests = append(e.requests, r)
	e.mu.Unlock()
	if err := e.check(r.Label); err != nil {
		return nil, err
	}
	if len(r.PeerChain) == 0 {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "a %s certificate is required", kind)
	}
	roots := x509.NewCertPool()
	roots.AddCert(trust)
	inter := x509.NewCertPool()
	for _, c := range r.PeerChain[1:] {
		inter.AddCert(c)
	}
	if _, err := r.PeerChain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, steward.WrapError(steward.CodeUnauthenticated, err, "the %s certificate is not trusted", kind)
	}
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "malformed certificate request")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "certificate request signature does not verify")
	}
	cert, err := e.sign(e.deviceCA, e.deviceKey, pkix.Name{CommonName: deviceID(r.PeerChain[0])}, csr.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("issue: %w", err)
	}
	return []*x509.Certificate{cert, e.deviceCA}, nil
}

func (e *Enroller) check(label string) error {
	e.mu.Lock()
	fail := e.fail
	e.mu.Unlock()
	if fail != nil {
		return fail
	}
	if label != "" && !slices.Contains(e.labels, label) {
		return steward.Errorf(steward.CodeNotFound, "unknown EST label %q", label)
	}
	return nil
}

func (e *Enroller) sign(ca *x509.Certificate, key crypto.Signer, subject pkix.Name, pub crypto.PublicKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      subject,
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(Validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func newCA(name string) (crypto.Signer, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}
