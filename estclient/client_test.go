package estclient_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"errors"
	"go/parser"
	"go/token"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/est"
	"github.com/steward-iot/steward/est/esttest"
	"github.com/steward-iot/steward/estclient"
)

// server is the real EST handler over loopback TLS with the test enroller.
type server struct {
	enroller *esttest.Enroller
	srv      *httptest.Server
}

func newServer(t *testing.T) *server {
	t.Helper()
	enr, err := esttest.New("acme")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(est.NewHandler(enr, slog.New(slog.DiscardHandler), est.Options{}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return &server{enroller: enr, srv: srv}
}

// client returns an EST client trusting srv, presenting certs.
func client(srv *httptest.Server, label string, certs ...tls.Certificate) *estclient.Client {
	tr := srv.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = certs
	return &estclient.Client{BaseURL: srv.URL, Label: label, HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func newCSR(t testing.TB) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

func TestCACerts(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	for _, tc := range []struct{ name, base, label string }{
		{"plain", s.srv.URL, ""},
		{"trailing slash", s.srv.URL + "/", ""},
		{"full EST path", s.srv.URL + "/.well-known/est/", ""},
		{"label", s.srv.URL, "acme"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := client(s.srv, tc.label)
			c.BaseURL = tc.base
			certs, err := c.CACerts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(certs) != 1 || !certs[0].Equal(s.enroller.DeviceCA()) {
				t.Fatalf("got %d certificates, want the device CA", len(certs))
			}
		})
	}
}

func TestEnrollAndReenroll(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	factory, err := s.enroller.FactoryIdentity("SN-7")
	if err != nil {
		t.Fatal(err)
	}
	key, csr := newCSR(t)
	cert, err := client(s.srv, "acme", factory).SimpleEnroll(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	// The answer also holds the CA; the client picks the certificate for
	// its own key.
	if !key.PublicKey.Equal(cert.PublicKey) || cert.IsCA {
		t.Fatal("SimpleEnroll did not return the certificate for the request's key")
	}
	if reqs := s.enroller.Requests(); len(reqs) != 1 || reqs[0].Label != "acme" || !reqs[0].PeerChain[0].Equal(factory.Leaf) {
		t.Fatalf("enroller saw %+v", reqs)
	}

	op := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	newKey, csr2 := newCSR(t)
	renewed, err := client(s.srv, "acme", op).SimpleReenroll(ctx, csr2)
	if err != nil {
		t.Fatal(err)
	}
	if !newKey.PublicKey.Equal(renewed.PublicKey) || renewed.Subject.CommonName != cert.Subject.CommonName {
		t.Fatal("renewal did not certify the new key under the same device ID")
	}
}

func TestCSRAttrs(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	der, err := client(s.srv, "").CSRAttrs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var attrs []asn1.RawValue
	if rest, err := asn1.Unmarshal(der, &attrs); err != nil || len(rest) != 0 || len(attrs) != 2 {
		t.Fatalf("CSRAttrs = %x (%v)", der, err)
	}
}

func TestServerErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	factory, err := s.enroller.FactoryIdentity("SN-8")
	if err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	for _, tc := range []struct {
		name    string
		fail    error
		call    func() error
		status  int
		code    steward.Code
		message string
		retry   time.Duration
	}{
		{name: "unknown label", call: func() error { _, err := client(s.srv, "globex").CACerts(ctx); return err },
			status: 404, code: steward.CodeNotFound, message: `unknown EST label "globex"`},
		{name: "no client certificate", call: func() error { _, err := client(s.srv, "").SimpleEnroll(ctx, csr); return err },
			status: 401, code: steward.CodeUnauthenticated, message: "a factory certificate is required"},
		{name: "reenroll with factory identity", call: func() error { _, err := client(s.srv, "", factory).SimpleReenroll(ctx, csr); return err },
			status: 401, code: steward.CodeUnauthenticated, message: "the operational certificate is not trusted"},
		{name: "unavailable", fail: steward.Errorf(steward.CodeUnavailable, "starting"),
			call:   func() error { _, err := client(s.srv, "", factory).SimpleEnroll(ctx, csr); return err },
			status: 503, code: steward.CodeUnavailable, message: "starting", retry: 30 * time.Second},
		{name: "internal", fail: errors.New("secret database detail"),
			call:   func() error { _, err := client(s.srv, "").CACerts(ctx); return err },
			status: 500, code: steward.CodeInternal, message: "internal error"},
		{name: "label with a slash", call: func() error { _, err := client(s.srv, "a/b").CSRAttrs(ctx); return err },
			status: 400, code: steward.CodeInvalid, message: "EST label may hold only letters, digits, '-', '_' and '.'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.enroller.SetFailure(tc.fail)
			defer s.enroller.SetFailure(nil)
			err := tc.call()
			var e *estclient.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v (%T) is not an *estclient.Error", err, err)
			}
			if e.StatusCode != tc.status || e.Message != tc.message || e.RetryAfter != tc.retry {
				t.Errorf("got %d %q retry %s; want %d %q retry %s", e.StatusCode, e.Message, e.RetryAfter, tc.status, tc.message, tc.retry)
			}
			if got := steward.ErrorCode(err); got != tc.code {
				t.Errorf("steward.ErrorCode = %s, want %s", got, tc.code)
			}
			if strings.Contains(err.Error(), "secret database detail") {
				t.Error("an internal detail reached the client")
			}
		})
	}
}

func TestClientRefusesBadInput(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	ctx := context.Background()
	factory, err := s.enroller.FactoryIdentity("SN-9")
	if err != nil {
		t.Fatal(err)
	}
	c := client(s.srv, "", factory)
	_, err = c.SimpleEnroll(ctx, []byte("not a CSR"))
	if steward.ErrorCode(err) != steward.CodeInvalid || !strings.Contains(err.Error(), "does not parse") {
		t.Errorf("bad CSR: %v", err)
	}
	if n := len(s.enroller.Requests()); n != 0 {
		t.Errorf("a bad CSR was sent (%d requests)", n)
	}
	_, err = (&estclient.Client{}).CACerts(ctx)
	if err == nil || !strings.Contains(err.Error(), "no server URL") {
		t.Errorf("no URL: %v", err)
	}
}

// TestMisbehavingServer points the client at servers that answer wrongly.
func TestMisbehavingServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, csr := newCSR(t)
	otherKey, _ := newCSR(t)
	otherCert := selfSigned(t, otherKey)
	certsOnly := func(certs ...*x509.Certificate) string {
		var raw []byte
		for _, c := range certs {
			raw = append(raw, c.Raw...)
		}
		p7, err := pkcs7.DegenerateCertificate(raw)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(p7)
	}
	emptyP7 := func() string {
		p7, err := pkcs7.DegenerateCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(p7)
	}()
	for _, tc := range []struct {
		name    string
		status  int
		header  map[string]string
		body    string
		call    func(*estclient.Client) error
		want    string
		pending bool
	}{
		{name: "HTML page", status: 200, header: map[string]string{"Content-Type": "text/html"}, body: "<html>",
			call: caCerts, want: `answered "text/html", not application/pkcs7-mime`},
		{name: "not base64", status: 200, header: map[string]string{"Content-Type": "application/pkcs7-mime"}, body: "*garbage*",
			call: caCerts, want: "not base64"},
		{name: "not PKCS#7", status: 200, header: map[string]string{"Content-Type": "application/pkcs7-mime"}, body: base64.StdEncoding.EncodeToString([]byte("hello")),
			call: caCerts, want: "not a PKCS#7 certs-only message"},
		{name: "no certificates", status: 200, header: map[string]string{"Content-Type": "application/pkcs7-mime"}, body: emptyP7,
			call: caCerts, want: "holds no certificates"},
		{name: "certificate for another key", status: 200, header: map[string]string{"Content-Type": "application/pkcs7-mime; smime-type=certs-only"}, body: certsOnly(otherCert),
			call: func(c *estclient.Client) error { _, err := c.SimpleEnroll(ctx, csr); return err }, want: "no certificate for the requested key"},
		{name: "too large", status: 200, header: map[string]string{"Content-Type": "application/pkcs7-mime"}, body: strings.Repeat("QUFB", 300<<10),
			call: caCerts, want: "larger than"},
		{name: "pending", status: 202, header: map[string]string{"Retry-After": "60"},
			call: func(c *estclient.Client) error { _, err := c.SimpleEnroll(ctx, csr); return err }, want: "enrollment is pending", pending: true},
		{name: "HTML error page", status: 502, header: map[string]string{"Content-Type": "text/html"}, body: "<h1>Bad Gateway</h1>",
			call: caCerts, want: "502 Bad Gateway: Bad Gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				for k, v := range tc.header {
					w.Header().Set(k, v)
				}
				w.WriteHeader(tc.status)
				_, _ = w.Write([]byte(tc.body))
			}))
			defer srv.Close()
			err := tc.call(client(srv, ""))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.pending {
				var e *estclient.Error
				if !errors.As(err, &e) || e.StatusCode != 202 || e.RetryAfter != time.Minute || steward.ErrorCode(err) != steward.CodeUnavailable {
					t.Errorf("pending: %#v", e)
				}
			}
		})
	}

	t.Run("no CSR attributes", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
		defer srv.Close()
		attrs, err := client(srv, "").CSRAttrs(ctx)
		if err != nil || attrs != nil {
			t.Fatalf("CSRAttrs = %x, %v; want nothing", attrs, err)
		}
	})
}

func caCerts(c *estclient.Client) error {
	_, err := c.CACerts(context.Background())
	return err
}

func selfSigned(t *testing.T, key *ecdsa.PrivateKey) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: bigOne, Subject: pkix.Name{CommonName: "other"}, NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestImportsNoServerCode keeps the agent's dependency small: estclient
// itself may import only the standard library, the root package, the
// PKCS#7 library and the shared EST wire format, which in turn is held to
// the same list.
func TestImportsNoServerCode(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	wire, err := filepath.Glob(filepath.Join("..", "internal", "estwire", "*.go"))
	if err != nil || len(wire) == 0 {
		t.Fatalf("estwire sources: %v, %v", wire, err)
	}
	files = append(files, wire...)
	allowed := map[string]bool{
		"github.com/steward-iot/steward":                  true,
		"github.com/smallstep/pkcs7":                      true,
		"github.com/steward-iot/steward/internal/estwire": true,
	}
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				t.Fatal(err)
			}
			std := !strings.Contains(strings.SplitN(path, "/", 2)[0], ".")
			if !std && !allowed[path] {
				t.Errorf("%s imports %s", name, path)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}

var bigOne = big.NewInt(1)
