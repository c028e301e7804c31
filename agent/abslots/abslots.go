// Package abslots is the agent's default A/B installer: two slot
// directories and a symlink that names the active one. An update is written
// to the inactive slot, the link is switched, the device restarts into the
// new slot on trial, and the trial ends in a commit (health check passed)
// or a rollback (check failed, or the device did not come back healthy
// within a number of boots). A real device swaps this for its bootloader's
// A/B mechanism behind the same steps.
//
// Layout of the directory:
//
//	a/, b/        the slots; each holds the installed files and VERSION
//	current       symlink to the active slot ("a" or "b")
//	state.json    the installer's state, written atomically
//
// Every change is made so that a power cut at any point leaves a
// consistent state: files are fsynced before the link moves, the link and
// the state file are replaced by rename, and the state names the trial
// before the link is switched, so a restart always knows what it booted.
package abslots

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/google/renameio/v2"
)

// DefaultMaxBoots is how many starts a trial gets to be confirmed healthy
// before it is rolled back by itself.
const DefaultMaxBoots = 3

// Trial is a switched slot waiting for its health check.
type Trial struct {
	Slot         string    `json:"slot"`
	Version      string    `json:"version"`
	FromSlot     string    `json:"from_slot"`
	FromVersion  string    `json:"from_version"`
	DeploymentID string    `json:"deployment_id,omitempty"`
	Boots        int       `json:"boots"`
	SwitchedAt   time.Time `json:"switched_at"`
}

// Outcome is how the last trial ended.
type Outcome struct {
	DeploymentID string    `json:"deployment_id,omitempty"`
	Version      string    `json:"version"`
	Committed    bool      `json:"committed"`
	Reason       string    `json:"reason,omitempty"` // why it was rolled back
	At           time.Time `json:"at"`
}

// state is state.json.
type state struct {
	Staged *Staged   `json:"staged,omitempty"`
	Trial  *Trial    `json:"trial,omitempty"`
	Last   *Outcome  `json:"last,omitempty"`
	Saved  time.Time `json:"saved"`
}

// Staged is an update written to the inactive slot, not yet switched to.
type Staged struct {
	Slot         string `json:"slot"`
	Version      string `json:"version"`
	DeploymentID string `json:"deployment_id,omitempty"`
}

// Slots is an A/B slot directory. Its methods are safe for concurrent use.
type Slots struct {
	dir      string
	maxBoots int
	now      func() time.Time

	mu sync.Mutex
	st state
}

// Options tune Open; zero values take the defaults.
type Options struct {
	// MaxBoots is how many starts a trial may take before it is rolled
	// back (DefaultMaxBoots).
	MaxBoots int
	// Now is the clock (time.Now).
	Now func() time.Time
	// InitialVersion is the version recorded in slot a when the directory
	// is created.
	InitialVersion string
}

// Open opens the slot directory dir, creating it with slot a active on
// first use.
func Open(dir string, o Options) (*Slots, error) {
	if o.MaxBoots <= 0 {
		o.MaxBoots = DefaultMaxBoots
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Slots{dir: dir, maxBoots: o.MaxBoots, now: o.Now}
	for _, slot := range []string{"a", "b"} {
		if err := os.MkdirAll(filepath.Join(dir, slot), 0o755); err != nil {
			return nil, fmt.Errorf("create slot %s: %w", slot, err)
		}
	}
	if _, err := os.Lstat(s.link()); errors.Is(err, fs.ErrNotExist) {
		if err := writeFileSync(filepath.Join(dir, "a", "VERSION"), []byte(o.InitialVersion+"\n")); err != nil {
			return nil, err
		}
		if err := s.point("a"); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, fmt.Errorf("read active slot link: %w", err)
	}
	b, err := os.ReadFile(s.statePath())
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read slot state: %w", err)
	default:
		if err := json.Unmarshal(b, &s.st); err != nil {
			return nil, fmt.Errorf("slot state %s is corrupt: %w", s.statePath(), err)
		}
	}
	return s, nil
}

func (s *Slots) link() string      { return filepath.Join(s.dir, "current") }
func (s *Slots) statePath() string { return filepath.Join(s.dir, "state.json") }

// Active returns the active slot ("a" or "b").
func (s *Slots) Active() (string, error) {
	target, err := os.Readlink(s.link())
	if err != nil {
		return "", fmt.Errorf("read active slot link: %w", err)
	}
	slot := filepath.Base(target)
	if slot != "a" && slot != "b" {
		return "", fmt.Errorf("active slot link points at %q, not a slot", target)
	}
	return slot, nil
}

// ActiveDir is the directory of the active slot, through the link.
func (s *Slots) ActiveDir() string { return s.link() }

// Version returns the version installed in a slot.
func (s *Slots) Version(slot string) string {
	b, err := os.ReadFile(filepath.Join(s.dir, slot, "VERSION"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// ActiveVersion is the version of the active slot.
func (s *Slots) ActiveVersion() string {
	slot, err := s.Active()
	if err != nil {
		return ""
	}
	return s.Version(slot)
}

func other(slot string) string {
	if slot == "a" {
		return "b"
	}
	return "a"
}

// Stage writes an update into the inactive slot: the slot is emptied, the
// payload written as name and fsynced, and VERSION written last, so a slot
// with a VERSION is complete. It refuses while a trial is pending.
func (s *Slots) Stage(payload io.Reader, name, version, deploymentID string) error {
	if name == "" || name != filepath.Base(name) || name == "VERSION" || strings.HasPrefix(name, ".") {
		return fmt.Errorf("payload name %q must be a plain file name", name)
	}
	if version == "" || strings.ContainsAny(version, "\n\r") {
		return fmt.Errorf("version %q must be one line", version)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Trial != nil {
		return fmt.Errorf("version %s is on trial; it must be committed or rolled back first", s.st.Trial.Version)
	}
	active, err := s.Active()
	if err != nil {
		return err
	}
	slot := other(active)
	dir := filepath.Join(s.dir, slot)
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("empty slot %s: %w", slot, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create slot %s: %w", slot, err)
	}
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write slot %s: %w", slot, err)
	}
	if _, err := io.Copy(f, payload); err != nil {
		f.Close()
		return fmt.Errorf("write slot %s: %w", slot, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync slot %s: %w", slot, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write slot %s: %w", slot, err)
	}
	if err := writeFileSync(filepath.Join(dir, "VERSION"), []byte(version+"\n")); err != nil {
		return err
	}
	next := s.st
	next.Staged = &Staged{Slot: slot, Version: version, DeploymentID: deploymentID}
	return s.save(next)
}

// Switch makes the staged slot active, on trial. The caller restarts the
// device (or the application) next; Boot after the restart counts it.
func (s *Slots) Switch() (Trial, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Staged == nil {
		return Trial{}, errors.New("nothing is staged")
	}
	active, err := s.Active()
	if err != nil {
		return Trial{}, err
	}
	if s.st.Staged.Slot == active {
		return Trial{}, fmt.Errorf("staged slot %s is already active", active)
	}
	t := Trial{Slot: s.st.Staged.Slot, Version: s.st.Staged.Version, FromSlot: active,
		FromVersion: s.Version(active), DeploymentID: s.st.Staged.DeploymentID, SwitchedAt: s.now().UTC()}
	// The trial is recorded before the link moves: a crash in between
	// finds a trial whose slot is not active, which Boot rolls back.
	next := s.st
	next.Staged = nil
	next.Trial = &t
	if err := s.save(next); err != nil {
		return Trial{}, err
	}
	if err := s.point(t.Slot); err != nil {
		return Trial{}, err
	}
	return t, nil
}

// Boot is called once at every start of the agent. When a trial is
// pending it counts the boot and returns the trial, which the caller then
// health-checks; a trial whose link never moved, or that has used up its
// boots, is rolled back here and its outcome returned instead.
func (s *Slots) Boot() (*Trial, *Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.Trial
	if t == nil {
		return nil, nil, nil
	}
	active, err := s.Active()
	if err != nil {
		return nil, nil, err
	}
	if active != t.Slot {
		o, err := s.rollback(fmt.Sprintf("the switch to slot %s did not complete", t.Slot))
		return nil, o, err
	}
	if t.Boots >= s.maxBoots {
		o, err := s.rollback(fmt.Sprintf("version %s did not pass its health check within %d starts", t.Version, s.maxBoots))
		return nil, o, err
	}
	next := s.st
	tt := *t
	tt.Boots++
	next.Trial = &tt
	if err := s.save(next); err != nil {
		return nil, nil, err
	}
	return &tt, nil, nil
}

// Commit ends the trial: the new slot stays active.
func (s *Slots) Commit() (Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.st.Trial
	if t == nil {
		return Outcome{}, errors.New("no version is on trial")
	}
	o := Outcome{DeploymentID: t.DeploymentID, Version: t.Version, Committed: true, At: s.now().UTC()}
	next := s.st
	next.Trial = nil
	next.Last = &o
	return o, s.save(next)
}

// Rollback ends the trial by switching back to the previous slot.
func (s *Slots) Rollback(reason string) (Outcome, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Trial == nil {
		return Outcome{}, errors.New("no version is on trial")
	}
	o, err := s.rollback(reason)
	if err != nil {
		return Outcome{}, err
	}
	return *o, nil
}

func (s *Slots) rollback(reason string) (*Outcome, error) {
	t := s.st.Trial
	// The link moves back first: a crash before the state is saved finds
	// a trial whose slot is not active, and rolls back again (harmless).
	if err := s.point(t.FromSlot); err != nil {
		return nil, err
	}
	o := &Outcome{DeploymentID: t.DeploymentID, Version: t.Version, Reason: reason, At: s.now().UTC()}
	next := s.st
	next.Trial = nil
	next.Last = o
	return o, s.save(next)
}

// Pending returns the trial in progress, if any.
func (s *Slots) Pending() *Trial {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Trial == nil {
		return nil
	}
	t := *s.st.Trial
	return &t
}

// Last returns how the last trial ended, if one did.
func (s *Slots) Last() *Outcome {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Last == nil {
		return nil
	}
	o := *s.st.Last
	return &o
}

// point makes the link name slot, atomically (a new link renamed over the
// old one), and syncs the directory so the change survives a power cut.
func (s *Slots) point(slot string) error {
	if err := renameio.Symlink(slot, s.link()); err != nil {
		return fmt.Errorf("switch active slot to %s: %w", slot, err)
	}
	return syncDir(s.dir)
}

func (s *Slots) save(next state) error {
	next.Saved = s.now().UTC()
	b, err := json.MarshalIndent(next, "", "  ")
	if err != nil {
		return fmt.Errorf("encode slot state: %w", err)
	}
	if err := renameio.WriteFile(s.statePath(), b, 0o600); err != nil {
		return fmt.Errorf("save slot state: %w", err)
	}
	s.st = next
	return nil
}

func writeFileSync(path string, b []byte) error {
	if err := renameio.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
