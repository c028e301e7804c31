package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"github.com/google/renameio/v2"

	"github.com/steward-iot/steward"
)

// Files of a saved manufacturer.
const (
	CAFile    = "ca.pem"     // the manufacturer CA certificate, to register in an enrollment group
	CAKeyFile = "ca-key.pem" // its private key (mode 0600)
)

// Validity periods.
const (
	caValidity      = 20 * 365 * 24 * time.Hour
	factoryValidity = 10 * 365 * 24 * time.Hour
	backdate        = time.Hour // tolerance for clocks that run a little late
)

// Manufacturer is a device maker's CA: it signs the factory identities
// (IDevIDs) that simulated devices enroll with. An operator registers its
// certificate in an enrollment group.
type Manufacturer struct {
	name  string
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	clock steward.Clock
}

// NewManufacturer makes a new manufacturer CA (ECDSA P-256) named name.
func NewManufacturer(name string) (*Manufacturer, error) {
	if name == "" || len(name) > 64 {
		return nil, steward.Errorf(steward.CodeInvalid, "manufacturer name must be 1 to 64 characters")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate manufacturer key: %w", err)
	}
	clock := steward.SystemClock{}
	now := clock.Now()
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name + " Manufacturing CA", Organization: []string{name}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(caValidity),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create manufacturer CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse manufacturer CA: %w", err)
	}
	return &Manufacturer{name: name, cert: cert, key: key, clock: clock}, nil
}

// LoadManufacturer reads a manufacturer saved in dir. When there is none
// the error wraps fs.ErrNotExist.
func LoadManufacturer(dir string) (*Manufacturer, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("load manufacturer: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load manufacturer: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load manufacturer from %s: %w", dir, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() {
		return nil, fmt.Errorf("load manufacturer from %s: the key is not ECDSA P-256", dir)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("load manufacturer from %s: %s is not a CA certificate", dir, CAFile)
	}
	name := pair.Leaf.Subject.CommonName
	if len(pair.Leaf.Subject.Organization) > 0 {
		name = pair.Leaf.Subject.Organization[0]
	}
	return &Manufacturer{name: name, cert: pair.Leaf, key: key, clock: steward.SystemClock{}}, nil
}

// Save writes the manufacturer to dir: CAFile (0644) and CAKeyFile (0600),
// in a directory of mode 0700. It refuses to replace another manufacturer
// saved there, whose devices would be orphaned.
func (m *Manufacturer) Save(dir string) error {
	if old, err := LoadManufacturer(dir); err == nil {
		if old.cert.Equal(m.cert) {
			return nil
		}
		return steward.Errorf(steward.CodeConflict, "%s already holds another manufacturer", dir)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save manufacturer: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(m.key)
	if err != nil {
		return fmt.Errorf("save manufacturer: %w", err)
	}
	// The key first: a CA file without its key would look complete.
	if err := renameio.WriteFile(filepath.Join(dir, CAKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("save manufacturer key: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(dir, CAFile), m.CertPEM(), 0o644); err != nil {
		return fmt.Errorf("save manufacturer CA: %w", err)
	}
	return nil
}

// Name returns the manufacturer's name.
func (m *Manufacturer) Name() string { return m.name }

// Certificate returns the manufacturer CA certificate.
func (m *Manufacturer) Certificate() *x509.Certificate { return m.cert }

// CertPEM returns the manufacturer CA certificate in PEM, as an enrollment
// group takes it.
func (m *Manufacturer) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.cert.Raw})
}

// FactoryIdentity makes a device's factory identity (IDevID): a new ECDSA
// P-256 key and a certificate with subject CN and serialNumber = serial,
// valid for 10 years, for TLS client authentication.
func (m *Manufacturer) FactoryIdentity(serial string) (tls.Certificate, error) {
	if !validSerial(serial) {
		return tls.Certificate{}, steward.Errorf(steward.CodeInvalid, "serial %q: use 1 to 64 letters, digits, '-', '_' or '.'", serial)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate factory key: %w", err)
	}
	sn, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	now := m.clock.Now()
	der, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: sn,
		Subject:      pkix.Name{CommonName: serial, SerialNumber: serial, Organization: []string{m.name}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(factoryValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, m.cert, &key.PublicKey, m.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue factory certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("parse factory certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// validSerial accepts what can name a device's state directory and appear
// in a certificate subject.
func validSerial(s string) bool {
	return s != "" && len(s) <= 64 && s != "." && s != ".." && steward.ValidDeviceID(s)
}

func randomSerial() (*big.Int, error) {
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return sn.Add(sn, big.NewInt(1)), nil
}
