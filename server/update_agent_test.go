package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/abslots"
	"github.com/steward-iot/steward/agent/tufclient"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// updatingAgent is the real device agent with A/B slots and the TUF
// client, restarted as a device would be after an install switches slots.
type updatingAgent struct {
	a     *agent.Agent
	slots *abslots.Slots
	dir   string
}

func (n *node) runUpdatingAgent(t *testing.T, factory tls.Certificate, healthy bool) *updatingAgent {
	t.Helper()
	dir := t.TempDir()
	slots, err := abslots.Open(filepath.Join(dir, "slots"), abslots.Options{InitialVersion: "1.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	var health func(context.Context) error
	if !healthy {
		health = func(context.Context) error { return errors.New("the service did not come up") }
	}
	u := &updatingAgent{slots: slots, dir: dir}
	restarts := make(chan struct{}, 4)
	start := func() (*agent.Agent, context.CancelFunc, chan struct{}) {
		fetcher := &tufclient.AgentFetcher{BaseURL: n.DeviceURL(), Dir: filepath.Join(dir, "tuf")}
		a, err := agent.New(agent.Config{
			ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool, FactoryCert: factory, StateDir: filepath.Join(dir, "state"),
			Model: "gw-100", Firmware: slots.ActiveVersion(), Hardware: "revB",
			Attributes:        func() map[string]any { return map[string]any{"os": "test"} },
			Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.25} },
			TelemetryInterval: time.Second, BackoffMin: 50 * time.Millisecond, BackoffMax: time.Second,
			Installer: slots, Fetcher: fetcher, HealthCheck: health,
			Restart: func() error { restarts <- struct{}{}; return nil },
			Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
		})
		if err != nil {
			t.Fatal(err)
		}
		fetcher.Agent = a
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = a.Run(ctx) }()
		return a, cancel, done
	}
	a, cancel, done := start()
	u.a = a
	stop := make(chan struct{})
	finished := make(chan struct{})
	// The supervisor: each restart the agent asks for stops it and starts
	// a new one on the same state and slots.
	go func() {
		defer close(finished)
		for {
			select {
			case <-stop:
				cancel()
				<-done
				return
			case <-restarts:
				cancel()
				<-done
				_, cancel, done = start()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-finished })
	return u
}

// TestUpdateWithRealAgents: an artifact uploaded through the API reaches
// real agents through a deployment: they verify it with TUF, install it in
// their inactive slot, restart into it and check it; one whose health check
// fails rolls back by itself and says why; the deployment counts both.
func TestUpdateWithRealAgents(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)

	content := make([]byte, 1<<20+7)
	_, _ = rand.Read(content)
	art, err := n.admin.UploadResumable(ctx, client.ArtifactMeta{Name: "gw-firmware", Version: "1.5.0", Type: steward.ArtifactFirmware},
		bytes.NewReader(content), int64(len(content)), "", 256<<10, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	devs := []*updatingAgent{
		n.runUpdatingAgent(t, mfr.Factory(t, "SN-UPD-1"), true),
		n.runUpdatingAgent(t, mfr.Factory(t, "SN-UPD-2"), true),
		n.runUpdatingAgent(t, mfr.Factory(t, "SN-UPD-3"), false),
	}
	for _, d := range devs {
		n.waitState(t, d.a, steward.StateActive)
		// Enrolled, the agent takes its tenant's TUF root at once, before
		// any update asks for it.
		eventually(t, "the trusted TUF root", func() bool {
			_, err := os.Stat(filepath.Join(d.dir, "tuf", "metadata", "root.json"))
			return err == nil
		})
	}
	dep, err := n.admin.CreateDeployment(ctx, client.DeploymentRequest{Name: "fw 1.5.0", DeploymentSpec: steward.DeploymentSpec{
		Target: steward.DeploymentTarget{Kind: steward.KindArtifact, ArtifactID: art.ID, Name: art.Name, Version: art.Version,
			SHA256: art.SHA256, Length: art.Size, TUFPath: art.TargetPath()},
		Query:  `model = "gw-100"`,
		Phases: []steward.Phase{{Name: "all", Percent: 100, SuccessThreshold: 0.5}}}})
	if err != nil {
		t.Fatal(err)
	}
	var final client.Deployment
	eventually(t, "the deployment to complete", func() bool {
		final, err = n.admin.GetDeployment(ctx, dep.ID)
		return err == nil && final.State == steward.DeploymentCompleted
	})
	if pr := final.Progress; pr.Total != 3 || pr.States[steward.UpdateSucceeded] != 2 || pr.States[steward.UpdateRolledBack] != 1 {
		t.Fatalf("progress %+v", pr)
	}
	for i, d := range devs {
		id := d.a.DeviceID()
		dd, err := n.admin.GetDeploymentDevice(ctx, dep.ID, id)
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, h := range dd.History {
			steps = append(steps, string(h.State))
		}
		healthy := i < 2
		want, version := "notified,downloading,downloaded,installing,rebooting,verifying,succeeded", "1.5.0"
		if !healthy {
			want, version = "notified,downloading,downloaded,installing,rebooting,verifying,rolled_back", "1.1.0"
			if !strings.Contains(dd.Reason, "health check: the service did not come up") {
				t.Errorf("%s: reason %q", id, dd.Reason)
			}
		}
		if got := strings.Join(steps, ","); got != want {
			t.Errorf("%s: history %s, want %s", id, got, want)
		}
		if dd.FromVersion != "1.1.0" || d.slots.ActiveVersion() != version {
			t.Errorf("%s: from %q, active %q, want active %s", id, dd.FromVersion, d.slots.ActiveVersion(), version)
		}
		if healthy {
			got, err := os.ReadFile(filepath.Join(d.slots.ActiveDir(), art.Version))
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("%s: installed bytes differ from the upload (%d bytes, %v)", id, len(got), err)
			}
		}
	}
}
