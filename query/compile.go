package query

import (
	"strconv"
	"strings"

	steward "github.com/steward-iot/steward"
)

// Dialect is an SQL dialect that Compile writes for. The two values are
// SQLite and Postgres; the zero Dialect is invalid.
type Dialect struct{ name string }

// The dialects.
var (
	// SQLite is SQLite 3.23 or later (modernc.org/sqlite): `?` placeholders,
	// labels and attributes as JSON TEXT read with json_extract, online as
	// INTEGER 0/1.
	SQLite = Dialect{name: "sqlite"}
	// Postgres is PostgreSQL 12 or later: `$n` placeholders, labels and
	// attributes as JSONB, online as boolean.
	Postgres = Dialect{name: "postgres"}
)

// String names the dialect.
func (d Dialect) String() string {
	if d.name == "" {
		return "invalid dialect"
	}
	return d.name
}

// Compile turns e into a boolean SQL condition over the columns of the
// device table, to be put in a WHERE clause (combined with the caller's own
// conditions by AND; it is parenthesised). Every literal of the query is
// passed in args, never written into cond; args hold string, int64, float64
// and bool values. For Postgres the placeholders are numbered from
// firstArg ($firstArg, $firstArg+1, …); for SQLite they are plain `?`, in
// the order of args, and firstArg is ignored.
//
// A nil e (the empty query) compiles to a condition that is always true.
// Rows for which cond is NULL do not match, as in any WHERE clause; NOT in
// a query treats NULL as false, so NOT (labels.site = "x") matches the
// devices without that label.
func Compile(e Expr, d Dialect, firstArg int) (cond string, args []any, err error) {
	var pg bool
	switch d {
	case SQLite:
	case Postgres:
		pg = true
		if firstArg < 1 {
			return "", nil, steward.Errorf(steward.CodeInternal, "query: first placeholder $%d is not positive", firstArg)
		}
	default:
		return "", nil, steward.Errorf(steward.CodeInternal, "query: compile for an invalid dialect")
	}
	if e == nil {
		if pg {
			return "TRUE", nil, nil
		}
		return "1=1", nil, nil
	}
	c := &compiler{pg: pg, n: firstArg}
	if err := c.group(e, 0); err != nil {
		return "", nil, err
	}
	return c.b.String(), c.args, nil
}

// compiler writes one condition.
type compiler struct {
	pg   bool
	n    int // the number of the next PostgreSQL placeholder
	args []any
	b    strings.Builder
}

// maxTreeDepth bounds the recursion over an Expr. Parse keeps parsed trees
// well below it (MaxDepth counts parentheses and NOTs; each parenthesis can
// add an OR and an AND level); it guards against a bug making a cycle.
const maxTreeDepth = 4*MaxDepth + 4

// param adds an argument and returns its placeholder.
func (c *compiler) param(v any) string {
	c.args = append(c.args, v)
	if !c.pg {
		return "?"
	}
	s := "$" + strconv.Itoa(c.n)
	c.n++
	return s
}

func (c *compiler) expr(e Expr, depth int) error {
	if depth > maxTreeDepth {
		return steward.Errorf(steward.CodeInternal, "query: expression nested deeper than %d", maxTreeDepth)
	}
	switch e := e.(type) {
	case andExpr:
		return c.list(e.terms, " AND ", depth)
	case orExpr:
		return c.list(e.terms, " OR ", depth)
	case notExpr:
		// IS NOT TRUE rather than NOT: a comparison on a missing value is
		// NULL, and NOT NULL would be NULL again, dropping the device.
		if err := c.group(e.x, depth+1); err != nil {
			return err
		}
		c.b.WriteString(" IS NOT TRUE")
		return nil
	case compareExpr:
		return c.compare(e)
	default:
		return steward.Errorf(steward.CodeInternal, "query: unknown expression %T", e)
	}
}

// group writes e in parentheses, unless its SQL already has them.
func (c *compiler) group(e Expr, depth int) error {
	if parenthesised(e) {
		return c.expr(e, depth)
	}
	c.b.WriteByte('(')
	if err := c.expr(e, depth); err != nil {
		return err
	}
	c.b.WriteByte(')')
	return nil
}

// parenthesised reports whether the SQL of e comes in parentheses.
func parenthesised(e Expr) bool {
	switch e := e.(type) {
	case andExpr, orExpr:
		return true
	case compareExpr: // firmware ordering is a range
		return e.field.name == "firmware" && e.op.ordering()
	}
	return false
}

func (c *compiler) list(terms []Expr, sep string, depth int) error {
	if len(terms) == 0 {
		return steward.Errorf(steward.CodeInternal, "query: empty%s", sep)
	}
	c.b.WriteByte('(')
	for i, t := range terms {
		if i > 0 {
			c.b.WriteString(sep)
		}
		if err := c.expr(t, depth+1); err != nil {
			return err
		}
	}
	c.b.WriteByte(')')
	return nil
}

// compare writes one comparison as `view op param`, where view is the
// field's value as SQL sees it, NULL when the device has none (or, for an
// attribute, none of the literal's type).
func (c *compiler) compare(x compareExpr) error {
	// Parse has checked x; a failure here is a bug, not the caller's fault.
	if err := checkField(x.field); err != nil {
		return steward.Errorf(steward.CodeInternal, "query: %s", err.msg)
	}
	if err := checkCompare(x); err != nil {
		return steward.Errorf(steward.CodeInternal, "query: %s", err.msg)
	}
	t, _ := typeOf(x.field.name)
	lit := x.val.text
	switch {
	case x.op == opGlob:
		// A glob always matches text: a number or true/false is its text.
		c.textView(x.field, t)
		if c.pg {
			c.b.WriteString(" LIKE " + c.param(likePattern(lit)) + ` ESCAPE '\'`)
		} else {
			c.b.WriteString(" GLOB " + c.param(globPattern(lit)))
		}
	case t == typeBool:
		c.b.WriteString("online")
		c.op(x.op, c.boolParam(lit == "true"))
	case t == typeFirmware && x.op.ordering():
		// firmware_key = steward.VersionKey(firmware) orders as semantic
		// versions. A version's key starts with a digit; the key of a
		// string that is not a version (and of an empty firmware) starts
		// with "~", after every version, and a store's default key may be
		// "". The other bound keeps both out: only versions are ordered.
		key := "firmware_key"
		if c.pg {
			key = `firmware_key COLLATE "C"`
		}
		c.b.WriteByte('(')
		c.b.WriteString(key)
		c.op(x.op, c.param(steward.VersionKey(lit)))
		if x.op == opGt || x.op == opGe {
			c.b.WriteString(" AND " + key + " < '~')")
		} else {
			c.b.WriteString(" AND " + key + " >= '0')")
		}
	case t == typeAttribute && x.val.kind == kindNumber:
		k := x.field.key
		if c.pg {
			c.b.WriteString("CASE WHEN jsonb_typeof(attributes->(" + c.param(k) + "::text)) = 'number' THEN (attributes->>(" + c.param(k) + "::text))::numeric END")
			// The number goes as text and is cast, so that 0.1 stays exactly 0.1.
			c.op(x.op, c.param(lit)+"::text::numeric")
			return nil
		}
		c.b.WriteString("CASE WHEN json_type(attributes, " + c.param(jsonPath(k)) + ") IN ('integer', 'real') THEN json_extract(attributes, " + c.param(jsonPath(k)) + ") END")
		c.op(x.op, c.param(sqliteNumber(lit)))
	case t == typeAttribute && x.val.kind == kindBool:
		k := x.field.key
		if c.pg {
			c.b.WriteString("CASE WHEN jsonb_typeof(attributes->(" + c.param(k) + "::text)) = 'boolean' THEN (attributes->>(" + c.param(k) + "::text))::boolean END")
		} else {
			c.b.WriteString("CASE json_type(attributes, " + c.param(jsonPath(k)) + ") WHEN 'true' THEN 1 WHEN 'false' THEN 0 END")
		}
		c.op(x.op, c.boolParam(lit == "true"))
	default:
		c.textView(x.field, t)
		if c.pg && x.op.ordering() {
			// Byte order, as in SQLite, whatever the database's collation.
			c.b.WriteString(` COLLATE "C"`)
		}
		c.op(x.op, c.param(lit))
	}
	return nil
}

// op writes ` op p`. != is true when the view is NULL: a device without
// the value is not equal to it.
func (c *compiler) op(o op, p string) {
	switch {
	case o == opNe && c.pg:
		c.b.WriteString(" IS DISTINCT FROM " + p)
	case o == opNe:
		c.b.WriteString(" IS NOT " + p)
	default:
		c.b.WriteString(" " + string(o) + " " + p)
	}
}

// boolParam adds a boolean argument: 0/1 for SQLite, which stores online
// as INTEGER.
func (c *compiler) boolParam(v bool) string {
	if c.pg {
		return c.param(v)
	}
	if v {
		return c.param(int64(1))
	}
	return c.param(int64(0))
}

// textView writes the field's value as text, parenthesised when it is more
// than a column name so that an operator or COLLATE after it binds to all
// of it.
func (c *compiler) textView(f field, t fieldType) {
	switch t {
	case typeLabel:
		if c.pg {
			c.b.WriteString("(labels->>(" + c.param(f.key) + "::text))")
		} else {
			c.b.WriteString("json_extract(labels, " + c.param(jsonPath(f.key)) + ")")
		}
	case typeAttribute:
		// Only a JSON string is text: an object's JSON or a number's digits
		// do not match a string literal.
		if c.pg {
			c.b.WriteString("(CASE WHEN jsonb_typeof(attributes->(" + c.param(f.key) + "::text)) = 'string' THEN attributes->>(" + c.param(f.key) + "::text) END)")
		} else {
			c.b.WriteString("(CASE WHEN json_type(attributes, " + c.param(jsonPath(f.key)) + ") = 'text' THEN json_extract(attributes, " + c.param(jsonPath(f.key)) + ") END)")
		}
	default: // the column of the same name; checkField admitted only known names
		c.b.WriteString(f.name)
	}
}

// jsonPath is the SQLite JSON path of a top-level key. validKey admits no
// quote, so the quoted form is safe; it is passed as an argument anyway.
func jsonPath(key string) string { return `$."` + key + `"` }

// sqliteNumber is a number literal as SQLite should compare it: an int64
// when it is one (exact), else a float64.
func sqliteNumber(lit string) any {
	if n, err := strconv.ParseInt(lit, 10, 64); err == nil {
		return n
	}
	f, _ := strconv.ParseFloat(lit, 64) // checkCompare refused the numbers it fails on
	return f
}

// globPattern makes a SQLite GLOB pattern that treats only * and ? as
// wildcards: "[" opens a character class in GLOB, so it is written "[[]".
func globPattern(g string) string {
	return strings.ReplaceAll(g, "[", "[[]")
}

// likePattern makes a LIKE pattern (with ESCAPE '\') from a glob: * is %,
// ? is _, and a literal %, _ or \ is escaped.
func likePattern(g string) string {
	var b strings.Builder
	b.Grow(len(g) + 4)
	for _, r := range g {
		switch r {
		case '*':
			b.WriteByte('%')
		case '?':
			b.WriteByte('_')
		case '%', '_', '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
