package abslots

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string) *Slots {
	t.Helper()
	s, err := Open(dir, Options{MaxBoots: 2, Now: func() time.Time { return t0 }, InitialVersion: "1.0.0"})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func stage(t *testing.T, s *Slots, version string) {
	t.Helper()
	if err := s.Stage(strings.NewReader("firmware "+version), "app.bin", version, "dep-1"); err != nil {
		t.Fatalf("stage %s: %v", version, err)
	}
}

func wantActive(t *testing.T, s *Slots, slot, version string) {
	t.Helper()
	got, err := s.Active()
	if err != nil {
		t.Fatal(err)
	}
	if got != slot || s.ActiveVersion() != version {
		t.Fatalf("active slot %s (version %q), want %s (%q)", got, s.ActiveVersion(), slot, version)
	}
}

func TestFreshDirectory(t *testing.T) {
	t.Parallel()
	s := open(t, t.TempDir())
	wantActive(t, s, "a", "1.0.0")
	if trial, outcome, err := s.Boot(); trial != nil || outcome != nil || err != nil {
		t.Fatalf("boot of a fresh directory: %v %v %v", trial, outcome, err)
	}
}

func TestUpdateCommitted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	stage(t, s, "2.0.0")
	wantActive(t, s, "a", "1.0.0") // staging does not switch
	trial, err := s.Switch()
	if err != nil {
		t.Fatal(err)
	}
	if trial.Slot != "b" || trial.FromVersion != "1.0.0" || trial.Version != "2.0.0" {
		t.Fatalf("trial %+v", trial)
	}
	// The restart: a new process opens the directory.
	s = open(t, dir)
	got, outcome, err := s.Boot()
	if err != nil || outcome != nil || got == nil || got.Boots != 1 {
		t.Fatalf("boot after switch: trial %+v outcome %+v err %v", got, outcome, err)
	}
	wantActive(t, s, "b", "2.0.0")
	o, err := s.Commit()
	if err != nil || !o.Committed || o.Version != "2.0.0" || o.DeploymentID != "dep-1" {
		t.Fatalf("commit: %+v %v", o, err)
	}
	b, err := os.ReadFile(filepath.Join(s.ActiveDir(), "app.bin"))
	if err != nil || string(b) != "firmware 2.0.0" {
		t.Fatalf("active payload %q, %v", b, err)
	}
	s = open(t, dir)
	if trial, outcome, _ := s.Boot(); trial != nil || outcome != nil {
		t.Fatalf("a committed version is not on trial again: %v %v", trial, outcome)
	}
	wantActive(t, s, "b", "2.0.0")
	// The next update goes to slot a.
	stage(t, s, "3.0.0")
	if trial, err := s.Switch(); err != nil || trial.Slot != "a" {
		t.Fatalf("second update: %+v %v", trial, err)
	}
}

func TestRollbackPaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// after Switch: what happens before the verdict
		run        func(t *testing.T, dir string) (*Slots, *Outcome)
		wantReason string
	}{
		{"failed health check", func(t *testing.T, dir string) (*Slots, *Outcome) {
			s := open(t, dir)
			if _, _, err := s.Boot(); err != nil {
				t.Fatal(err)
			}
			o, err := s.Rollback("health check: service did not answer")
			if err != nil {
				t.Fatal(err)
			}
			return s, &o
		}, "health check: service did not answer"},
		{"never came back healthy", func(t *testing.T, dir string) (*Slots, *Outcome) {
			var s *Slots
			for range 2 { // MaxBoots starts, each dying before the check
				s = open(t, dir)
				if trial, o, err := s.Boot(); err != nil || trial == nil || o != nil {
					t.Fatalf("boot within the limit: %v %v %v", trial, o, err)
				}
			}
			s = open(t, dir)
			trial, o, err := s.Boot()
			if err != nil || trial != nil || o == nil {
				t.Fatalf("boot past the limit: %v %v %v", trial, o, err)
			}
			return s, o
		}, "did not pass its health check within 2 starts"},
		{"crash before the link moved", func(t *testing.T, dir string) (*Slots, *Outcome) {
			// Switch saved the trial, then the power went before the link
			// moved: put the link back where it was.
			if err := os.Remove(filepath.Join(dir, "current")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("a", filepath.Join(dir, "current")); err != nil {
				t.Fatal(err)
			}
			s := open(t, dir)
			trial, o, err := s.Boot()
			if err != nil || trial != nil || o == nil {
				t.Fatalf("boot: %v %v %v", trial, o, err)
			}
			return s, o
		}, "did not complete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := open(t, dir)
			stage(t, s, "2.0.0")
			if _, err := s.Switch(); err != nil {
				t.Fatal(err)
			}
			s, o := tc.run(t, dir)
			if o.Committed || !strings.Contains(o.Reason, tc.wantReason) || o.Version != "2.0.0" {
				t.Fatalf("outcome %+v, want a rollback of 2.0.0 because %q", o, tc.wantReason)
			}
			wantActive(t, s, "a", "1.0.0")
			if last := open(t, dir).Last(); last == nil || last.Reason != o.Reason {
				t.Fatalf("the outcome is not kept across a restart: %+v", last)
			}
			if s.Pending() != nil {
				t.Fatal("a trial is still pending after the rollback")
			}
		})
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := open(t, dir)
	for _, name := range []string{"", "../x", "a/b", "VERSION", ".hidden"} {
		if err := s.Stage(strings.NewReader("x"), name, "2.0.0", ""); err == nil {
			t.Errorf("payload name %q accepted", name)
		}
	}
	if err := s.Stage(strings.NewReader("x"), "app.bin", "2.0.0\nx", ""); err == nil {
		t.Error("a two-line version was accepted")
	}
	if _, err := s.Switch(); err == nil {
		t.Error("switch with nothing staged was accepted")
	}
	if _, err := s.Commit(); err == nil {
		t.Error("commit without a trial was accepted")
	}
	wantActive(t, s, "a", "1.0.0")
	stage(t, s, "2.0.0")
	if _, err := s.Switch(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stage(strings.NewReader("x"), "app.bin", "3.0.0", ""); err == nil {
		t.Error("staging during a trial was accepted")
	}
	wantActive(t, s, "b", "2.0.0")
}

func TestCorruptStateIsAnError(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	open(t, dir)
	if err := os.WriteFile(filepath.Join(dir, "state.json"), []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("open with a corrupt state: %v", err)
	}
}
