package query

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	steward "github.com/steward-iot/steward"
)

// FuzzParse checks that Parse never panics, that its errors are
// CodeInvalid, that every parsed query's canonical text parses back to an
// equal Expr with the same text, and that every parsed query compiles for
// both dialects with one argument per placeholder.
func FuzzParse(f *testing.F) {
	for _, q := range goldenQueries {
		f.Add(q)
	}
	for _, c := range semanticsCases {
		f.Add(c.query)
	}
	for _, q := range []string{
		`NOT NOT (online OR (state = active AND NOT labels.a.b ~ 'x*'))`,
		`model = "\u00e9\t\"\\'" OR serial = 'a\'b'`,
		"model = \"\x01\x7f\u0085\u2028\"",
		`attributes.x = -.5E+10 OR attributes.y != 1.`,
		`(((model = a)))`,
		`model = a OR (model = b OR (model = c AND (online)))`,
		`owner = "AND" AND owner = or`,
		`firmware >= 1.0.0-0.3.7 AND firmware < 1.0.0-alpha+001`,
		nested(MaxDepth),
		strings.Repeat("NOT ", MaxDepth+1) + "online",
		`site = Zürich x`,
		"model = \xff",
		`model = "unterminated`,
	} {
		f.Add(q)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var se *steward.Error
			if !errors.As(err, &se) || se.Code != steward.CodeInvalid || !strings.HasPrefix(se.Message, "query: ") {
				t.Fatalf("Parse(%q) error %#v is not a CodeInvalid query error", src, err)
			}
			if e != nil {
				t.Fatalf("Parse(%q) returned %v with an error", src, e)
			}
			return
		}
		if e == nil {
			if strings.Trim(src, " \t\n\r") != "" {
				t.Fatalf("Parse(%q) = nil, nil for a query that is not blank", src)
			}
			return
		}
		text := e.String()
		again, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) = %s, which does not parse: %v", src, text, err)
		}
		if again.String() != text {
			t.Fatalf("Parse(%q) = %s, which parses to %s", src, text, again.String())
		}
		if !reflect.DeepEqual(again, e) {
			t.Fatalf("Parse(%q) = %#v; its text %s parses to %#v", src, e, text, again)
		}
		for _, d := range []Dialect{SQLite, Postgres} {
			cond, args, err := Compile(e, d, 1)
			if err != nil {
				t.Fatalf("Compile(%s, %s): %v", text, d, err)
			}
			if n := placeholders(t, cond, d, 1); n != len(args) {
				t.Fatalf("Compile(%s, %s) = %s with %d placeholders and %d args", text, d, cond, n, len(args))
			}
		}
	})
}
