package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"net/http"
	"os"
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
