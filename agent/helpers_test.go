package agent

import (
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testpki"
)

// fakeClock is a Clock that tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock(t time.Time) *fakeClock { return &fakeClock{now: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// deviceIdentity issues an operational identity with CN = id.
func deviceIdentity(t testing.TB, ca *testpki.CA, id string, notBefore, notAfter time.Time) *Identity {
	t.Helper()
	c := ca.ClientCert(t, pkix.Name{CommonName: id}, notBefore, notAfter)
	ident, err := newIdentity(c.PrivateKey.(*ecdsa.PrivateKey), []*x509.Certificate{c.Leaf})
	if err != nil {
		t.Fatal(err)
	}
	return ident
}

// factoryCert issues a factory identity for serial.
func factoryCert(t testing.TB, ca *testpki.CA, serial string) tls.Certificate {
	t.Helper()
	return ca.ClientCert(t, pkix.Name{CommonName: serial, SerialNumber: serial}, time.Now().Add(-time.Hour), time.Now().Add(10*365*24*time.Hour))
}

func tlsLoadKeyPair(path string) (tls.Certificate, error) { return tls.LoadX509KeyPair(path, path) }
