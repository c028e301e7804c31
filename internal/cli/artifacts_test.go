package cli_test

import (
	"bytes"
	"crypto/rand"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/internal/updatetest"
)

// TestArtifactCommands runs the release engineer's whole offline flow
// through the CLI: upload, make a release key, move the targets role to
// it, sign on this machine, and see that a server-only publish no longer
// happens and a wrong key is refused.
func TestArtifactCommands(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	token, _, err := api.CreateToken(t.Context(), env.Store, updatetest.Tenant, "admin", steward.RoleSystem, env.Clock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(api.Config{Store: env.Store, Artifacts: env.Artifacts, TUF: env.TUF, Clock: env.Clock}))
	t.Cleanup(srv.Close)
	r := newRunner(srv.URL, token)
	dir := t.TempDir()
	file := func(name string, n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	targets := func() map[string]*metadata.TargetFiles {
		b, err := env.TUF.Targets(t.Context(), updatetest.Tenant)
		if err != nil {
			t.Fatal(err)
		}
		m, err := metadata.Targets().FromBytes(b)
		if err != nil {
			t.Fatal(err)
		}
		return m.Signed.Targets
	}

	var a1 steward.Artifact
	r.okJSON(t, &a1, "artifacts", "upload", file("fw1.bin", 3<<20), "--name", "gw-firmware", "--version", "1.0.0", "--type", "firmware",
		"--model", "gw-100", "--chunk-size", "1048576")
	if _, ok := targets()["gw-firmware/1.0.0"]; !ok || a1.Size != 3<<20 {
		t.Fatalf("online upload not published: %+v", a1)
	}
	if out := r.ok(t, "artifacts", "list"); !strings.Contains(out, a1.ID) || !strings.Contains(out, "gw-firmware") {
		t.Fatalf("list:\n%s", out)
	}
	if out := r.ok(t, "artifacts", "get", a1.ID); !strings.Contains(out, "gw-firmware/1.0.0") {
		t.Fatalf("get:\n%s", out)
	}

	key := filepath.Join(dir, "release.key")
	pub := r.ok(t, "artifacts", "keygen", "--out", key)
	if !strings.HasPrefix(pub, "-----BEGIN PUBLIC KEY-----") {
		t.Fatalf("keygen printed %q", pub)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("release key file: %v %v", st, err)
	}
	if res := r.run(t, "artifacts", "keygen", "--out", key); res.code != 2 {
		t.Fatalf("keygen over an existing key: exit %d", res.code)
	}
	pubFile := filepath.Join(dir, "release.pub")
	if err := os.WriteFile(pubFile, []byte(pub), 0o644); err != nil {
		t.Fatal(err)
	}
	if out := r.ok(t, "artifacts", "rotate-root", "--release-key", pubFile); !strings.Contains(out, `"version":2`) {
		t.Fatalf("rotate-root printed %.200s", out)
	}
	r.ok(t, "artifacts", "sign", "--key", key)

	// Offline: an upload is not published by the server.
	out := r.ok(t, "artifacts", "upload", file("fw2.bin", 1000), "--name", "gw-firmware", "--version", "2.0.0", "--type", "firmware", "--single")
	if !strings.Contains(out, "Not published yet") {
		t.Fatalf("offline upload:\n%s", out)
	}
	if _, ok := targets()["gw-firmware/2.0.0"]; ok {
		t.Fatal("the server published on its own in offline mode")
	}
	a2, err := env.Store.ArtifactByTarget(t.Context(), updatetest.Tenant, "gw-firmware", "2.0.0")
	if err != nil {
		t.Fatal(err)
	}

	// Another key is refused and changes nothing.
	r.ok(t, "artifacts", "keygen", "--out", filepath.Join(dir, "other.key"))
	res := r.run(t, "artifacts", "sign", "--key", filepath.Join(dir, "other.key"), a2.ID)
	if res.code != 1 || !strings.Contains(res.stderr, "not signed by the targets key") {
		t.Fatalf("sign with another key: exit %d, %s", res.code, res.stderr)
	}
	if _, ok := targets()["gw-firmware/2.0.0"]; ok {
		t.Fatal("targets signed by another key were published")
	}
	// --out signs without publishing.
	signed := filepath.Join(dir, "targets.json")
	r.ok(t, "artifacts", "sign", "--key", key, "--out", signed, a2.ID)
	if b, err := os.ReadFile(signed); err != nil || !bytes.Contains(b, []byte("gw-firmware/2.0.0")) {
		t.Fatalf("signed file: %v", err)
	}
	if _, ok := targets()["gw-firmware/2.0.0"]; ok {
		t.Fatal("--out published")
	}
	r.ok(t, "artifacts", "sign", "--key", key, a2.ID, "--remove", "gw-firmware/1.0.0")
	ts := targets()
	if _, ok := ts["gw-firmware/2.0.0"]; !ok {
		t.Fatal("release-signed target not published")
	}
	if _, ok := ts["gw-firmware/1.0.0"]; ok {
		t.Fatal("--remove kept the target")
	}
	if root := r.ok(t, "artifacts", "root"); !strings.Contains(root, `"_type":"root"`) {
		t.Fatalf("root: %.100s", root)
	}
	r.ok(t, "artifacts", "delete", a1.ID)
	if res := r.run(t, "artifacts", "get", a1.ID); res.code != 1 {
		t.Fatalf("get after delete: exit %d", res.code)
	}
}
