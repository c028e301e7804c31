package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/steward-iot/steward"
)

func csrDER(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func ecKey(t testing.TB, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func rsaKey(t testing.TB, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// replace swaps the first occurrence of a byte sequence in a DER request
// (the subject public key info comes before the signature algorithm) for
// another of the same length, to make requests Go refuses to make.
func replace(t testing.TB, der, old, new []byte) []byte {
	t.Helper()
	if !bytes.Contains(der, old) || len(old) != len(new) {
		t.Fatalf("cannot replace % x", old)
	}
	return bytes.Replace(der, old, new, 1)
}

var (
	derOIDCurveP256 = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}
	derOIDECPublic  = []byte{0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01}
	derOIDEd25519   = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}
)

func TestParseCSRAccepts(t *testing.T) {
	t.Parallel()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"ECDSA P-256", ecKey(t, elliptic.P256())},
		{"ECDSA P-384", ecKey(t, elliptic.P384())},
		{"ECDSA P-521", ecKey(t, elliptic.P521())},
		{"Ed25519", ed},
		{"RSA 2048", rsaKey(t, 2048)},
		{"RSA 3072", rsaKey(t, 3072)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, err := ParseCSR(csrDER(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			pub := tc.key.Public().(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(csr.PublicKey) {
				t.Error("parsed key differs")
			}
			if csr.Subject.CommonName != "device" {
				t.Errorf("CN = %q", csr.Subject.CommonName)
			}
		})
	}
}

func TestParseCSRRefuses(t *testing.T) {
	t.Parallel()
	good := csrDER(t, ecKey(t, elliptic.P256()))
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER := csrDER(t, ed)
	badSig := bytes.Clone(good)
	badSig[len(badSig)-2] ^= 0x5a // inside the signature's S
	badSubject := replace(t, good, []byte("device"), []byte("devicf"))
	cert := func() []byte {
		k := ecKey(t, elliptic.P256())
		tmpl := &x509.Certificate{SerialNumber: bigOne(), Subject: pkix.Name{CommonName: "x"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}()

	for _, tc := range []struct {
		name string
		der  []byte
		code steward.Code
		want string
	}{
		{"empty", nil, steward.CodeInvalid, "empty certificate request"},
		{"not DER", []byte("-----BEGIN CERTIFICATE REQUEST-----"), steward.CodeInvalid, "not a well-formed PKCS#10"},
		{"truncated", good[:len(good)/2], steward.CodeInvalid, "not a well-formed PKCS#10"},
		{"a certificate", cert, steward.CodeInvalid, "not a well-formed PKCS#10"},
		{"trailing data", append(bytes.Clone(good), 0x00, 0x00), steward.CodeInvalid, "2 bytes of trailing data"},
		{"second request appended", append(bytes.Clone(good), good...), steward.CodeInvalid, "trailing data"},
		{"too large", make([]byte, MaxCSRSize+1), steward.CodeTooLarge, "larger than 65536 bytes"},
		{"bad signature", badSig, steward.CodeInvalid, "signature does not verify"},
		{"changed subject", badSubject, steward.CodeInvalid, "signature does not verify"},
		{"RSA 1024", csrDER(t, rsaKey(t, 1024)), steward.CodeInvalid, "RSA key of 1024 bits; at least 2048"},
		{"RSA 2047", csrDER(t, rsaKey(t, 2047)), steward.CodeInvalid, "RSA key of 2047 bits; at least 2048"},
		{"RSA 8448", fixture(t, "rsa8448.csr.der"), steward.CodeInvalid, "RSA key of 8448 bits; at most 8192"},
		{"P-224", csrDER(t, ecKey(t, elliptic.P224())), steward.CodeInvalid, "P-224, which is too weak"},
		{"secp256k1", fixture(t, "secp256k1.csr.der"), steward.CodeInvalid, "secp256k1, which is not supported"},
		{"unknown curve", replace(t, good, derOIDCurveP256, append(bytes.Clone(derOIDCurveP256[:9]), 0x09)), steward.CodeInvalid, "curve 1.2.840.10045.3.1.9, which is not supported"},
		{"EC without named curve", replace(t, good, derOIDCurveP256, append([]byte{0x05}, derOIDCurveP256[1:]...)), steward.CodeInvalid, "without a named curve"},
		{"DSA", fixture(t, "dsa.csr.der"), steward.CodeInvalid, "DSA key, which is not accepted"},
		{"Ed448", fixture(t, "ed448.csr.der"), steward.CodeInvalid, "Ed448 key"},
		{"X25519", replace(t, edDER, derOIDEd25519, []byte{0x06, 0x03, 0x2b, 0x65, 0x6e}), steward.CodeInvalid, "key-agreement key"},
		{"RSA-PSS key", fixture(t, "rsapss.csr.der"), steward.CodeInvalid, "RSASSA-PSS-only key"},
		{"unknown key algorithm", replace(t, good, derOIDECPublic, append(bytes.Clone(derOIDECPublic[:8]), 0x05)), steward.CodeInvalid, "unknown algorithm 1.2.840.10045.2.5"},
		{"SHA-1 signature", fixture(t, "rsa-sha1.csr.der"), steward.CodeInvalid, "SHA1-RSA is too weak"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			csr, err := ParseCSR(tc.der)
			wantCode(t, err, tc.code, tc.want)
			if csr != nil {
				t.Error("a refused request was returned")
			}
		})
	}
}

func bigOne() *big.Int { return big.NewInt(1) }
