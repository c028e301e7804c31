package steward

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzDurationJSON checks the duration text operators write in alert rules
// and retention overrides: an error is a *Error with CodeInvalid, and an
// accepted duration marshals to text that unmarshals to the same duration.
func FuzzDurationJSON(f *testing.F) {
	for _, s := range []string{`"5m"`, `"90s"`, `"1h30m"`, `"-1s"`, `"0"`, `"2562047h47m16.854775807s"`, `"9999999999h"`, `5`, `null`, `"1.5µs"`, `""`, `"1e3s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Duration
		if err := json.Unmarshal(b, &d); err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Code != CodeInvalid {
				// encoding/json's own syntax errors come before ours.
				var syn *json.SyntaxError
				if !errors.As(err, &syn) {
					t.Fatalf("Unmarshal(%q): %v is neither a syntax error nor CodeInvalid", b, err)
				}
			}
			return
		}
		out, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		var again Duration
		if err := json.Unmarshal(out, &again); err != nil || again != d {
			t.Fatalf("%q → %v → %s → %v, %v", b, time.Duration(d), out, time.Duration(again), err)
		}
	})
}

// FuzzFleetGroupBy checks that a grouping accepted by ValidFleetGroupBy
// reads a device's value without panicking, and that a labels.<key>
// grouping reads exactly that label.
func FuzzFleetGroupBy(f *testing.F) {
	for _, s := range []string{"firmware", "model", "site", "state", "labels.ring", "labels.", "labels.a/b", "labels.x.y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, g string) {
		if !ValidFleetGroupBy(g) {
			return
		}
		a := DeviceAggregate{Firmware: "1", Model: "m", Site: "s", State: StateActive, Labels: map[string]string{g[min(len(g), len("labels.")):]: "v"}}
		v := a.GroupValue(g)
		if len(g) > len("labels.") && g[:len("labels.")] == "labels." && v != "v" {
			t.Fatalf("GroupValue(%q) = %q, want the label's value", g, v)
		}
	})
}
