package query

import (
	"strconv"
	"strings"
	"unicode"
)

// Expr is a parsed fleet query. Parse is the only way to make one, so every
// Expr is valid and compiles. String gives its canonical text, which parses
// back to an equal Expr.
type Expr interface {
	// String returns the canonical text of the query: fields bare, strings
	// double-quoted, keywords in upper case, only the parentheses that
	// precedence needs.
	String() string
	node() // seals the interface: Exprs come from Parse
}

// andExpr is true when every term is (two or more terms; nested ANDs are
// flattened by the parser).
type andExpr struct{ terms []Expr }

// orExpr is true when any term is (two or more terms, flattened).
type orExpr struct{ terms []Expr }

// notExpr negates x; a NULL inside x counts as false, so NOT of a
// comparison on a missing value is true.
type notExpr struct{ x Expr }

// compareExpr compares a field with a literal.
type compareExpr struct {
	field field
	op    op
	val   value
}

// field names a device field; key is set for labels.<key> and
// attributes.<key>.
type field struct {
	name string
	key  string
}

// op is a comparison operator, spelled as in the language.
type op string

// The comparison operators.
const (
	opEq   op = "="
	opNe   op = "!="
	opLt   op = "<"
	opLe   op = "<="
	opGt   op = ">"
	opGe   op = ">="
	opGlob op = "~"
)

// ordering reports whether o compares by order rather than by equality.
func (o op) ordering() bool { return o == opLt || o == opLe || o == opGt || o == opGe }

// valueKind is the kind of a literal.
type valueKind int

// The literal kinds.
const (
	kindString valueKind = iota + 1 // quoted string or bare word
	kindNumber                      // text holds the number as written
	kindBool                        // text is "true" or "false"
)

// value is a literal. text is the string's content, the number as written
// (so that serial = 007 keeps its zeros), or "true"/"false".
type value struct {
	kind valueKind
	text string
}

func (andExpr) node()     {}
func (orExpr) node()      {}
func (notExpr) node()     {}
func (compareExpr) node() {}

func (e andExpr) String() string     { var b strings.Builder; e.write(&b); return b.String() }
func (e orExpr) String() string      { var b strings.Builder; e.write(&b); return b.String() }
func (e notExpr) String() string     { var b strings.Builder; e.write(&b); return b.String() }
func (e compareExpr) String() string { var b strings.Builder; e.write(&b); return b.String() }

// writer is what every node can print itself to.
type writer interface{ write(*strings.Builder) }

func (e andExpr) write(b *strings.Builder) {
	for i, t := range e.terms {
		if i > 0 {
			b.WriteString(" AND ")
		}
		switch t.(type) {
		case orExpr, andExpr: // an OR needs them for precedence, an AND to stay nested
			b.WriteByte('(')
			t.(writer).write(b)
			b.WriteByte(')')
		default:
			t.(writer).write(b)
		}
	}
}

func (e orExpr) write(b *strings.Builder) {
	for i, t := range e.terms {
		if i > 0 {
			b.WriteString(" OR ")
		}
		if _, ok := t.(orExpr); ok {
			b.WriteByte('(')
			t.(writer).write(b)
			b.WriteByte(')')
			continue
		}
		t.(writer).write(b)
	}
}

func (e notExpr) write(b *strings.Builder) {
	b.WriteString("NOT ")
	switch e.x.(type) {
	case andExpr, orExpr:
		b.WriteByte('(')
		e.x.(writer).write(b)
		b.WriteByte(')')
	default:
		e.x.(writer).write(b)
	}
}

func (e compareExpr) write(b *strings.Builder) {
	b.WriteString(e.field.String())
	b.WriteByte(' ')
	b.WriteString(string(e.op))
	b.WriteByte(' ')
	e.val.write(b)
}

// String returns the field as written in a query.
func (f field) String() string {
	if f.key != "" {
		return f.name + "." + f.key
	}
	return f.name
}

func (v value) write(b *strings.Builder) {
	if v.kind == kindString {
		quote(b, v.text)
		return
	}
	b.WriteString(v.text)
}

// quote writes s as a double-quoted string literal of the language.
// Control and other invisible characters are escaped so that the canonical
// text is readable; everything else is written as is.
func quote(b *strings.Builder, s string) {
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		default:
			if r <= 0xFFFF && !unicode.IsPrint(r) && r != ' ' {
				b.WriteString(`\u`)
				h := strconv.FormatInt(int64(r), 16)
				b.WriteString(strings.Repeat("0", 4-len(h)))
				b.WriteString(h)
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
}
