package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/tufclient"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestArtifactUpdateEndToEnd: an artifact uploaded through the API in
// chunks is published as a TUF target; an enrolled device takes the root
// from the device plane, is refused the content until a deployment grants
// it, then verifies and downloads it.
func TestArtifactUpdateEndToEnd(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName

	content := make([]byte, 3<<20+11)
	_, _ = rand.Read(content)
	a, err := n.admin.UploadResumable(ctx, client.ArtifactMeta{Name: "gw-firmware", Version: "1.5.0", Type: steward.ArtifactFirmware},
		bytes.NewReader(content), int64(len(content)), "", 1<<20, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Published || a.Size != int64(len(content)) {
		t.Fatalf("uploaded %+v", a)
	}

	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n.pool, Certificates: []tls.Certificate{op}}}}
	dir := t.TempDir()
	c, err := tufclient.New(tufclient.Config{BaseURL: n.DeviceURL(), TenantID: steward.DefaultTenant, HTTPClient: hc, Dir: dir, Clock: n.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Bootstrap(ctx); err != nil {
		t.Fatal(err)
	}
	target := agent.UpdateTarget{Name: a.Name, Version: a.Version, SHA256: a.SHA256, Length: a.Size, TUFPath: a.TargetPath()}
	if _, err := c.Fetch(ctx, target, nil); err == nil || errors.Is(err, agent.ErrNotTrusted) {
		t.Fatalf("fetch before the grant = %v, want a transient refusal", err)
	}
	if err := n.Store.GrantArtifact(ctx, steward.DefaultTenant, id, a.ID); err != nil {
		t.Fatal(err)
	}
	p, err := c.Fetch(ctx, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(p)
	if !bytes.Equal(got, content) {
		t.Fatal("the device got other bytes than were uploaded")
	}
}

// TestTamperedUpdateRefusedAndReported: the artifact's content changes on
// the server's disk after it was signed. A real agent told to install it
// downloads it, refuses it (its SHA-256 is not the signed one), installs
// nothing, and reports the failure, which the deployment records.
func TestTamperedUpdateRefusedAndReported(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	content := make([]byte, 256<<10)
	_, _ = rand.Read(content)
	art, err := n.admin.UploadArtifact(ctx, client.ArtifactMeta{Name: "gw-firmware", Version: "1.5.0", Type: steward.ArtifactFirmware},
		bytes.NewReader(content), int64(len(content)), "")
	if err != nil {
		t.Fatal(err)
	}
	bad := bytes.Clone(content)
	bad[100] ^= 0xff
	blob := filepath.Join(n.cfg.DataDir, "blobs", "sha256", art.SHA256[:2], art.SHA256)
	if err := os.WriteFile(blob, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	dev := n.runUpdatingAgent(t, mfr.Factory(t, "SN-TAMPER-1"), true)
	n.waitState(t, dev.a, steward.StateActive)
	dep, err := n.admin.CreateDeployment(ctx, client.DeploymentRequest{Name: "fw 1.5.0", DeploymentSpec: steward.DeploymentSpec{
		Target: steward.DeploymentTarget{Kind: steward.KindArtifact, ArtifactID: art.ID, Name: art.Name, Version: art.Version,
			SHA256: art.SHA256, Length: art.Size, TUFPath: art.TargetPath()},
		Query:  `model = "gw-100"`,
		Phases: []steward.Phase{{Name: "all", Percent: 100, SuccessThreshold: 1}}}})
	if err != nil {
		t.Fatal(err)
	}
	var dd client.DeploymentDevice
	eventually(t, "the device to report the refused update", func() bool {
		dd, err = n.admin.GetDeploymentDevice(ctx, dep.ID, dev.a.DeviceID())
		return err == nil && dd.State == steward.UpdateFailed
	})
	if !strings.Contains(dd.Reason, "sha256") && !strings.Contains(dd.Reason, "SHA-256") {
		t.Errorf("reason %q does not say what failed", dd.Reason)
	}
	if v := dev.slots.ActiveVersion(); v != "1.1.0" {
		t.Fatalf("active version %q after a refused update", v)
	}
	t.Logf("reported: %s", dd.Reason)
}
