package config

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/steward-iot/steward"
)

// recorder is a handler that keeps what it was given, and fails for the
// values listed in fail.
type recorder struct {
	calls []string
	fail  map[string]bool
}

func (r *recorder) Apply(key string, v json.RawMessage) error {
	r.calls = append(r.calls, key+"="+string(v))
	if r.fail[string(v)] {
		return errors.New("refused " + string(v))
	}
	return nil
}

func TestApply(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "config.json")
	rec := &recorder{fail: map[string]bool{`"bad"`: true}}
	a, err := Open(path, map[string]Handler{"interval": rec, "log": rec})
	if err != nil {
		t.Fatal(err)
	}
	st, err := a.Apply(1, json.RawMessage(`{"interval": 30, "log": "info", "ntp": {"servers": ["a"]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != 1 || len(st.Values) != 2 || st.Errors["ntp"] != "no handler for this key on the device" {
		t.Fatalf("state %+v", st)
	}
	rep := st.Report()
	if !steward.JSONEqual(rep.State, json.RawMessage(`{"interval": 30, "log": "info"}`)) || rep.Errors["ntp"] == "" || rep.Version != 1 {
		t.Fatalf("report %+v %s", rep, rep.State)
	}

	// Only changed keys go to their handler; a failing one keeps the value
	// applied before; a removed one is handed nil.
	rec.calls = nil
	st, err = a.Apply(2, json.RawMessage(`{"interval": 30.0, "log": "bad"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 1 || rec.calls[0] != `log="bad"` {
		t.Fatalf("handler calls %v", rec.calls)
	}
	if string(st.Values["log"]) != `"info"` || st.Errors["log"] != `refused "bad"` || st.Version != 2 {
		t.Fatalf("state after a failed key %+v", st)
	}
	rec.calls = nil
	st, err = a.Apply(3, json.RawMessage(`{"log": "debug"}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.calls) != 2 || rec.calls[0] != `log="debug"` || rec.calls[1] != `interval=` {
		t.Fatalf("handler calls %v", rec.calls)
	}
	if len(st.Values) != 1 || st.Errors != nil {
		t.Fatalf("state %+v", st)
	}

	// The applied state survives a restart, and Replay hands it to the
	// handlers again.
	rec2 := &recorder{}
	b, err := Open(path, map[string]Handler{Any: rec2})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.State(); got.Version != 3 || string(got.Values["log"]) != `"debug"` {
		t.Fatalf("state after restart %+v", got)
	}
	if err := b.Replay(); err != nil || len(rec2.calls) != 1 || rec2.calls[0] != `log="debug"` {
		t.Fatalf("replay: %v %v", err, rec2.calls)
	}
	// The Any handler takes keys without their own.
	st, err = b.Apply(4, json.RawMessage(`{"log": "debug", "anything": 1}`))
	if err != nil || st.Errors != nil || len(st.Values) != 2 {
		t.Fatalf("any handler: %v %+v", err, st)
	}
}

func TestApplyRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.json")
	a, err := Open(path, map[string]Handler{Any: HandlerFunc(func(string, json.RawMessage) error { panic("boom") })})
	if err != nil {
		t.Fatal(err)
	}
	// A panicking handler fails its key only.
	st, err := a.Apply(1, json.RawMessage(`{"k": 1}`))
	if err != nil || st.Errors["k"] != "handler panicked: boom" {
		t.Fatalf("panicking handler: %v %+v", err, st)
	}
	// A desired state that is not an object changes nothing.
	for _, bad := range []string{`[1]`, `null`, `{"a":`, ``} {
		if _, err := a.Apply(2, json.RawMessage(bad)); err == nil {
			t.Fatalf("desired %q was applied", bad)
		}
		if a.State().Version != 1 {
			t.Fatal("a refused desired state changed the state")
		}
	}
	// A damaged state file is an error, not an empty state.
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); err == nil {
		t.Fatal("a damaged state file opened")
	}
	// A state that cannot be saved is not taken.
	b, err := Open(filepath.Join(dir, "missing", "config.json"), map[string]Handler{Any: HandlerFunc(func(string, json.RawMessage) error { return nil })})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Apply(1, json.RawMessage(`{"k": 1}`)); err == nil || b.State().Version != 0 || len(b.State().Values) != 0 {
		t.Fatalf("unsaved state taken: %v %+v", err, b.State())
	}
}
