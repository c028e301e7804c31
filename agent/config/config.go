// Package config applies a device twin's desired configuration on the
// device: one Handler per top-level key of the desired document carries a
// key's value into the device (a file, a setting, a service restart), the
// applied state is kept on disk so that it survives a restart, and the
// result is what the device reports on dev/{id}/twin/reported.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/steward-iot/steward"
)

// Handler applies one key of the desired configuration. value is the key's
// new value as JSON, or nil when the key was removed from the desired
// state. An error leaves the key as it was applied before and is reported
// with the key.
type Handler interface {
	Apply(key string, value json.RawMessage) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(key string, value json.RawMessage) error

// Apply implements Handler.
func (f HandlerFunc) Apply(key string, value json.RawMessage) error { return f(key, value) }

// Any is the registry key of the handler that takes every key without a
// handler of its own.
const Any = "*"

// State is the configuration as the device applied it: the desired version
// it last applied, the value of each key applied, and the keys it could not
// apply with the reason. It is what the device reports.
type State struct {
	Version int64                      `json:"version"`
	Values  map[string]json.RawMessage `json:"values"`
	Errors  map[string]string          `json:"errors,omitempty"`
}

// Report returns the state as the reported message.
func (s State) Report() steward.TwinReportedMessage {
	values := s.Values
	if values == nil {
		values = map[string]json.RawMessage{}
	}
	b, _ := json.Marshal(values) // raw JSON values that were valid when stored
	return steward.TwinReportedMessage{Version: s.Version, State: b, Errors: maps.Clone(s.Errors)}
}

// Applier applies desired states with its handlers and keeps the applied
// state in a file. It is safe for use by several goroutines; applies run
// one at a time.
type Applier struct {
	path     string
	handlers map[string]Handler

	mu    sync.Mutex
	state State
}

// Open returns an Applier keeping its state in path, with the state last
// saved there (none when the file does not exist yet). handlers maps each
// top-level key to its handler (Any for every other key).
func Open(path string, handlers map[string]Handler) (*Applier, error) {
	a := &Applier{path: path, handlers: maps.Clone(handlers), state: State{Values: map[string]json.RawMessage{}}}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return a, nil
	case err != nil:
		return nil, fmt.Errorf("read applied configuration: %w", err)
	}
	if err := json.Unmarshal(b, &a.state); err != nil {
		return nil, fmt.Errorf("read applied configuration %s: %w", path, err)
	}
	if a.state.Values == nil {
		a.state.Values = map[string]json.RawMessage{}
	}
	return a, nil
}

// State returns the applied state.
func (a *Applier) State() State {
	a.mu.Lock()
	defer a.mu.Unlock()
	return clone(a.state)
}

// Replay hands every applied value to its handler again, as on a restart,
// so that settings held in memory come back before the server is reached.
// Errors are returned joined; the saved state does not change.
func (a *Applier) Replay() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(a.state.Values)) {
		h := a.handler(k)
		if h == nil {
			continue
		}
		if err := h.Apply(k, a.state.Values[k]); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		}
	}
	return errors.Join(errs...)
}

// Apply brings the device to the desired state of version: each key whose
// value differs from the applied one goes to its handler, each applied key
// no longer desired goes to its handler with nil. A key without a handler,
// or whose handler fails, keeps its applied value (none for a new key) and
// is reported with the error. The new state is saved before Apply returns
// it; a failure to save is returned, with the state in memory unchanged.
func (a *Applier) Apply(version int64, desired json.RawMessage) (State, error) {
	var want map[string]json.RawMessage
	d := bytes.TrimSpace(desired)
	if len(d) == 0 || d[0] != '{' || json.Unmarshal(d, &want) != nil {
		return State{}, errors.New("desired configuration: want a JSON object")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	next := State{Version: version, Values: maps.Clone(a.state.Values), Errors: map[string]string{}}
	keys := slices.Sorted(maps.Keys(want))
	for _, k := range keys {
		v := want[k]
		if old, ok := next.Values[k]; ok && steward.JSONEqual(old, v) {
			continue
		}
		if err := a.apply(k, v); err != nil {
			next.Errors[k] = err.Error()
			continue
		}
		next.Values[k] = slices.Clone(v)
	}
	for _, k := range slices.Sorted(maps.Keys(a.state.Values)) {
		if _, ok := want[k]; ok {
			continue
		}
		if err := a.apply(k, nil); err != nil {
			next.Errors[k] = err.Error()
			continue
		}
		delete(next.Values, k)
	}
	if len(next.Errors) == 0 {
		next.Errors = nil
	}
	if err := a.save(next); err != nil {
		return clone(a.state), err
	}
	a.state = next
	return clone(next), nil
}

func (a *Applier) handler(key string) Handler {
	if h, ok := a.handlers[key]; ok {
		return h
	}
	return a.handlers[Any]
}

func (a *Applier) apply(key string, v json.RawMessage) (err error) {
	h := a.handler(key)
	if h == nil {
		return errors.New("no handler for this key on the device")
	}
	defer func() {
		// A handler that panics fails its key, not the agent.
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panicked: %v", r)
		}
	}()
	return h.Apply(key, v)
}

// save writes the state to a new file and renames it over the old one, so
// that a crash leaves the old state or the new one, never half of one.
func (a *Applier) save(s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode applied configuration: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(a.path), ".config-*.tmp")
	if err != nil {
		return fmt.Errorf("save applied configuration: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("save applied configuration: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("save applied configuration: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save applied configuration: %w", err)
	}
	if err := os.Rename(tmp.Name(), a.path); err != nil {
		return fmt.Errorf("save applied configuration: %w", err)
	}
	return nil
}

func clone(s State) State {
	out := State{Version: s.Version, Values: make(map[string]json.RawMessage, len(s.Values)), Errors: maps.Clone(s.Errors)}
	for k, v := range s.Values {
		out.Values[k] = slices.Clone(v)
	}
	return out
}
