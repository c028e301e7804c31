package pki

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestServerCertificate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a := e.authority(t)
	hosts := []string{"Steward.Example.COM.", "10.1.2.3", "[fd00::1]", "*.dev.example.com", "localhost", ""}
	c, err := a.ServerCertificate(ctx, hosts)
	if err != nil {
		t.Fatal(err)
	}
	leaf := c.Leaf
	if leaf == nil || len(c.Certificate) != 1 || !bytes.Equal(c.Certificate[0], leaf.Raw) {
		t.Fatal("tls.Certificate does not hold its leaf")
	}
	wantNames := []string{"*.dev.example.com", "localhost", "steward.example.com"}
	if h, err := os.Hostname(); err == nil {
		if n, ok := normalizeHost(h); ok {
			wantNames = append(wantNames, n)
		}
	}
	slices.Sort(wantNames)
	wantNames = slices.Compact(wantNames)
	if !slices.Equal(leaf.DNSNames, wantNames) {
		t.Errorf("DNS names = %v, want %v", leaf.DNSNames, wantNames)
	}
	var ips []string
	for _, ip := range leaf.IPAddresses {
		ips = append(ips, ip.String())
	}
	slices.Sort(ips)
	if want := []string{"10.1.2.3", "127.0.0.1", "::1", "fd00::1"}; !slices.Equal(ips, want) {
		t.Errorf("IP addresses = %v, want %v", ips, want)
	}
	if leaf.IsCA || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("usage: CA=%v ext=%v", leaf.IsCA, leaf.ExtKeyUsage)
	}
	if got := leaf.NotAfter.Sub(e.clock.Now()); got != DefaultServerCertValidity {
		t.Errorf("validity %s", got)
	}
	roots := x509.NewCertPool()
	roots.AddCert(a.ServerCA())
	for _, name := range []string{"localhost", "steward.example.com", "api.dev.example.com", "127.0.0.1", "::1", "10.1.2.3"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: e.clock.Now()}); err != nil {
			t.Errorf("does not verify for %s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "other.example.com", Roots: roots, CurrentTime: e.clock.Now()}); err == nil {
		t.Error("verifies for a host it does not name")
	}

	// Same hosts, in another order and spelling: the same certificate.
	same, err := a.ServerCertificate(ctx, []string{"fd00:0::1", "*.DEV.example.com", "10.1.2.3", "steward.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(same.Leaf.Raw, leaf.Raw) {
		t.Error("the same host set got another certificate")
	}
	// A restarted node reads it from the store.
	restarted, err := e.authority(t).ServerCertificate(ctx, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(restarted.Leaf.Raw, leaf.Raw) {
		t.Error("a restart issued another certificate")
	}
	// Another host set: another certificate; the first one stays.
	other, err := a.ServerCertificate(ctx, []string{"mqtt.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.Leaf.Raw, leaf.Raw) || !slices.Contains(other.Leaf.DNSNames, "mqtt.example.com") || slices.Contains(other.Leaf.DNSNames, "steward.example.com") {
		t.Errorf("changed host set: DNS names %v", other.Leaf.DNSNames)
	}
	back, err := a.ServerCertificate(ctx, hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back.Leaf.Raw, leaf.Raw) {
		t.Error("returning to the first host set issued yet another certificate")
	}
}

func TestServerCertificateRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t)
	a := e.authority(t, func(c *Config) { c.ServerCertValidity = 30 * 24 * time.Hour })
	first, err := a.ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two thirds of its life minus a little: still the same one.
	e.clock.Advance(20*24*time.Hour - 2*time.Hour)
	same, err := a.ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(same.Leaf.Raw, first.Leaf.Raw) {
		t.Fatal("renewed with more than a third of its life left")
	}
	// Less than a third left: a new one, which a restarted node agrees on.
	e.clock.Advance(3 * time.Hour)
	renewed, err := a.ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(renewed.Leaf.Raw, first.Leaf.Raw) {
		t.Fatal("not renewed with less than a third of its life left")
	}
	if !renewed.Leaf.NotBefore.Equal(e.clock.Now().Add(-time.Minute)) {
		t.Errorf("renewed NotBefore = %s", renewed.Leaf.NotBefore)
	}
	cold, err := e.authority(t).ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cold.Leaf.Raw, renewed.Leaf.Raw) {
		t.Error("a restarted node picked another certificate than the renewed one")
	}
	// Long after: the generations are walked to the end and a new one made.
	e.clock.Advance(200 * 24 * time.Hour)
	later, err := e.authority(t).ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewDue(later.Leaf, e.clock.Now()) || bytes.Equal(later.Leaf.Raw, renewed.Leaf.Raw) {
		t.Error("no fresh certificate after a long pause")
	}
}

func TestServerCertificateRefusesBadHosts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.authority(t)
	before := e.writes()
	for _, h := range []string{"example.com:8443", "has space.example.com", "under_score.example.com", "-lead.example.com", "a..b", "*.com", strings.Repeat("a", 64) + ".com", "http://example.com"} {
		t.Run(h, func(t *testing.T) {
			_, err := a.ServerCertificate(context.Background(), []string{"ok.example.com", h})
			wantCode(t, err, steward.CodeInvalid, "neither an IP address nor a DNS name")
		})
	}
	if e.writes() != before {
		t.Error("refused host sets wrote secrets")
	}
}

// TestServerCertificateTLS serves TLS on loopback with the certificate and
// connects as a device would, trusting only the server CA.
func TestServerCertificateTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.clock.now = time.Now().UTC() // the TLS stack checks against the wall clock
	a := e.authority(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: a.GetCertificateFunc(nil), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, "hello")
			c.Close()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(a.ServerCA())
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, name := range []string{"127.0.0.1", "localhost"} {
		conn, err := tls.Dial("tcp", net.JoinHostPort(name, port), &tls.Config{RootCAs: roots, ServerName: name})
		if err != nil {
			if name == "localhost" && strings.Contains(err.Error(), "no such host") {
				continue
			}
			t.Fatalf("dial %s: %v", name, err)
		}
		b, err := io.ReadAll(conn)
		conn.Close()
		if err != nil || string(b) != "hello" {
			t.Fatalf("read %q, %v", b, err)
		}
	}
	// Without the server CA the same server is not trusted.
	_, err = tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "127.0.0.1"})
	if err == nil {
		t.Error("a client that does not trust the server CA connected")
	}
}
