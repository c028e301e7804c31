package est_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/smallstep/pkcs7"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/est"
	"github.com/steward-iot/steward/est/esttest"
	"github.com/steward-iot/steward/internal/syncbuf"
)

// fixture is an EST server on loopback TLS that asks for (but does not
// require) a client certificate, as the device plane does.
type fixture struct {
	enroller *esttest.Enroller
	server   *httptest.Server
	log      *syncbuf.Buffer
}

func newFixture(t *testing.T, opts est.Options) *fixture {
	t.Helper()
	enr, err := esttest.New("acme")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := httptest.NewUnstartedServer(est.NewHandler(enr, logger, opts))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &fixture{enroller: enr, server: srv, log: logs}
}

// client returns an HTTP client trusting the server, presenting certs.
func (f *fixture) client(certs ...tls.Certificate) *http.Client {
	tr := f.server.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = certs
	return &http.Client{Transport: tr}
}

func (f *fixture) factory(t *testing.T) tls.Certificate {
	t.Helper()
	c, err := f.enroller.FactoryIdentity("SN-1")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func csrFor(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// lines is base64 in 64-character lines with CRLF, as RFC 2045 writes it.
func lines(der []byte) string {
	s := base64.StdEncoding.EncodeToString(der)
	var b strings.Builder
	for len(s) > 64 {
		b.WriteString(s[:64] + "\r\n")
		s = s[64:]
	}
	b.WriteString(s + "\r\n")
	return b.String()
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, c *http.Client, method, url, contentType, body string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// certsOf decodes a certs-only answer and checks its headers.
func certsOf(t *testing.T, r response) []*x509.Certificate {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/pkcs7-mime; smime-type=certs-only" {
		t.Errorf("Content-Type = %q", ct)
	}
	if cte := r.header.Get("Content-Transfer-Encoding"); cte != "base64" {
		t.Errorf("Content-Transfer-Encoding = %q", cte)
	}
	for _, line := range strings.Split(strings.TrimSuffix(string(r.body), "\r\n"), "\r\n") {
		if len(line) > 76 {
			t.Fatalf("base64 line of %d characters", len(line))
		}
	}
	der, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(r.body), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		t.Fatal(err)
	}
	if len(p7.Signers) != 0 {
		t.Error("certs-only answer has signers")
	}
	return p7.Certificates
}

func TestCACerts(t *testing.T) {
	t.Parallel()
	f := newFixture(t, est.Options{})
	c := f.client()
	for _, path := range []string{"/.well-known/est/cacerts", "/.well-known/est/acme/cacerts"} {
		t.Run(path, func(t *testing.T) {
			r := do(t, c, http.MethodGet, f.server.URL+path, "", "")
			certs := certsOf(t, r)
			if len(certs) != 1 || !certs[0].Equal(f.enroller.DeviceCA()) {
				t.Fatalf("got %d certificates, want the device CA", len(certs))
			}
		})
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t, est.Options{MaxBodyBytes: 2048})
	key := newKey(t)
	csr := lines(csrFor(t, key))
	factory := f.client(f.factory(t))
	stranger, err := esttest.New()
	if err != nil {
		t.Fatal(err)
	}
	strangerID, err := stranger.FactoryIdentity("SN-X")
	if err != nil {
		t.Fatal(err)
	}
	anon := f.client()
	base := f.server.URL + "/.well-known/est/"
	for _, tc := range []struct {
		name        string
		client      *http.Client
		method, url string
		ctype, body string
		status      int
		want        string
	}{
		{"unknown label", anon, "GET", base + "globex/cacerts", "", "", 404, `unknown EST label "globex"`},
		{"bad label", anon, "GET", base + "a%20b/cacerts", "", "", 400, "EST label may hold only"},
		{"long label", anon, "GET", base + strings.Repeat("a", 65) + "/cacerts", "", "", 400, "longer than 64"},
		{"unknown operation", anon, "GET", base + "serverkeygen", "", "", 404, "404 page not found"},
		{"two-level label", anon, "GET", base + "a/b/cacerts", "", "", 404, "404 page not found"},
		{"GET simpleenroll", factory, "GET", base + "simpleenroll", "", "", 405, "Method Not Allowed"},
		{"POST cacerts", factory, "POST", base + "cacerts", "application/pkcs10", csr, 405, "Method Not Allowed"},
		{"PUT csrattrs", factory, "PUT", base + "acme/csrattrs", "", "", 405, "Method Not Allowed"},
		{"wrong content type", factory, "POST", base + "simpleenroll", "application/json", csr, 415, "content type must be application/pkcs10"},
		{"no content type", factory, "POST", base + "simpleenroll", "", csr, 415, "content type must be application/pkcs10"},
		{"bad content type", factory, "POST", base + "simpleenroll", "application/pkcs10; =", csr, 415, "content type must be application/pkcs10"},
		{"body too large", factory, "POST", base + "simpleenroll", "application/pkcs10", strings.Repeat("QUFB", 600), 413, "larger than 2048 bytes"},
		{"not base64", factory, "POST", base + "simpleenroll", "application/pkcs10", "MII*not base64*", 400, "not valid base64"},
		{"empty body", factory, "POST", base + "simpleenroll", "application/pkcs10", "\r\n", 400, "empty certificate request"},
		{"not a CSR", factory, "POST", base + "simpleenroll", "application/pkcs10", base64.StdEncoding.EncodeToString([]byte("hello")), 400, "malformed certificate request"},
		{"no client certificate", anon, "POST", base + "simpleenroll", "application/pkcs10", csr, 401, "a factory certificate is required"},
		{"untrusted factory", f.client(strangerID), "POST", base + "simpleenroll", "application/pkcs10", csr, 401, "the factory certificate is not trusted"},
		{"reenroll with factory", factory, "POST", base + "simplereenroll", "application/pkcs10", csr, 401, "the operational certificate is not trusted"},
		{"enroll, unknown label", factory, "POST", base + "globex/simpleenroll", "application/pkcs10", csr, 404, "unknown EST label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.enroller.Requests())
			r := do(t, tc.client, tc.method, tc.url, tc.ctype, tc.body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d (%s)", r.status, tc.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("error Content-Type = %q", ct)
			}
			if !strings.Contains(string(r.body), tc.want) {
				t.Errorf("body %q does not contain %q", r.body, tc.want)
			}
			if tc.status == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
			// Transport-level refusals never reach the enroller.
			if tc.status == 415 || tc.status == 413 || tc.status == 405 || strings.Contains(tc.name, "base64") || strings.Contains(tc.name, "empty") {
				if n := len(f.enroller.Requests()); n != before {
					t.Error("a refused request reached the enroller")
				}
			}
		})
	}
}

func TestInternalErrorsStayInternal(t *testing.T) {
	t.Parallel()
	f := newFixture(t, est.Options{})
	c := f.client(f.factory(t))
	csr := lines(csrFor(t, newKey(t)))
	url := f.server.URL + "/.well-known/est/simpleenroll"

	f.enroller.SetFailure(errors.New("dial tcp 10.0.0.5:5432: password authentication failed for user steward"))
	r := do(t, c, "POST", url, "application/pkcs10", csr)
	if r.status != 500 || strings.TrimSpace(string(r.body)) != "internal error" {
		t.Fatalf("got %d %q, want 500 internal error", r.status, r.body)
	}
	if !strings.Contains(f.log.String(), "password authentication failed") {
		t.Error("the cause was not logged")
	}

	f.enroller.SetFailure(steward.Errorf(steward.CodeUnavailable, "the store is starting"))
	r = do(t, c, "POST", url, "application/pkcs10", csr)
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "the store is starting") {
		t.Fatalf("got %d %q Retry-After=%q", r.status, r.body, r.header.Get("Retry-After"))
	}

	f.enroller.SetFailure(steward.Errorf(steward.CodeConflict, "this factory identity is bound to another key"))
	r = do(t, c, "POST", url, "application/pkcs10", csr)
	if r.status != 409 || !strings.Contains(string(r.body), "bound to another key") {
		t.Fatalf("got %d %q", r.status, r.body)
	}
}

func TestEnrollAndReenroll(t *testing.T) {
	t.Parallel()
	f := newFixture(t, est.Options{})
	factoryID := f.factory(t)
	key := newKey(t)
	csrDER := csrFor(t, key)
	for _, tc := range []struct {
		name, path, ctype, body string
	}{
		{"lines", "/.well-known/est/simpleenroll", "application/pkcs10", lines(csrDER)},
		{"one line", "/.well-known/est/simpleenroll", "application/pkcs10", base64.StdEncoding.EncodeToString(csrDER)},
		{"no padding, LF", "/.well-known/est/acme/simpleenroll", "application/pkcs10; name=device.p10", strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(csrDER), "A", "A\n")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, f.client(factoryID), "POST", f.server.URL+tc.path, tc.ctype, tc.body)
			certs := certsOf(t, r)
			if r.header.Get("Cache-Control") != "no-store" {
				t.Error("enrollment answer may be cached")
			}
			if len(certs) == 0 || !key.PublicKey.Equal(certs[0].PublicKey) {
				t.Fatal("the issued certificate does not carry the request's key")
			}
			if err := certs[0].CheckSignatureFrom(f.enroller.DeviceCA()); err != nil {
				t.Fatal(err)
			}
			reqs := f.enroller.Requests()
			last := reqs[len(reqs)-1]
			if !bytes.Equal(last.CSR, csrDER) {
				t.Error("the enroller got another CSR")
			}
			if len(last.PeerChain) != 1 || !last.PeerChain[0].Equal(factoryID.Leaf) {
				t.Error("the enroller did not get the client certificate")
			}
			if wantLabel := strings.TrimSuffix(strings.TrimPrefix(tc.path, "/.well-known/est/"), "simpleenroll"); last.Label != strings.TrimSuffix(wantLabel, "/") {
				t.Errorf("label = %q", last.Label)
			}
			if !strings.HasPrefix(last.Remote, "127.0.0.1:") {
				t.Errorf("remote = %q", last.Remote)
			}

			// Renew with the operational certificate just issued.
			op := tls.Certificate{Certificate: [][]byte{certs[0].Raw}, PrivateKey: key, Leaf: certs[0]}
			newKey := newKey(t)
			r = do(t, f.client(op), "POST", f.server.URL+strings.Replace(tc.path, "simpleenroll", "simplereenroll", 1), tc.ctype, lines(csrFor(t, newKey)))
			renewed := certsOf(t, r)
			if !newKey.PublicKey.Equal(renewed[0].PublicKey) || renewed[0].Subject.CommonName != certs[0].Subject.CommonName {
				t.Error("renewal did not keep the device ID or did not certify the new key")
			}
		})
	}
}

var (
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidPrime256v1      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

func TestCSRAttrs(t *testing.T) {
	t.Parallel()
	f := newFixture(t, est.Options{})
	for _, path := range []string{"/.well-known/est/csrattrs", "/.well-known/est/acme/csrattrs"} {
		t.Run(path, func(t *testing.T) {
			r := do(t, f.client(), "GET", f.server.URL+path, "", "")
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/csrattrs" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cte := r.header.Get("Content-Transfer-Encoding"); cte != "base64" {
				t.Errorf("Content-Transfer-Encoding = %q", cte)
			}
			der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(r.body)))
			if err != nil {
				t.Fatal(err)
			}
			// CsrAttrs ::= SEQUENCE OF AttrOrOID: the key attribute, then the
			// signature algorithm.
			var attrs []asn1.RawValue
			if rest, err := asn1.Unmarshal(der, &attrs); err != nil || len(rest) != 0 || len(attrs) != 2 {
				t.Fatalf("not a SEQUENCE of two: %v, %d left, %d items", err, len(rest), len(attrs))
			}
			var keyAttr struct {
				Type   asn1.ObjectIdentifier
				Values []asn1.ObjectIdentifier `asn1:"set"`
			}
			if _, err := asn1.Unmarshal(attrs[0].FullBytes, &keyAttr); err != nil {
				t.Fatal(err)
			}
			if !keyAttr.Type.Equal(oidECPublicKey) || len(keyAttr.Values) != 1 || !keyAttr.Values[0].Equal(oidPrime256v1) {
				t.Errorf("key attribute = %v %v", keyAttr.Type, keyAttr.Values)
			}
			var sig asn1.ObjectIdentifier
			if _, err := asn1.Unmarshal(attrs[1].FullBytes, &sig); err != nil || !sig.Equal(oidECDSAWithSHA256) {
				t.Errorf("signature algorithm = %v (%v)", sig, err)
			}
		})
	}
	r := do(t, f.client(), "GET", f.server.URL+"/.well-known/est/globex%2F/csrattrs", "", "")
	if r.status != 400 {
		t.Errorf("bad label: status %d", r.status)
	}
}

// TestOpenSSLReadsAnswers checks the answers with another implementation:
// openssl base64 -d | openssl pkcs7 -inform DER -print_certs.
func TestOpenSSLReadsAnswers(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed; cannot cross-check the PKCS#7 answers")
	}
	f := newFixture(t, est.Options{})
	key := newKey(t)
	enrolled := do(t, f.client(f.factory(t)), "POST", f.server.URL+"/.well-known/est/simpleenroll", "application/pkcs10", lines(csrFor(t, key)))
	issued := certsOf(t, enrolled)[0]
	cacerts := do(t, f.client(), "GET", f.server.URL+"/.well-known/est/cacerts", "", "")
	attrs := do(t, f.client(), "GET", f.server.URL+"/.well-known/est/csrattrs", "", "")

	openssl := func(body []byte, args ...string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", "openssl base64 -d | openssl "+strings.Join(args, " "))
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := openssl(enrolled.body, "pkcs7", "-inform", "DER", "-print_certs")
	if !strings.Contains(out, "subject=CN = "+issued.Subject.CommonName) || !strings.Contains(out, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("openssl did not print the issued certificate:\n%s", out)
	}
	if n := strings.Count(out, "-----BEGIN CERTIFICATE-----"); n != 2 {
		t.Errorf("openssl printed %d certificates, want 2 (issued and CA)", n)
	}
	out = openssl(cacerts.body, "pkcs7", "-inform", "DER", "-print_certs")
	if !strings.Contains(out, "subject=CN = Test device CA") {
		t.Errorf("openssl did not print the CA:\n%s", out)
	}
	out = openssl(attrs.body, "asn1parse", "-inform", "DER")
	for _, want := range []string{"id-ecPublicKey", "prime256v1", "ecdsa-with-SHA256"} {
		if !strings.Contains(out, want) {
			t.Errorf("openssl asn1parse of csrattrs lacks %s:\n%s", want, out)
		}
	}
}
