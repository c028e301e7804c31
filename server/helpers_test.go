package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"net/http"
	"sync"
	"testing"
	"time"

	"encoding/json"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/estclient"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/notify"
	"io"
	"net/http/httptest"
)

// testClock is the wall clock, moved forward by hand when a test needs to
// be in the future.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().UTC().Add(c.offset)
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// node is a running server with an admin client.
type node struct {
	*Server
	admin *client.Client
	clock *testClock
	pool  *x509.CertPool // trusts the server's TLS certificate
}

type nodeOption func(*Config)

// startNode starts a node on loopback with ephemeral ports and a fresh
// SQLite data directory, or on PostgreSQL when storeURL is given.
func startNode(t *testing.T, opts ...nodeOption) *node {
	t.Helper()
	clock := &testClock{}
	cfg := Config{
		DataDir:    t.TempDir(),
		APIAddr:    "127.0.0.1:0",
		MQTTAddr:   "127.0.0.1:0",
		DeviceAddr: "127.0.0.1:0",
		Logger:     slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Clock:      clock,
	}
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Close() })
	if srv.AdminToken == "" {
		t.Fatal("first start printed no admin token")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.ServerCAPEM())
	return &node{Server: srv, admin: client.New(srv.APIURL(), srv.AdminToken, nil), clock: clock, pool: pool}
}

// testWriter sends server logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// est returns an EST client that presents cert (if any) and trusts the node.
func (n *node) est(cert *tls.Certificate) *estclient.Client {
	tc := &tls.Config{RootCAs: n.pool}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &estclient.Client{BaseURL: n.DeviceURL(), HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 20 * time.Second}}
}

// newCSR makes a key and a PKCS#10 request for it.
func newCSR(t *testing.T) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// enroll runs simpleenroll and returns the operational identity.
func (n *node) enroll(t *testing.T, factory tls.Certificate) tls.Certificate {
	t.Helper()
	key, csr := newCSR(t)
	cert, err := n.est(&factory).SimpleEnroll(context.Background(), csr)
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// registerGroup registers ca in an enrollment group of the admin's tenant.
func (n *node) registerGroup(t *testing.T, c *client.Client, name string, ca *testpki.CA, mutate func(*steward.EnrollmentGroup)) steward.EnrollmentGroup {
	t.Helper()
	g := steward.EnrollmentGroup{Name: name, CAPEM: ca.PEM(), Models: []string{"gw-100"}, Firmware: map[string][]string{"gw-100": {"1.0.0", "1.1.0"}}, Labels: map[string]string{"site": "plant-7"}}
	if mutate != nil {
		mutate(&g)
	}
	got, err := c.CreateEnrollmentGroup(context.Background(), g)
	if err != nil {
		t.Fatalf("create enrollment group: %v", err)
	}
	return got
}

// eventually polls cond until it holds or the time is up. The deadline
// only guards against a hang: it is generous because the whole suite's
// nodes share a small, busy machine.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deviceCount is how many devices the admin's tenant has.
func (n *node) deviceCount(t *testing.T) int {
	t.Helper()
	ds, err := n.admin.AllDevices(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return len(ds)
}

// webhook is a loopback receiver of notification deliveries that checks
// every request's signature (a bad one fails the test) and keeps the bodies.
type webhook struct {
	t      *testing.T
	secret string
	mu     sync.Mutex
	bodies [][]byte
}

// newWebhook starts a receiver and registers it as a webhook channel of the
// admin's tenant.
func (n *node) newWebhook(t *testing.T, name, secret string) (*webhook, client.Channel) {
	t.Helper()
	w := &webhook{t: t, secret: secret}
	srv := httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(srv.Close)
	ch, err := n.admin.CreateChannel(context.Background(), client.ChannelRequest{Name: name, Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: srv.URL, Secret: secret}})
	if err != nil {
		t.Fatal(err)
	}
	return w, ch
}

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if !notify.Verify(w.secret, r.Header.Get("X-Steward-Signature"), r.Header.Get("X-Steward-Timestamp"), body, time.Now(), time.Minute) {
		w.t.Errorf("webhook delivery with a bad signature: %s", body)
		http.Error(rw, "bad signature", http.StatusUnauthorized)
		return
	}
	w.mu.Lock()
	w.bodies = append(w.bodies, body)
	w.mu.Unlock()
	rw.WriteHeader(http.StatusNoContent)
}

// received returns the bodies delivered so far.
func (w *webhook) received() [][]byte {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([][]byte(nil), w.bodies...)
}

// notifications decodes the single-notification bodies delivered so far.
func (w *webhook) notifications() []steward.Notification {
	var out []steward.Notification
	for _, b := range w.received() {
		var n steward.Notification
		if json.Unmarshal(b, &n) == nil && n.AlertID != "" {
			out = append(out, n)
		}
	}
	return out
}
