package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/steward-iot/steward"
)

// FuzzParseCSR feeds arbitrary DER to ParseCSR, the parser of every
// enrollment request a device sends: it must never panic, must fail only
// with CodeInvalid (CodeTooLarge past MaxCSRSize) and nothing else, and
// what it accepts must be exactly the bytes given (no trailing data), of an
// accepted key type, with a signature that verifies.
func FuzzParseCSR(f *testing.F) {
	for _, key := range []any{mustECDSA(f, elliptic.P256()), mustECDSA(f, elliptic.P384()), mustEd25519(f)} {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "d-1"}}, key)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der)
		f.Add(der[:len(der)/2])
		f.Add(append(append([]byte{}, der...), 0))
		flipped := append([]byte{}, der...)
		flipped[len(flipped)-3] ^= 0x40 // in the signature
		f.Add(flipped)
	}
	files, _ := filepath.Glob("testdata/*.der")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0x30, 0x80})
	f.Fuzz(func(t *testing.T, der []byte) {
		csr, err := ParseCSR(der)
		if err != nil {
			if csr != nil {
				t.Fatal("a request returned with an error")
			}
			want := steward.CodeInvalid
			if len(der) > MaxCSRSize {
				want = steward.CodeTooLarge
			}
			if c := steward.ErrorCode(err); c != want {
				t.Fatalf("error code %s, want %s: %v", c, want, err)
			}
			return
		}
		if !bytes.Equal(csr.Raw, der) {
			t.Fatalf("accepted %d bytes but parsed %d", len(der), len(csr.Raw))
		}
		if err := csr.CheckSignature(); err != nil {
			t.Fatalf("accepted a request whose signature does not verify: %v", err)
		}
		if err := checkPublicKey(csr.PublicKey); err != nil {
			t.Fatalf("accepted a key it refuses: %v", err)
		}
	})
}

// FuzzParseMasterKey checks the parser of the master key given in the
// environment: it fails only with CodeInvalid, and what it accepts is
// MasterKeySize bytes that its hex and base64 forms give back.
func FuzzParseMasterKey(f *testing.F) {
	key := bytes.Repeat([]byte{0xa5}, MasterKeySize)
	f.Add(hex.EncodeToString(key))
	f.Add(" " + base64.StdEncoding.EncodeToString(key) + "\n")
	f.Add(base64.RawStdEncoding.EncodeToString(key))
	f.Add(hex.EncodeToString(key)[1:])
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		k, err := ParseMasterKey(text)
		if err != nil {
			if k != nil || steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("ParseMasterKey(%q) = %x, %v", text, k, err)
			}
			return
		}
		if len(k) != MasterKeySize {
			t.Fatalf("ParseMasterKey(%q): %d bytes", text, len(k))
		}
		for _, form := range []string{hex.EncodeToString(k), base64.StdEncoding.EncodeToString(k)} {
			if again, err := ParseMasterKey(form); err != nil || !bytes.Equal(again, k) {
				t.Fatalf("%q does not round-trip: %x, %v", form, again, err)
			}
		}
	})
}

func mustECDSA(f *testing.F, c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return k
}

func mustEd25519(f *testing.F) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	return k
}
