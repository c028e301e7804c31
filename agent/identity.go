package agent

import (
	"bytes"
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
	"os"
	"path/filepath"

	"github.com/google/renameio/v2"
	"github.com/steward-iot/steward"
)

// Files in the state directory.
const (
	// IdentityFile holds the device's private key and its operational
	// certificate in one PEM file, so that a renewal with a new key replaces
	// both in one rename. Both tls.LoadX509KeyPair and mosquitto_pub's
	// --cert/--key accept it.
	IdentityFile = "identity.pem"
	// PendingKeyFile holds a key waiting for its certificate. It is written
	// before the request goes out, so that a retry after a lost answer asks
	// with the same key (the server binds a factory identity to one key).
	PendingKeyFile = "pending-key.pem"
	// rebootFile remembers the last reboot command carried out, so that a
	// command delivered again after the restart does not reboot twice.
	rebootFile = "last-reboot"
)

// Identity is the device's operational identity.
type Identity struct {
	DeviceID string              // the certificate's CN, assigned by the server
	Key      *ecdsa.PrivateKey   // made on the device; never leaves it
	Cert     *x509.Certificate   // the operational certificate
	Chain    []*x509.Certificate // Cert first, then what the server sent with it
}

// TLS returns the identity as a TLS client certificate.
func (id *Identity) TLS() *tls.Certificate {
	c := &tls.Certificate{PrivateKey: id.Key, Leaf: id.Cert}
	for _, x := range id.Chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// stateDir reads and writes the agent's files. Every file holding a key is
// written with mode 0600 in a directory of mode 0700.
type stateDir string

func (d stateDir) path(name string) string { return filepath.Join(string(d), name) }

func (d stateDir) ensure() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	return nil
}

// write replaces a file atomically (temporary file, fsync, rename, fsync of
// the directory): a crash leaves the old content or the new, never half.
func (d stateDir) write(name string, data []byte) error {
	if err := d.ensure(); err != nil {
		return err
	}
	if err := renameio.WriteFile(d.path(name), data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// loadIdentity reads the saved identity; fs.ErrNotExist when there is none.
func (d stateDir) loadIdentity() (*Identity, error) {
	data, err := os.ReadFile(d.path(IdentityFile))
	if err != nil {
		return nil, err
	}
	id, err := parseIdentity(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", d.path(IdentityFile), err)
	}
	return id, nil
}

// saveIdentity writes key and certificate chain in one atomic step and then
// drops the pending key it replaces.
func (d stateDir) saveIdentity(id *Identity) error {
	data, err := encodeIdentity(id)
	if err != nil {
		return err
	}
	if err := d.write(IdentityFile, data); err != nil {
		return err
	}
	if err := os.Remove(d.path(PendingKeyFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove pending key: %w", err)
	}
	return nil
}

// pendingKey returns the key waiting for a certificate, making and saving a
// new one when there is none.
func (d stateDir) pendingKey() (*ecdsa.PrivateKey, error) {
	data, err := os.ReadFile(d.path(PendingKeyFile))
	switch {
	case err == nil:
		key, err := parseKey(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.path(PendingKeyFile), err)
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read pending key: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key: %w", err)
	}
	data, err = encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := d.write(PendingKeyFile, data); err != nil {
		return nil, err
	}
	return key, nil
}

// usePendingKey makes key the pending key (used when a request must go out
// with the current key rather than a new one).
func (d stateDir) usePendingKey(key *ecdsa.PrivateKey) error {
	data, err := encodeKey(key)
	if err != nil {
		return err
	}
	return d.write(PendingKeyFile, data)
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func encodeIdentity(id *Identity) ([]byte, error) {
	var b bytes.Buffer
	key, err := encodeKey(id.Key)
	if err != nil {
		return nil, err
	}
	b.Write(key)
	for _, c := range id.Chain {
		_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return b.Bytes(), nil
}

// parseKey reads a P-256 private key, PKCS#8 or SEC 1.
func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return nil, errors.New("no private key in PEM data")
		}
		switch b.Type {
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: %w", err)
			}
			ec, ok := k.(*ecdsa.PrivateKey)
			if !ok || ec.Curve != elliptic.P256() {
				return nil, errors.New("private key is not ECDSA P-256")
			}
			return ec, nil
		case "EC PRIVATE KEY":
			k, err := x509.ParseECPrivateKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse private key: %w", err)
			}
			if k.Curve != elliptic.P256() {
				return nil, errors.New("private key is not ECDSA P-256")
			}
			return k, nil
		}
	}
}

// parseIdentity reads a key and its certificate chain and checks that they
// belong together and that the certificate names a device.
func parseIdentity(data []byte) (*Identity, error) {
	key, err := parseKey(data)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		chain = append(chain, c)
	}
	if len(chain) == 0 {
		return nil, errors.New("no certificate in PEM data")
	}
	return newIdentity(key, chain)
}

// newIdentity checks that chain[0] certifies key and names a device.
func newIdentity(key *ecdsa.PrivateKey, chain []*x509.Certificate) (*Identity, error) {
	if len(chain) == 0 {
		return nil, errors.New("no certificate")
	}
	pub, ok := chain[0].PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) {
		return nil, errors.New("certificate does not match the private key")
	}
	id := chain[0].Subject.CommonName
	if !steward.ValidDeviceID(id) {
		return nil, fmt.Errorf("certificate common name %q is not a device ID", id)
	}
	return &Identity{DeviceID: id, Key: key, Cert: chain[0], Chain: chain}, nil
}

// newCSR makes a PKCS#10 request for key with the given subject, DER.
func newCSR(key *ecdsa.PrivateKey, subject pkix.Name, rawSubject []byte) ([]byte, error) {
	tmpl := &x509.CertificateRequest{
		Subject:            subject,
		RawSubject:         rawSubject,
		SignatureAlgorithm: x509.ECDSAWithSHA256,
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create CSR: %w", err)
	}
	return der, nil
}
