package agenttest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/est"
	"github.com/steward-iot/steward/internal/testpki"
)

// Enroller is a steward.Enroller that trusts the factory CA it is given
// (esttest's makes its own, which a simulated manufacturer cannot sign
// with). Like Steward it binds a factory identity to the first key it
// certifies and refuses another key for it as a clone; the same key asking
// again gets a new certificate.
type Enroller struct {
	factoryCA *x509.Certificate
	deviceCA  *testpki.CA
	validity  time.Duration

	mu    sync.Mutex
	bound map[string]crypto.PublicKey // device ID → key
	count int
}

var _ steward.Enroller = (*Enroller)(nil)

// NewEnroller returns an Enroller for factory certificates of factoryCA,
// issuing operational certificates valid for validity from its own device
// CA.
func NewEnroller(t testing.TB, factoryCA *x509.Certificate, validity time.Duration) *Enroller {
	t.Helper()
	return &Enroller{factoryCA: factoryCA, deviceCA: testpki.NewCA(t, "device CA"), validity: validity, bound: map[string]crypto.PublicKey{}}
}

// DevicePool returns a pool holding the device CA.
func (e *Enroller) DevicePool() *x509.CertPool { return e.deviceCA.Pool() }

// Issued returns how many certificates it has issued.
func (e *Enroller) Issued() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count
}

// CACerts returns the device CA.
func (e *Enroller) CACerts(context.Context, string, []*x509.Certificate) ([]*x509.Certificate, error) {
	return []*x509.Certificate{e.deviceCA.Cert}, nil
}

// Enroll authenticates a factory certificate and issues a certificate with
// CN d-<20 hex digits of the factory certificate's SHA-256>.
func (e *Enroller) Enroll(_ context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	leaf, err := verify(r.PeerChain, e.factoryCA)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(leaf.Raw)
	return e.issue("d-"+hex.EncodeToString(sum[:10]), r.CSR, true)
}

// Reenroll authenticates an operational certificate and renews it.
func (e *Enroller) Reenroll(_ context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	leaf, err := verify(r.PeerChain, e.deviceCA.Cert)
	if err != nil {
		return nil, err
	}
	return e.issue(leaf.Subject.CommonName, r.CSR, false)
}

func verify(chain []*x509.Certificate, root *x509.Certificate) (*x509.Certificate, error) {
	if len(chain) == 0 {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "a client certificate is required")
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, steward.WrapError(steward.CodeUnauthenticated, err, "the client certificate is not trusted")
	}
	return chain[0], nil
}

func (e *Enroller) issue(deviceID string, csrDER []byte, first bool) ([]*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil || csr.CheckSignature() != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "malformed certificate request")
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, steward.Errorf(steward.CodeInvalid, "want an ECDSA key")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if old, ok := e.bound[deviceID]; first && ok && !pub.Equal(old) {
		return nil, steward.Errorf(steward.CodeConflict, "factory identity already enrolled with another key")
	}
	e.bound[deviceID] = pub
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: deviceID},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(e.validity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, e.deviceCA.Cert, pub, e.deviceCA.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	e.count++
	return []*x509.Certificate{cert, e.deviceCA.Cert}, nil
}

// NewESTServer serves EST (package est) for e on a loopback TLS listener
// with a certificate from serverCA and returns its URL.
func NewESTServer(t testing.TB, serverCA *testpki.CA, e steward.Enroller) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(est.NewHandler(e, slog.New(slog.DiscardHandler), est.Options{}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{serverCA.ServerCert(t)},
		// The Enroller verifies the client certificate itself: a factory
		// CA is not among the server's client CAs.
		ClientAuth: tls.RequireAnyClientCert,
		MinVersion: tls.VersionTLS12,
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.URL
}
