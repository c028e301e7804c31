package query

import (
	"fmt"
	"strconv"
	"strings"

	steward "github.com/steward-iot/steward"
)

// fieldType says how a field compares.
type fieldType int

// The field types.
const (
	typeText      fieldType = iota + 1 // a text column
	typeFirmware                       // text, ordered as semantic versions through firmware_key
	typeState                          // one of steward.States
	typeBool                           // online
	typeLabel                          // labels.<key>: a JSON string
	typeAttribute                      // attributes.<key>: any JSON value, compared by the literal's type
)

// Texts of error messages, and the longest label or attribute key.
const (
	fieldList      = "id, model, serial, firmware, hardware, state, online, site, owner, labels.<key>, attributes.<key>"
	versionExample = `"1.2.3"`
	maxKeyLength   = 128
)

// typeOf returns the type of the field called name (without its key).
func typeOf(name string) (fieldType, bool) {
	switch name {
	case "id", "model", "serial", "hardware", "site", "owner":
		return typeText, true
	case "firmware":
		return typeFirmware, true
	case "state":
		return typeState, true
	case "online":
		return typeBool, true
	case "labels":
		return typeLabel, true
	case "attributes":
		return typeAttribute, true
	}
	return 0, false
}

// checkError is a problem with a comparison; atOp says it is the
// operator's fault rather than the value's.
type checkError struct {
	msg  string
	atOp bool
}

// checkField checks that f names a field, with a valid key where one is
// needed and none otherwise.
func checkField(f field) *checkError {
	t, ok := typeOf(f.name)
	if !ok {
		return &checkError{msg: fmt.Sprintf("unknown field %q (fields: %s)", clip(f.String()), fieldList)}
	}
	keyed := t == typeLabel || t == typeAttribute
	switch {
	case keyed && f.key == "":
		return &checkError{msg: fmt.Sprintf("%s needs a key, as in %s.name", f.name, f.name)}
	case !keyed && f.key != "":
		return &checkError{msg: fmt.Sprintf("unknown field %q (fields: %s)", clip(f.String()), fieldList)}
	case keyed && !validKey(f.key):
		return &checkError{msg: fmt.Sprintf(`invalid key %q in %s (a key has up to %d letters, digits, "_", "-" and ".")`, clip(f.key), f.name, maxKeyLength)}
	}
	return nil
}

// validKey reports whether k can be a label or attribute key in a query.
// The rule keeps keys safe inside a JSON path (no quotes, no brackets).
func validKey(k string) bool {
	if k == "" || len(k) > maxKeyLength {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// checkCompare checks that c's operator and literal suit its field. It
// assumes checkField passed.
func checkCompare(c compareExpr) *checkError {
	t, _ := typeOf(c.field.name)
	switch c.op {
	case opEq, opNe, opLt, opLe, opGt, opGe, opGlob:
	default:
		return &checkError{msg: fmt.Sprintf("unknown operator %q", string(c.op)), atOp: true}
	}
	opErr := func(allowed string) *checkError {
		return &checkError{msg: fmt.Sprintf("operator %s does not apply to %s (use %s)", c.op, c.field, allowed), atOp: true}
	}
	switch t {
	case typeBool:
		if c.op != opEq && c.op != opNe {
			return opErr("= or !=")
		}
		if c.val.kind != kindBool {
			return &checkError{msg: fmt.Sprintf("%s is true or false, not %s", c.field, c.val.describe())}
		}
	case typeState:
		if c.op.ordering() {
			return opErr("=, != or ~")
		}
		if c.op != opGlob && !steward.State(c.val.text).Valid() {
			return &checkError{msg: fmt.Sprintf("unknown state %s (states: %s)", c.val.describe(), stateList())}
		}
	case typeFirmware:
		if c.op.ordering() && strings.HasPrefix(steward.VersionKey(c.val.text), "~") {
			return &checkError{msg: fmt.Sprintf("firmware %s needs a version such as %s, not %s", c.op, versionExample, c.val.describe())}
		}
	case typeAttribute:
		if c.op.ordering() && c.val.kind == kindBool {
			return opErr("= or != with true or false")
		}
		if c.op != opGlob && c.val.kind == kindNumber && !finite(c.val.text) {
			return &checkError{msg: fmt.Sprintf("number %s is out of range", clip(c.val.text))}
		}
	}
	return nil
}

// stateList names the lifecycle states for an error message.
func stateList() string {
	names := make([]string, len(steward.States))
	for i, st := range steward.States {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// finite reports whether a number literal fits a float64.
func finite(s string) bool {
	_, err := strconv.ParseFloat(s, 64)
	return err == nil
}

// describe shows a literal in an error message.
func (v value) describe() string {
	if v.kind == kindString {
		return strconv.Quote(clip(v.text))
	}
	return clip(v.text)
}
