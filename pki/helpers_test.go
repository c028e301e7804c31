package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlite"
)

// testClock is a steward.Clock the test moves by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// hookStore wraps a store to count secret creations and to run a hook
// when a secret is not found, so that a test can make another node win a
// creation race at exactly the wrong moment.
type hookStore struct {
	steward.Store
	mu      sync.Mutex
	creates map[string]int
	onMiss  func(name string)
}

func (h *hookStore) CreateSecret(ctx context.Context, name string, value []byte) error {
	err := h.Store.CreateSecret(ctx, name, value)
	if err == nil {
		h.mu.Lock()
		h.creates[name]++
		h.mu.Unlock()
	}
	return err
}

func (h *hookStore) GetSecret(ctx context.Context, name string) ([]byte, error) {
	v, err := h.Store.GetSecret(ctx, name)
	if steward.IsNotFound(err) && h.onMiss != nil {
		h.onMiss(name)
	}
	return v, err
}

func (h *hookStore) created(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.creates[name]
}

// env is one installation: a SQLite database with some tenants, the master
// key to open its secrets and a clock. Nodes started on it share the
// database file, each through its own connections.
type env struct {
	path  string
	store steward.Store // the first connection, wrapped to count writes
	hooks *hookStore
	key   []byte
	clock *testClock
}

func newEnv(t testing.TB, tenants ...string) *env {
	t.Helper()
	e := &env{path: filepath.Join(t.TempDir(), "steward.db"), key: randomKey(t), clock: newTestClock()}
	e.hooks = &hookStore{Store: e.open(t), creates: map[string]int{}}
	e.store = e.hooks
	for _, id := range tenants {
		if err := e.store.CreateTenant(context.Background(), steward.Tenant{ID: id, Name: id, CreatedAt: e.clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

// open opens the env's database through new connections, as another node
// (or a restarted one) would.
func (e *env) open(t testing.TB) steward.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), e.path, testLogger(t))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// writes counts the secrets created through e.store.
func (e *env) writes() int {
	e.hooks.mu.Lock()
	defer e.hooks.mu.Unlock()
	n := 0
	for _, c := range e.hooks.creates {
		n += c
	}
	return n
}

// authority starts a node over the env's store (a restart when called again).
func (e *env) authority(t testing.TB, mod ...func(*Config)) *Authority {
	t.Helper()
	cfg := Config{Store: e.store, MasterKey: e.key, Clock: e.clock, Logger: testLogger(t)}
	for _, m := range mod {
		m(&cfg)
	}
	a, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return a
}

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func randomKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, MasterKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

// newCSR makes a certificate request signed by a fresh key of the given
// kind and returns it parsed.
func newCSR(t testing.TB, key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "ignored"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func p256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// wantCode fails the test unless err carries code and its caller-safe
// message contains substr.
func wantCode(t testing.TB, err error, code steward.Code, substr string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s (%q)", code, substr)
	}
	if got := steward.ErrorCode(err); got != code {
		t.Fatalf("error code = %s, want %s (err: %v)", got, code, err)
	}
	if msg := steward.ErrorMessage(err); code != steward.CodeInternal && !strings.Contains(msg, substr) {
		t.Fatalf("message %q does not contain %q", msg, substr)
	}
	if code == steward.CodeInternal && !strings.Contains(err.Error(), substr) {
		t.Fatalf("error %q does not contain %q", err.Error(), substr)
	}
}
