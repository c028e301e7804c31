package twin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/steward-iot/steward"
)

// Layers are combined with JSON merge patch (RFC 7386): each layer's
// document is a patch over the result of the layers before it. Merge patch
// fits configuration layering exactly: an object member of a more
// specific layer replaces (or, as an object, merges into) the same member
// beneath, null removes it, and arrays are values replaced whole, which is
// what a list of NTP servers or allowed ports should be. An operator can
// read each layer as the configuration it sets. It is a dozen lines, so it
// is written here rather than taken from a library.

// decode reads a JSON document keeping numbers as json.Number, so that a
// large integer goes to the device exactly as the operator wrote it.
func decode(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	if d.More() {
		return nil, fmt.Errorf("data after the JSON value")
	}
	return v, nil
}

// decodeObject reads a JSON object.
func decodeObject(what string, b []byte) (map[string]any, error) {
	if err := steward.CheckConfigObject(what, b); err != nil {
		return nil, err
	}
	v, err := decode(b)
	if err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "configuration %s: %v", what, err)
	}
	return v.(map[string]any), nil
}

// MergePatch applies patch to target as RFC 7386 says and returns the
// result; target is not changed.
func MergePatch(target, patch any) any {
	p, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	t, ok := target.(map[string]any)
	if !ok {
		t = map[string]any{}
	}
	out := maps.Clone(t)
	for k, v := range p {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = MergePatch(out[k], v)
	}
	return out
}

// ComposePatches returns the one merge patch that does what applying a
// and then b does: unlike MergePatch it keeps b's nulls, which must still
// remove the key from the layers beneath.
func ComposePatches(a, b any) any {
	pb, ok := b.(map[string]any)
	if !ok {
		return b
	}
	pa, ok := a.(map[string]any)
	if !ok {
		pa = map[string]any{}
	}
	out := maps.Clone(pa)
	for k, v := range pb {
		if isObject(v) && isObject(out[k]) {
			out[k] = ComposePatches(out[k], v)
			continue
		}
		out[k] = v
	}
	return out
}

// MakeMergePatch returns the merge patch that turns from into to: what the
// desired message's delta carries. Arrays, and values that become null
// (which a merge patch cannot express), are sent whole.
func MakeMergePatch(from, to map[string]any) map[string]any {
	patch := map[string]any{}
	for k := range from {
		if _, ok := to[k]; !ok {
			patch[k] = nil
		}
	}
	for k, v := range to {
		old, had := from[k]
		switch {
		case had && equal(old, v):
		case isObject(old) && isObject(v):
			patch[k] = MakeMergePatch(old.(map[string]any), v.(map[string]any))
		default:
			patch[k] = v
		}
	}
	return patch
}

func isObject(v any) bool { _, ok := v.(map[string]any); return ok }

// equal compares two decoded values, numbers by value.
func equal(a, b any) bool {
	if x, ok := a.(json.Number); ok {
		y, ok := b.(json.Number)
		if !ok {
			return false
		}
		if x == y {
			return true
		}
		fx, e1 := x.Float64()
		fy, e2 := y.Float64()
		return e1 == nil && e2 == nil && fx == fy
	}
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !equal(v, w) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equal(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// Diff lists the changes that turn a into b, by path. Objects are compared
// member by member; arrays and other values are replaced whole (a changed
// list of servers reads better whole than as index shuffles). A hand-written
// walk: the listing of changed paths is all that is needed, and the JSON
// patch libraries for Go add a dependency for little more.
func Diff(a, b any) []steward.ConfigChange {
	var out []steward.ConfigChange
	diff("", a, b, &out)
	slices.SortStableFunc(out, func(x, y steward.ConfigChange) int { return strings.Compare(x.Path, y.Path) })
	return out
}

func diff(path string, a, b any, out *[]steward.ConfigChange) {
	x, okA := a.(map[string]any)
	y, okB := b.(map[string]any)
	if !okA || !okB {
		if !equal(a, b) {
			*out = append(*out, steward.ConfigChange{Op: "replace", Path: path, Value: b, Old: a})
		}
		return
	}
	for k, v := range x {
		p := path + "/" + escapePointer(k)
		w, ok := y[k]
		if !ok {
			*out = append(*out, steward.ConfigChange{Op: "remove", Path: p, Old: v})
			continue
		}
		diff(p, v, w, out)
	}
	for k, w := range y {
		if _, ok := x[k]; !ok {
			*out = append(*out, steward.ConfigChange{Op: "add", Path: path + "/" + escapePointer(k), Value: w})
		}
	}
}

// escapePointer escapes one reference token of a JSON pointer (RFC 6901).
func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// encode writes a decoded value back as JSON.
func encode(v any) (json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode configuration: %w", err)
	}
	return b, nil
}
