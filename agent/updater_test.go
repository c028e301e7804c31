package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/abslots"
)

// fileFetcher downloads targets from a directory and checks their length
// and SHA-256 as a verified download must, so that the state machine meets
// real verification failures. The TUF client's own checks are tested with
// it.
type fileFetcher struct {
	dir string
	out string
}

func (f fileFetcher) Fetch(ctx context.Context, t UpdateTarget, progress func(done, total int64)) (string, error) {
	b, err := os.ReadFile(filepath.Join(f.dir, filepath.Base(t.TUFPath)))
	if err != nil {
		return "", fmt.Errorf("download %s: %w", t.TUFPath, err)
	}
	sum := sha256.Sum256(b)
	if int64(len(b)) != t.Length || hex.EncodeToString(sum[:]) != t.SHA256 {
		return "", fmt.Errorf("%s: length or hash does not match the signed target: %w", t.TUFPath, ErrNotTrusted)
	}
	if progress != nil {
		progress(int64(len(b)), int64(len(b)))
	}
	out := filepath.Join(f.out, "download")
	return out, os.WriteFile(out, b, 0o600)
}

// updateEnv is an agent with A/B slots at version 1.0.0 and a fetcher
// whose directory holds app-2.0.0.bin.
type updateEnv struct {
	*agentEnv
	slots  *abslots.Slots
	target UpdateTarget
}

func newUpdateEnv(t *testing.T, mod func(*Config)) *updateEnv {
	t.Helper()
	dir := t.TempDir()
	slots, err := abslots.Open(filepath.Join(dir, "slots"), abslots.Options{InitialVersion: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("firmware 2.0.0")
	if err := os.WriteFile(filepath.Join(dir, "app-2.0.0.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(payload)
	target := UpdateTarget{Name: "app", Version: "2.0.0", SHA256: hex.EncodeToString(sum[:]), Length: int64(len(payload)), TUFPath: "app/app-2.0.0.bin"}
	e := newAgentEnv(t, func(c *Config) {
		c.Installer = slots
		c.Fetcher = fileFetcher{dir: dir, out: t.TempDir()}
		if mod != nil {
			mod(c)
		}
	})
	// Attributes follow the subscriptions (onConnect): a job sent after
	// them is received.
	e.broker.WaitFor("attributes", func() bool { return len(e.broker.Messages(e.topic(steward.ChannelAttributes))) > 0 })
	return &updateEnv{agentEnv: e, slots: slots, target: target}
}

func (e *updateEnv) send(job steward.UpdateJob) {
	e.t.Helper()
	b, err := json.Marshal(job)
	if err != nil {
		e.t.Fatal(err)
	}
	e.broker.Send(e.topic(steward.ChannelUpdateJob), b)
}

func (e *updateEnv) job(id string) steward.UpdateJob {
	return steward.UpdateJob{DeploymentID: id, Attempt: 1, Action: steward.JobInstall, Kind: steward.KindArtifact, Target: e.target}
}

func (e *updateEnv) statuses() []steward.UpdateStatus {
	var out []steward.UpdateStatus
	for _, m := range e.broker.Messages(e.topic(steward.ChannelUpdateStatus)) {
		var st steward.UpdateStatus
		if err := json.Unmarshal(m, &st); err != nil {
			e.t.Fatalf("status %s: %v", m, err)
		}
		out = append(out, st)
	}
	return out
}

func states(sts []steward.UpdateStatus) []steward.UpdateState {
	var out []steward.UpdateState
	for _, s := range sts {
		if s.Progress == 0 { // progress reports repeat a state
			out = append(out, s.State)
		}
	}
	return out
}

// waitFinal waits for a final state of deployment id and returns every
// status of it.
func (e *updateEnv) waitFinal(id string) []steward.UpdateStatus {
	e.t.Helper()
	var got []steward.UpdateStatus
	e.broker.WaitFor("final status of "+id, func() bool {
		got = got[:0]
		for _, s := range e.statuses() {
			if s.DeploymentID == id {
				got = append(got, s)
			}
		}
		return slices.ContainsFunc(got, func(s steward.UpdateStatus) bool {
			return slices.Contains([]steward.UpdateState{steward.UpdateSucceeded, steward.UpdateFailed, steward.UpdateRolledBack, steward.UpdateSkipped}, s.State)
		})
	})
	return got
}

func TestUpdateInstallsAndCommits(t *testing.T) {
	t.Parallel()
	e := newUpdateEnv(t, nil)
	e.send(e.job("dp-1"))
	got := e.waitFinal("dp-1")
	want := []steward.UpdateState{steward.UpdateDownloading, steward.UpdateDownloaded, steward.UpdateInstalling, steward.UpdateRebooting, steward.UpdateVerifying, steward.UpdateSucceeded}
	if !slices.Equal(states(got), want) {
		t.Fatalf("states %v, want %v", states(got), want)
	}
	last := got[len(got)-1]
	if last.Version != "2.0.0" || last.PreviousVersion != "1.0.0" || last.Attempt != 1 {
		t.Fatalf("final status %+v", last)
	}
	if v := e.slots.ActiveVersion(); v != "2.0.0" {
		t.Fatalf("active version %s", v)
	}
	b, err := os.ReadFile(filepath.Join(e.slots.ActiveDir(), "app-2.0.0.bin"))
	if err != nil || string(b) != "firmware 2.0.0" {
		t.Fatalf("installed file %q, %v", b, err)
	}
	// The job is forgotten once its end is reported.
	for i := 0; ; i++ {
		_, err := os.Stat(filepath.Join(e.dir, updateFile))
		if errors.Is(err, os.ErrNotExist) {
			break
		}
		if i == 300 {
			t.Fatalf("the finished job is still kept: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestUpdateRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		mod        func(*Config)
		job        func(e *updateEnv) steward.UpdateJob
		wantStates []steward.UpdateState
		wantReason string
		transient  bool
	}{
		{"tampered download", nil, func(e *updateEnv) steward.UpdateJob {
			j := e.job("dp-t")
			j.Target.SHA256 = strings.Repeat("0", 64)
			return j
		}, []steward.UpdateState{steward.UpdateDownloading, steward.UpdateFailed}, "does not match the signed target", false},
		{"wrong length", nil, func(e *updateEnv) steward.UpdateJob {
			j := e.job("dp-l")
			j.Target.Length++
			return j
		}, []steward.UpdateState{steward.UpdateDownloading, steward.UpdateFailed}, "does not match", false},
		{"missing file is transient", nil, func(e *updateEnv) steward.UpdateJob {
			j := e.job("dp-m")
			j.Target.TUFPath = "app/none.bin"
			return j
		}, []steward.UpdateState{steward.UpdateDownloading, steward.UpdateFailed}, "download", true},
		{"already installed", nil, func(e *updateEnv) steward.UpdateJob {
			j := e.job("dp-a")
			j.Target.Version = "1.0.0"
			return j
		}, []steward.UpdateState{steward.UpdateSkipped}, "already_installed", false},
		{"health check fails", func(c *Config) {
			c.HealthCheck = func(context.Context) error { return errors.New("service did not answer") }
		}, func(e *updateEnv) steward.UpdateJob { return e.job("dp-h") },
			[]steward.UpdateState{steward.UpdateDownloading, steward.UpdateDownloaded, steward.UpdateInstalling, steward.UpdateRebooting, steward.UpdateVerifying, steward.UpdateRolledBack},
			"health check: service did not answer", false},
		{"no installer", func(c *Config) { c.Installer, c.Fetcher = nil, nil },
			func(e *updateEnv) steward.UpdateJob { return e.job("dp-n") }, []steward.UpdateState{steward.UpdateSkipped}, "incompatible", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newUpdateEnv(t, tc.mod)
			job := tc.job(e)
			e.send(job)
			got := e.waitFinal(job.DeploymentID)
			if !slices.Equal(states(got), tc.wantStates) {
				t.Fatalf("states %v, want %v", states(got), tc.wantStates)
			}
			last := got[len(got)-1]
			if !strings.Contains(last.Reason, tc.wantReason) || last.Transient != tc.transient {
				t.Fatalf("final status %+v, want reason %q transient %v", last, tc.wantReason, tc.transient)
			}
			if v := e.slots.ActiveVersion(); v != "1.0.0" {
				t.Fatalf("active version %s after a refused update", v)
			}
		})
	}
}

func TestUpdateMalformedJobs(t *testing.T) {
	t.Parallel()
	e := newUpdateEnv(t, nil)
	// One at a time: a job not yet taken is replaced by a newer one, as
	// the retained job replaces the last.
	for _, tc := range []struct{ id, payload string }{
		{"dp-x", `{"deployment_id":"dp-x","attempt":1,"action":"explode","kind":"artifact","target":{"version":"2"}}`},
		{"dp-y", `{"deployment_id":"dp-y","attempt":1,"action":"install","kind":"artifact","target":{}}`},
		{"dp-z", `{"deployment_id":"dp-z","attempt":"one"}`},
		{"", `not json`},
	} {
		e.broker.Send(e.topic(steward.ChannelUpdateJob), []byte(tc.payload))
		if tc.id == "" {
			continue
		}
		if got := e.waitFinal(tc.id); !slices.Equal(states(got), []steward.UpdateState{steward.UpdateFailed}) {
			t.Errorf("%s: states %v", tc.id, states(got))
		}
	}
	// A valid job after them still works: the updater did not wedge.
	e.send(e.job("dp-ok"))
	if got := e.waitFinal("dp-ok"); got[len(got)-1].State != steward.UpdateSucceeded {
		t.Fatalf("valid job after malformed ones: %+v", got)
	}
}

func TestUpdateWaitsForWindow(t *testing.T) {
	t.Parallel()
	e := newUpdateEnv(t, nil)
	closed := e.job("dp-closed")
	closed.InstallWindow = &steward.InstallWindow{From: time.Now().Add(-2 * time.Hour), To: time.Now().Add(-time.Hour)}
	e.send(closed)
	e.broker.WaitFor("downloaded", func() bool { return slices.Contains(states(e.statuses()), steward.UpdateDownloaded) })
	// The same job again is a reminder: the state is reported again, and
	// nothing starts over or installs outside the window.
	e.send(closed)
	e.broker.WaitFor("reminder answered", func() bool { return count(states(e.statuses()), steward.UpdateDownloaded) >= 2 })
	if got := states(e.statuses()); slices.Contains(got, steward.UpdateInstalling) || count(got, steward.UpdateDownloading) != 1 {
		t.Fatalf("states %v: installed outside its window or started over", got)
	}
	// A new job whose window opens shortly installs once it opens.
	open := e.job("dp-open")
	open.InstallWindow = &steward.InstallWindow{From: time.Now().Add(200 * time.Millisecond), To: time.Now().Add(time.Hour)}
	e.send(open)
	if got := e.waitFinal("dp-open"); got[len(got)-1].State != steward.UpdateSucceeded {
		t.Fatalf("states %v", states(got))
	}
}

// TestUpdateSurvivesRestart installs with a real restart: Restart stops the
// agent, and a new agent on the same state directory and slots checks the
// trial and commits it.
func TestUpdateSurvivesRestart(t *testing.T) {
	t.Parallel()
	restarted := make(chan struct{}, 1)
	e := newUpdateEnv(t, func(c *Config) {
		c.Restart = func() error {
			restarted <- struct{}{}
			return nil
		}
	})
	e.send(e.job("dp-r"))
	select {
	case <-restarted:
	case <-time.After(30 * time.Second):
		t.Fatal("no restart after the install")
	}
	// Stop the first agent as the restart would; the cleanup's stop then
	// finds its result again.
	e.cancel()
	if err := <-e.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.done <- nil
	if p := e.slots.Pending(); p == nil || p.Version != "2.0.0" {
		t.Fatalf("trial before the restart: %+v", p)
	}
	cfg := e.agent.cfg
	a2, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a2.Run(ctx) }()
	defer func() { cancel(); <-done }()
	got := e.waitFinal("dp-r")
	want := []steward.UpdateState{steward.UpdateDownloading, steward.UpdateDownloaded, steward.UpdateInstalling, steward.UpdateRebooting, steward.UpdateVerifying, steward.UpdateSucceeded}
	if !slices.Equal(states(got), want) {
		t.Fatalf("states %v, want %v", states(got), want)
	}
	if got[len(got)-1].PreviousVersion != "1.0.0" || e.slots.ActiveVersion() != "2.0.0" {
		t.Fatalf("final %+v, active %s", got[len(got)-1], e.slots.ActiveVersion())
	}
}

func count(states []steward.UpdateState, s steward.UpdateState) int {
	n := 0
	for _, x := range states {
		if x == s {
			n++
		}
	}
	return n
}
