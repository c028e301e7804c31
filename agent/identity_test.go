package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward/internal/testpki"
)

func TestPendingKeyPersistsWithMode0600(t *testing.T) {
	t.Parallel()
	dir := stateDir(filepath.Join(t.TempDir(), "state"))
	k1, err := dir.pendingKey()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct {
		path string
		mode fs.FileMode
	}{{dir.path(PendingKeyFile), 0o600}, {string(dir), 0o700 | fs.ModeDir}} {
		st, err := os.Stat(p.path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != p.mode {
			t.Errorf("%s: mode %v, want %v", p.path, st.Mode(), p.mode)
		}
	}
	k2, err := dir.pendingKey()
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("pendingKey made a new key although one was saved")
	}
	data, err := os.ReadFile(dir.path(PendingKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(data); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("pending key is not a PEM PRIVATE KEY: %q", data)
	}
}

func TestPendingKeyRejectsDamagedFile(t *testing.T) {
	t.Parallel()
	dir := stateDir(t.TempDir())
	if err := os.WriteFile(dir.path(PendingKeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := dir.pendingKey(); err == nil {
		t.Fatal("a damaged pending key was accepted")
	}
	// Nothing was replaced: the file is left for someone to look at.
	data, _ := os.ReadFile(dir.path(PendingKeyFile))
	if string(data) != "not a key" {
		t.Fatalf("damaged pending key was overwritten with %q", data)
	}
}

func TestIdentitySaveLoad(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "device CA")
	dir := stateDir(t.TempDir())
	if _, err := dir.loadIdentity(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("loadIdentity of an empty directory: %v, want ErrNotExist", err)
	}
	if _, err := dir.pendingKey(); err != nil {
		t.Fatal(err)
	}
	id := deviceIdentity(t, ca, "d-0123456789abcdefghij", time.Now(), time.Now().Add(time.Hour))
	if err := dir.saveIdentity(id); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(dir.path(IdentityFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode() != 0o600 {
		t.Errorf("identity file mode %v, want 0600", st.Mode())
	}
	if _, err := os.Stat(dir.path(PendingKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pending key still there after saving the identity: %v", err)
	}
	got, err := dir.loadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if got.DeviceID != id.DeviceID || !got.Key.Equal(id.Key) || !got.Cert.Equal(id.Cert) {
		t.Fatalf("loaded identity differs: %+v", got)
	}
	// Any TLS stack takes the file as both certificate and key.
	if _, err := tlsLoadKeyPair(dir.path(IdentityFile)); err != nil {
		t.Fatalf("identity file is not a usable key pair: %v", err)
	}
}

func TestParseIdentityRejects(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "device CA")
	good := deviceIdentity(t, ca, "d-0123456789abcdefghij", time.Now(), time.Now().Add(time.Hour))
	other := deviceIdentity(t, ca, "d-zzzzzzzzzzzzzzzzzzzz", time.Now(), time.Now().Add(time.Hour))
	badCN := deviceIdentity(t, ca, "d-ok", time.Now(), time.Now().Add(time.Hour))
	badCN.Cert = ca.Sign(t, &x509.Certificate{Subject: pkix.Name{CommonName: "not a/device id"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}, &badCN.Key.PublicKey)
	badCN.Chain = []*x509.Certificate{badCN.Cert}
	enc := func(key *ecdsa.PrivateKey, certs ...*x509.Certificate) []byte {
		t.Helper()
		data, err := encodeIdentity(&Identity{Key: key, Chain: certs})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	keyOnly, _ := encodeKey(good.Key)
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "no private key"},
		{"key only", keyOnly, "no certificate"},
		{"key of another certificate", enc(good.Key, other.Cert), "does not match"},
		{"CN not a device ID", enc(badCN.Key, badCN.Cert), "not a device ID"},
		{"broken certificate", append(keyOnly, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})...), "parse certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := parseIdentity(tt.data)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("parseIdentity: %v, want an error with %q", err, tt.want)
			}
		})
	}
	if _, err := parseIdentity(enc(good.Key, good.Cert)); err != nil {
		t.Fatalf("a good identity: %v", err)
	}
}

func TestNewCSR(t *testing.T) {
	t.Parallel()
	key := testpki.NewKey(t)
	subject := pkix.Name{CommonName: "SN-1", SerialNumber: "SN-1"}
	der, err := newCSR(key, subject, nil)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Fatalf("CSR signature: %v", err)
	}
	if pub, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&key.PublicKey) {
		t.Fatal("CSR does not carry the key's public half")
	}
	if csr.Subject.CommonName != "SN-1" || csr.Subject.SerialNumber != "SN-1" {
		t.Fatalf("CSR subject %v", csr.Subject)
	}
	// The private key is nowhere in the request.
	raw, err := key.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(der, raw) {
		t.Fatal("CSR contains the private key")
	}

	// Renewal copies the raw subject of the certificate being renewed.
	ca := testpki.NewCA(t, "device CA")
	cur := deviceIdentity(t, ca, "d-0123456789abcdefghij", time.Now(), time.Now().Add(time.Hour))
	der, err = newCSR(key, cur.Cert.Subject, cur.Cert.RawSubject)
	if err != nil {
		t.Fatal(err)
	}
	csr, err = x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	if string(csr.RawSubject) != string(cur.Cert.RawSubject) {
		t.Fatal("renewal CSR subject differs from the certificate's")
	}
}
