package estclient

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/steward-iot/steward/internal/estwire"
)

func certsOnlyBody(tb testing.TB, n int) []byte {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	var raw []byte
	for i := range n {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: "c"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			tb.Fatal(err)
		}
		raw = append(raw, der...)
	}
	p7, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		tb.Fatal(err)
	}
	return estwire.EncodeLines(p7)
}

// FuzzDecodeCerts feeds arbitrary answers to the client's certs-only
// decoder, which runs the PKCS#7 parser on what a server sent: it must
// never panic, and succeed only with at least one certificate.
func FuzzDecodeCerts(f *testing.F) {
	f.Add(certsOnlyBody(f, 1))
	f.Add(certsOnlyBody(f, 2))
	f.Add([]byte("MIAGCSqGSIb3DQEHAqCAMIACAQExADALBgkqhkiG9w0BBwGggAAAMQAAAAAAAA=="))
	f.Add([]byte(""))
	f.Add([]byte("MA=="))
	f.Fuzz(func(t *testing.T, body []byte) {
		certs, err := decodeCerts(body)
		if err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		if err != nil && certs != nil {
			t.Fatal("certificates with an error")
		}
	})
}

func BenchmarkDecodeCerts(b *testing.B) {
	body := certsOnlyBody(b, 2)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCerts(body); err != nil {
			b.Fatal(err)
		}
	}
}
