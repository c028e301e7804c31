package sim

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestNewManufacturer(t *testing.T) {
	t.Parallel()
	m, err := NewManufacturer("Acme Devices")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := pem.Decode(m.CertPEM())
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("CertPEM: %q", m.CertPEM())
	}
	ca, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Fatal("manufacturer certificate is not a CA")
	}
	if pub, ok := ca.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("manufacturer key %T, want ECDSA P-256", ca.PublicKey)
	}
	if m.Name() != "Acme Devices" || ca.Subject.Organization[0] != "Acme Devices" {
		t.Fatalf("name %q, subject %v", m.Name(), ca.Subject)
	}
	for _, name := range []string{"", string(make([]byte, 65))} {
		if _, err := NewManufacturer(name); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("NewManufacturer(%q): %v, want CodeInvalid", name, err)
		}
	}
}

func TestFactoryIdentity(t *testing.T) {
	t.Parallel()
	m, err := NewManufacturer("Acme Devices")
	if err != nil {
		t.Fatal(err)
	}
	id, err := m.FactoryIdentity("SN-0001")
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Leaf
	if leaf.Subject.CommonName != "SN-0001" || leaf.Subject.SerialNumber != "SN-0001" {
		t.Fatalf("subject %v", leaf.Subject)
	}
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 10*365*24*time.Hour || life > 10*366*24*time.Hour {
		t.Fatalf("validity %v, want 10 years", life)
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.Certificate())
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("factory certificate does not verify for client auth: %v", err)
	}
	key, ok := id.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || key.Curve != elliptic.P256() || !key.PublicKey.Equal(leaf.PublicKey) {
		t.Fatal("factory key is not the certificate's P-256 key")
	}
	if len(id.Certificate) != 1 || string(id.Certificate[0]) != string(leaf.Raw) {
		t.Fatal("tls.Certificate chain is not the leaf")
	}
	other, _ := m.FactoryIdentity("SN-0001")
	if other.Leaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("two factory certificates share a serial number")
	}
	for _, serial := range []string{"", "a/b", "..", "white space", string(make([]byte, 65))} {
		if _, err := m.FactoryIdentity(serial); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("FactoryIdentity(%q): %v, want CodeInvalid", serial, err)
		}
	}
}

func TestManufacturerSaveLoad(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mfr")
	if _, err := LoadManufacturer(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("LoadManufacturer of nothing: %v, want fs.ErrNotExist", err)
	}
	m, err := NewManufacturer("Acme Devices")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]fs.FileMode{CAFile: 0o644, CAKeyFile: 0o600, ".": 0o700 | fs.ModeDir} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode(), mode)
		}
	}
	got, err := LoadManufacturer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Certificate().Equal(m.Certificate()) || got.Name() != "Acme Devices" {
		t.Fatal("loaded manufacturer differs")
	}
	// The loaded key signs: its identities verify against the saved CA.
	id, err := got.FactoryIdentity("SN-9")
	if err != nil {
		t.Fatal(err)
	}
	if err := id.Leaf.CheckSignatureFrom(m.Certificate()); err != nil {
		t.Fatalf("identity from the loaded manufacturer: %v", err)
	}
	// Saving the same again is fine; another manufacturer is refused and
	// nothing is replaced.
	if err := got.Save(dir); err != nil {
		t.Fatalf("saving the same manufacturer again: %v", err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	other, _ := NewManufacturer("Other")
	if err := other.Save(dir); steward.ErrorCode(err) != steward.CodeConflict {
		t.Fatalf("saving over another manufacturer: %v, want CodeConflict", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if string(before) != string(after) {
		t.Fatal("a refused Save replaced the key")
	}
}

func TestLoadManufacturerRejectsDamage(t *testing.T) {
	t.Parallel()
	m, _ := NewManufacturer("Acme Devices")
	leafOnly, _ := m.FactoryIdentity("SN-1")
	tests := []struct {
		name      string
		cert, key []byte
	}{
		{"garbage", []byte("x"), []byte("y")},
		{"key of another certificate", m.CertPEM(), keyPEM(t, leafOnly.PrivateKey.(*ecdsa.PrivateKey))},
		{"not a CA", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafOnly.Leaf.Raw}), keyPEM(t, leafOnly.PrivateKey.(*ecdsa.PrivateKey))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			_ = os.WriteFile(filepath.Join(dir, CAFile), tt.cert, 0o644)
			_ = os.WriteFile(filepath.Join(dir, CAKeyFile), tt.key, 0o600)
			if _, err := LoadManufacturer(dir); err == nil || errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("LoadManufacturer: %v, want an error", err)
			}
		})
	}
}

func keyPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
