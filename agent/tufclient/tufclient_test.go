package tufclient_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/tufclient"
	"github.com/steward-iot/steward/internal/updatetest"
	"github.com/steward-iot/steward/tufrepo"
)

// fixture is a device plane with one device that was granted one artifact,
// and the device's TUF client, bootstrapped.
type fixture struct {
	env     *updatetest.Env
	client  *tufclient.Client
	dir     string
	art     steward.Artifact
	content []byte
}

func payload(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	env := updatetest.New(t)
	hc := env.Device("d-dev1")
	content := payload(3<<20 + 17)
	art := env.Upload("gw-firmware", "1.5.0", content)
	if err := env.Store.GrantArtifact(t.Context(), updatetest.Tenant, "d-dev1", art.ID); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := tufclient.New(tufclient.Config{BaseURL: env.URL, TenantID: updatetest.Tenant, HTTPClient: hc, Dir: dir, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &fixture{env: env, client: c, dir: dir, art: art, content: content}
}

func (f *fixture) target() agent.UpdateTarget {
	return agent.UpdateTarget{Name: f.art.Name, Version: f.art.Version, SHA256: f.art.SHA256, Length: f.art.Size, TUFPath: f.art.TargetPath()}
}

// wantVerified fetches the fixture's target and checks the bytes.
func (f *fixture) wantVerified(t *testing.T) {
	t.Helper()
	p, err := f.client.Fetch(t.Context(), f.target(), nil)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, f.content) {
		t.Fatal("the verified file is not the uploaded content")
	}
}

// wantRefused fetches and expects a final verification failure and no
// file kept anywhere.
func (f *fixture) wantRefused(t *testing.T, target agent.UpdateTarget, why string) {
	t.Helper()
	before, _ := os.ReadDir(filepath.Join(f.dir, "targets"))
	p, err := f.client.Fetch(t.Context(), target, nil)
	if err == nil {
		t.Fatalf("Fetch accepted %s (%s)", why, p)
	}
	if !errors.Is(err, agent.ErrNotTrusted) {
		t.Fatalf("Fetch of %s failed with %v, want a verification failure (agent.ErrNotTrusted)", why, err)
	}
	t.Logf("refused %s: %v", why, err)
	if partial, _ := os.ReadDir(filepath.Join(f.dir, "partial")); len(partial) != 0 {
		t.Fatalf("after refusing %s, partial/ holds %v", why, partial)
	}
	if after, _ := os.ReadDir(filepath.Join(f.dir, "targets")); len(after) != len(before) {
		t.Fatalf("after refusing %s, targets/ holds %v (before: %v)", why, after, before)
	}
}

func TestFetchVerified(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var last int64
	p, err := f.client.Fetch(t.Context(), f.target(), func(done, total int64) {
		if total != f.art.Size || done < last {
			t.Errorf("progress %d/%d after %d", done, total, last)
		}
		last = done
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, f.content) || last != f.art.Size {
		t.Fatalf("got %d bytes (progress %d), want the %d uploaded", len(got), last, len(f.content))
	}
}

func TestTamperedArtifact(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	// The stored content changes under the same digest (a disk or a
	// storage bucket tampered with): same length, one byte different.
	bad := bytes.Clone(f.content)
	bad[len(bad)/2] ^= 0xff
	if err := os.WriteFile(f.env.BlobPath(f.art.SHA256), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, f.target(), "a tampered artifact")
}

func TestWrongLength(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	longer := append(bytes.Clone(f.content), "extra"...)
	if err := os.WriteFile(f.env.BlobPath(f.art.SHA256), longer, 0o600); err != nil {
		t.Fatal(err)
	}
	f.wantRefused(t, f.target(), "content longer than signed")
}

func TestJobDisagreesWithSignedTarget(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	cases := map[string]func(*agent.UpdateTarget){
		"wrong hash":       func(x *agent.UpdateTarget) { x.SHA256 = strings.Repeat("0", 64) },
		"wrong length":     func(x *agent.UpdateTarget) { x.Length++ },
		"unsigned target":  func(x *agent.UpdateTarget) { x.TUFPath = "gw-firmware/9.9.9" },
		"no target at all": func(x *agent.UpdateTarget) { x.TUFPath = "" },
	}
	for name, change := range cases {
		target := f.target()
		change(&target)
		f.wantRefused(t, target, name)
	}
	f.wantVerified(t)
}

func TestExpiredTimestamp(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.wantVerified(t)
	// Two days on, nobody re-signed the one-day timestamp: a frozen
	// server (or an attacker replaying it) is refused.
	f.env.Clock.Add(48 * time.Hour)
	f.wantRefused(t, f.target(), "an expired timestamp")
	// The re-signing job brings it back.
	if err := f.env.TUF.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.wantVerified(t)
}

func TestReplayedOlderMetadata(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.wantVerified(t)
	old, err := f.env.Store.GetTUFMetadata(t.Context(), updatetest.Tenant, steward.TUFTimestamp, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A new release moves the repository on, and the device sees it.
	f.env.Upload("gw-firmware", "1.6.0", payload(1000))
	f.wantVerified(t)
	// A man in the middle (or a rolled-back server) now serves the older,
	// still unexpired timestamp.
	f.env.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasSuffix(r.URL.Path, "/timestamp.json") {
			_, _ = w.Write(old.Body)
			return true
		}
		return false
	})
	f.wantRefused(t, f.target(), "a replayed older timestamp")
}

func TestRevokedTargetsKey(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.wantVerified(t)
	oldKeyID := f.env.Root().Signed.Roles[metadata.TARGETS].KeyIDs[0]
	oldKey := f.env.ServerKey(oldKeyID)

	// Move the targets role to a release key (offline mode) and publish
	// targets signed by it; the device follows the root rotation.
	pub, release, _ := ed25519.GenerateKey(rand.Reader)
	if err := f.env.TUF.RotateRoot(t.Context(), updatetest.Tenant, tufrepo.TargetsKey{Release: pub}); err != nil {
		t.Fatal(err)
	}
	cur, err := f.env.TUF.Targets(t.Context(), updatetest.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	signed, err := tufrepo.SignTargets(cur, nil, nil, release, f.env.Clock.Now().Add(30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.env.TUF.PublishTargets(t.Context(), updatetest.Tenant, signed); err != nil {
		t.Fatal(err)
	}
	f.wantVerified(t)

	// Whoever kept the revoked server targets key signs targets pointing
	// the same path at other content, and a compromised server publishes
	// them with valid snapshot and timestamp signatures.
	evil := payload(int(f.art.Size))
	evilArt := f.art
	evilArt.SHA256 = sha(evil)
	tf, err := tufrepo.TargetFile(evilArt)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := metadata.Targets().FromBytes(signed)
	if err != nil {
		t.Fatal(err)
	}
	bad.Signed.Targets[tf.Path] = tf
	bad.Signed.Version++
	bad.ClearSignatures()
	signWith(t, bad, oldKey)
	f.env.CompromisedPublish(bad)
	target := f.target()
	target.SHA256 = evilArt.SHA256
	f.wantRefused(t, target, "targets signed by a revoked key")
}

func TestRootRotation(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.wantVerified(t)
	for range 2 {
		if err := f.env.TUF.RotateRoot(t.Context(), updatetest.Tenant, tufrepo.TargetsKey{Server: true}); err != nil {
			t.Fatal(err)
		}
	}
	f.wantVerified(t)
	b, err := os.ReadFile(filepath.Join(f.dir, "metadata", "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	root, err := metadata.Root().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	if root.Signed.Version != 3 {
		t.Fatalf("the device trusts root version %d, want 3", root.Signed.Version)
	}
}

func TestNotGranted(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	if err := f.env.Store.RevokeArtifactGrant(t.Context(), updatetest.Tenant, "d-dev1", f.art.ID); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.Fetch(t.Context(), f.target(), nil)
	if err == nil || errors.Is(err, agent.ErrNotTrusted) || !strings.Contains(err.Error(), "404") {
		t.Fatalf("Fetch without a grant = %v, want a transient 404", err)
	}
}

// TestResumeAfterCut cuts the first download part way; the next attempt
// asks for the rest with Range and the result is the uploaded bytes.
func TestResumeAfterCut(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	var (
		mu     sync.Mutex
		ranges []string
		cut    bool
	)
	f.env.SetIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasPrefix(r.URL.Path, "/artifacts/") {
			return false
		}
		mu.Lock()
		ranges = append(ranges, r.Header.Get("Range"))
		first := !cut
		cut = true
		mu.Unlock()
		if !first {
			return false
		}
		// Send the headers and the first megabyte, then drop the connection.
		cw := &cutWriter{ResponseWriter: w, left: 1 << 20}
		f.env.Mux.ServeHTTP(cw, r)
		return true
	})
	_, err := f.client.Fetch(t.Context(), f.target(), nil)
	if err == nil || errors.Is(err, agent.ErrNotTrusted) {
		t.Fatalf("cut download = %v, want a transient error", err)
	}
	part, err := os.Stat(filepath.Join(f.dir, "partial", f.art.SHA256))
	if err != nil || part.Size() == 0 || part.Size() >= f.art.Size {
		t.Fatalf("partial file after the cut: %v %v", part, err)
	}
	f.wantVerified(t)
	mu.Lock()
	defer mu.Unlock()
	want := "bytes=" + itoa(part.Size()) + "-"
	if len(ranges) != 2 || ranges[0] != "" || ranges[1] != want {
		t.Fatalf("requests' Range headers = %q, want [\"\" %q]", ranges, want)
	}
}

// cutWriter passes through left bytes of the body, then aborts the
// connection as a dropped link would.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		_, _ = c.ResponseWriter.Write(p[:c.left])
		c.left = 0
		if fl, ok := c.ResponseWriter.(http.Flusher); ok {
			fl.Flush()
		}
		panic(http.ErrAbortHandler)
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func TestBootstrapNeedsDeviceCertificate(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	c, err := tufclient.New(tufclient.Config{BaseURL: env.URL, TenantID: updatetest.Tenant, HTTPClient: env.Anonymous(), Dir: t.TempDir(), Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(t.Context()); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("Bootstrap without a certificate = %v, want 401", err)
	}
	if c.Trusted() {
		t.Fatal("a failed bootstrap left a trusted root")
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func signWith(t *testing.T, m *metadata.Metadata[metadata.TargetsType], key ed25519.PrivateKey) {
	t.Helper()
	s, err := signature.LoadED25519Signer(key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Sign(s); err != nil {
		t.Fatal(err)
	}
}
