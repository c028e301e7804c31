// Package query is Steward's fleet query language: it parses a query such as
//
//	model = "gw-100" AND firmware < "2.0.0" AND NOT labels.site ~ "lab-*"
//
// into an Expr and compiles an Expr to a parameterised SQL condition over the
// device table, for SQLite and for PostgreSQL. docs/query.md describes the
// language for users.
//
// The parser is a small hand-written recursive-descent parser: the grammar
// has a dozen productions, errors must name the column and say what was
// expected in words an operator understands, and the input limits (length,
// nesting depth) must be enforced while parsing. A parser generator or
// combinator library would add a dependency and a build step and give worse
// error messages for a language this size.
package query

import (
	"fmt"
	"unicode/utf8"

	steward "github.com/steward-iot/steward"
)

// Limits on a query, to keep a hostile query from costing the server much.
const (
	// MaxLength is the longest query accepted, in bytes.
	MaxLength = 4096
	// MaxDepth is the deepest nesting of parentheses and NOTs accepted.
	MaxDepth = 32
)

// Parse parses a fleet query. An empty or blank query selects every device:
// Parse returns a nil Expr and no error. An invalid query is a
// *steward.Error with steward.CodeInvalid whose message gives the column
// (1-based, in characters) where the problem is. A query is at most
// MaxLength bytes, both as given and in its canonical form (Expr.String),
// and nests at most MaxDepth parentheses and NOTs.
func Parse(src string) (Expr, error) {
	if len(src) > MaxLength {
		return nil, steward.Errorf(steward.CodeInvalid, "query: too long: %d bytes, at most %d", len(src), MaxLength)
	}
	if !utf8.ValidString(src) {
		i := 0
		for i < len(src) {
			r, n := utf8.DecodeRuneInString(src[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return nil, syntaxError(src, i, "invalid UTF-8")
	}
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	if len(toks) == 1 { // only the end: a blank query
		return nil, nil
	}
	p := &parser{src: src, toks: toks}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		if t.kind == tokRParen {
			return nil, p.errorAt(t, `unexpected ")" with no "(" before it`)
		}
		return nil, p.errorAt(t, "expected AND, OR or the end of the query, found %s", t.describe())
	}
	// The canonical text is what callers store and parse again, so it must
	// be within the limit too (quoting and escapes can make it longer).
	if n := len(e.String()); n > MaxLength {
		return nil, steward.Errorf(steward.CodeInvalid, "query: too long: %d bytes in canonical form, at most %d", n, MaxLength)
	}
	return e, nil
}

// syntaxError is the error of a query that is wrong at byte offset pos.
func syntaxError(src string, pos int, format string, args ...any) *steward.Error {
	col := utf8.RuneCountInString(src[:pos]) + 1
	return steward.Errorf(steward.CodeInvalid, "query: %s at column %d", fmt.Sprintf(format, args...), col)
}

// clip shortens user text quoted in an error message.
func clip(s string) string {
	const max = 40
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	n := 0
	for i := range s {
		if n == max {
			return s[:i] + "…"
		}
		n++
	}
	return s
}
