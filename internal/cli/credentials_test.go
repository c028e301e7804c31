package cli_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/decommission"
	"github.com/steward-iot/steward/internal/cli"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/sqlite"
)

// TestDecommissionVerify checks a decommissioning certificate offline with
// the tenant's CA: a genuine one verifies and prints its record; a tampered
// one, or one checked against another CA, fails with exit 1.
func TestDecommissionVerify(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, id := range []string{"acme", "other"} {
		if err := store.CreateTenant(ctx, steward.Tenant{ID: id, Name: id, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	key := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(key)
	auth, err := pki.New(ctx, pki.Config{Store: store, MasterKey: key})
	if err != nil {
		t.Fatal(err)
	}
	content, _ := json.Marshal(decommission.CertificateContent{Type: decommission.ContentType, Record: steward.Decommission{
		ID: "dc-1", TenantID: "acme", DeviceID: "d-1", Reason: "end of life", Policy: steward.DataDelete, State: steward.DecommissionCompleted,
		Steps: []steward.DecommissionStep{{Name: "wipe", Outcome: steward.StepOK, Detail: "acknowledged", At: time.Now()}}}})
	der, err := auth.SignRecord(ctx, "acme", content)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert := write("dc.pem", pem.EncodeToMemory(&pem.Block{Type: decommission.PEMType, Bytes: der}))
	tampered := write("bad.pem", pem.EncodeToMemory(&pem.Block{Type: decommission.PEMType, Bytes: bytes.Replace(der, []byte("end of life"), []byte("end of lift"), 1)}))
	caPEM := func(tenant string) string {
		ca, err := auth.DeviceCA(ctx, tenant)
		if err != nil {
			t.Fatal(err)
		}
		return write(tenant+"-ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	}
	acme, other := caPEM("acme"), caPEM("other")

	r := newRunner("http://127.0.0.1:1", "unused") // --ca: the server is never asked
	out := r.ok(t, "devices", "decommission-verify", cert, "--ca", acme)
	if !strings.Contains(out, "signature OK") || !strings.Contains(out, "end of life") || !strings.Contains(out, "wipe") {
		t.Errorf("output:\n%s", out)
	}
	for name, args := range map[string][]string{
		"tampered":      {"devices", "decommission-verify", tampered, "--ca", acme},
		"another CA":    {"devices", "decommission-verify", cert, "--ca", other},
		"not a CMS":     {"devices", "decommission-verify", acme, "--ca", acme},
		"missing files": {"devices", "decommission-verify", filepath.Join(dir, "nope"), "--ca", acme},
	} {
		if res := r.run(t, args...); res.code == 0 {
			t.Errorf("%s: exit %d, stdout %q", name, res.code, res.stdout)
		}
	}
	if res := r.run(t, "devices", "decommission-verify", tampered, "--ca", acme); res.code != cli.ExitError || !strings.Contains(res.stderr, "NOT verify") {
		t.Errorf("tampered: %+v", res)
	}
	// Usage errors are found before anything is sent.
	for _, args := range [][]string{
		{"devices", "decommission", "d-1"},
		{"devices", "transfer", "d-1", "--owner", "x"},
		{"ca", "rotate"},
		{"enrollment-groups", "revoke", "eg-1"},
	} {
		if res := r.run(t, args...); res.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, res.code, cli.ExitUsage, res.stderr)
		}
	}
}
