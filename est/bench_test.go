package est_test

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/steward-iot/steward/est"
	"github.com/steward-iot/steward/est/esttest"
)

// BenchmarkSimpleEnroll measures the handler's own work around an
// enrollment (content type, body limit, base64, PKCS#7 encoding) plus the
// test enroller's verify-and-sign, without the network and TLS.
func BenchmarkSimpleEnroll(b *testing.B) {
	enr, err := esttest.New()
	if err != nil {
		b.Fatal(err)
	}
	factory, err := enr.FactoryIdentity("SN-1")
	if err != nil {
		b.Fatal(err)
	}
	h := est.NewHandler(enr, slog.New(slog.DiscardHandler), est.Options{})
	body := lines(csrFor(b, newKey(b)))
	state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{factory.Leaf}}
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/.well-known/est/simpleenroll", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/pkcs10")
		req.TLS = state
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkCACerts is the handler's cost for the most frequent, anonymous
// request.
func BenchmarkCACerts(b *testing.B) {
	enr, err := esttest.New()
	if err != nil {
		b.Fatal(err)
	}
	h := est.NewHandler(enr, slog.New(slog.DiscardHandler), est.Options{})
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/.well-known/est/cacerts", nil))
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
