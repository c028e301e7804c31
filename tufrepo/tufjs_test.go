package tufrepo_test

import (
	"bytes"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward/internal/updatetest"
	"github.com/steward-iot/steward/tufrepo"
)

// TestTufJS checks the published repository with tuf-js, an independent
// TUF client (testdata/tufjs, pinned in its package-lock.json): from the
// first root it follows a root rotation that also replaced the targets
// key, verifies timestamp, snapshot and targets, downloads the
// hash-prefixed target over mTLS and checks it; and it refuses tampered
// content. It needs node and `npm ci` in testdata/tufjs, which .ci/run
// does; elsewhere it skips, saying so.
func TestTufJS(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the tuf-js check needs it (.ci/run installs it)")
	}
	dir, err := filepath.Abs(filepath.Join("testdata", "tufjs"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "tuf-js", "package.json")); err != nil {
		t.Skip("tuf-js is not installed: run `npm ci` in tufrepo/testdata/tufjs (.ci/run does)")
	}

	env := updatetest.New(t)
	env.Device("d-dev1")
	firstRoot, err := env.TUF.Root(t.Context(), updatetest.Tenant)
	if err != nil {
		t.Fatal(err)
	}
	content := make([]byte, 1<<20+3)
	_, _ = rand.Read(content)
	art := env.Upload("gw-firmware", "1.5.0", content)
	if err := env.Store.GrantArtifact(t.Context(), updatetest.Tenant, "d-dev1", art.ID); err != nil {
		t.Fatal(err)
	}
	if err := env.TUF.RotateRoot(t.Context(), updatetest.Tenant, tufrepo.TargetsKey{Server: true}); err != nil {
		t.Fatal(err)
	}

	work := t.TempDir()
	cert, key := env.Credentials("d-dev1")
	files := map[string][]byte{"root.json": firstRoot, "cert.pem": cert, "key.pem": key, "ca.pem": env.ServerCAPEM()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(work, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	verify := func(target, out string) (string, error) {
		cmd := exec.CommandContext(t.Context(), node, filepath.Join(dir, "verify.mjs"), env.URL+"/tuf/"+updatetest.Tenant, target,
			filepath.Join(work, "root.json"), filepath.Join(work, "cert.pem"), filepath.Join(work, "key.pem"), filepath.Join(work, "ca.pem"), out)
		cmd.Dir = dir
		b, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(b)), err
	}
	out, err := verify(art.TargetPath(), filepath.Join(work, "run1"))
	if err != nil {
		t.Fatalf("tuf-js refused the repository: %v\n%s", err, out)
	}
	lines := strings.Split(out, "\n")
	got, err := os.ReadFile(lines[len(lines)-1])
	if err != nil {
		t.Fatalf("tuf-js output %q: %v", out, err)
	}
	if !bytes.Equal(got, content) {
		t.Fatal("tuf-js downloaded other bytes than uploaded")
	}

	// The same client refuses content changed on the server's disk.
	bad := bytes.Clone(content)
	bad[0] ^= 1
	if err := os.WriteFile(env.BlobPath(art.SHA256), bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(art.TargetPath(), filepath.Join(work, "run2")); err == nil {
		t.Fatalf("tuf-js accepted tampered content: %s", out)
	} else {
		t.Logf("tuf-js refused tampered content: %s", out)
	}
}
