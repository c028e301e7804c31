package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	steward "github.com/steward-iot/steward"
)

// tokKind is the kind of a token.
type tokKind int

// The token kinds.
const (
	tokEOF tokKind = iota
	tokLParen
	tokRParen
	tokOp
	tokWord   // a bare word: field, keyword, number or unquoted string
	tokString // a quoted string, text decoded
)

// token is one lexeme; pos is its byte offset in the query.
type token struct {
	kind tokKind
	pos  int
	text string
}

// describe names a token in an error message.
func (t token) describe() string {
	switch t.kind {
	case tokEOF:
		return "the end of the query"
	case tokString:
		return fmt.Sprintf("string %q", clip(t.text))
	case tokWord:
		if kw := keyword(t.text); kw != "" {
			return kw
		}
	}
	return fmt.Sprintf("%q", clip(t.text))
}

// keyword returns the upper-case keyword a word spells, or "".
func keyword(w string) string {
	switch len(w) {
	case 2, 3, 4, 5:
		switch u := strings.ToUpper(w); u {
		case "AND", "OR", "NOT", "TRUE", "FALSE":
			return u
		}
	}
	return ""
}

// wordRune reports whether r may appear in a bare word. Bare words cover
// field names, numbers, versions, globs and simple strings (gw-100,
// 1.2.0+build, plant-*, alice@example.com); anything else must be quoted.
func wordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune("_-.+*?@:/", r)
}

// lex splits src into tokens, ending with a tokEOF.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		r, n := utf8.DecodeRuneInString(src[i:])
		switch {
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			i += n
		case r == '(':
			toks = append(toks, token{tokLParen, i, "("})
			i++
		case r == ')':
			toks = append(toks, token{tokRParen, i, ")"})
			i++
		case r == '"' || r == '\'':
			s, end, err := lexString(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokString, i, s})
			i = end
		case r == '=' || r == '!' || r == '<' || r == '>' || r == '~':
			o, err := lexOp(src, i)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokOp, i, o})
			i += len(o)
		case wordRune(r):
			j := i + n
			for j < len(src) {
				r, n := utf8.DecodeRuneInString(src[j:])
				if !wordRune(r) {
					break
				}
				j += n
			}
			toks = append(toks, token{tokWord, i, src[i:j]})
			i = j
		case r == '&' && strings.HasPrefix(src[i:], "&&"):
			return nil, syntaxError(src, i, `unexpected "&&" (use AND)`)
		case r == '|' && strings.HasPrefix(src[i:], "||"):
			return nil, syntaxError(src, i, `unexpected "||" (use OR)`)
		case r == 0:
			return nil, syntaxError(src, i, "unexpected NUL character")
		default:
			return nil, syntaxError(src, i, "unexpected character %q", r)
		}
	}
	return append(toks, token{tokEOF, len(src), ""}), nil
}

// lexOp reads the operator at src[i].
func lexOp(src string, i int) (string, error) {
	two := src[i:min(i+2, len(src))]
	switch two {
	case "!=", "<=", ">=":
		return two, nil
	case "==":
		return "", syntaxError(src, i, `unexpected "==" (use =)`)
	case "<>":
		return "", syntaxError(src, i, `unexpected "<>" (use !=)`)
	}
	if src[i] == '!' {
		return "", syntaxError(src, i, `unexpected "!" (use != or NOT)`)
	}
	return src[i : i+1], nil
}

// lexString reads the quoted string that starts at src[start] and returns
// its decoded text and the offset just past its closing quote.
func lexString(src string, start int) (string, int, error) {
	q := src[start]
	var b strings.Builder
	i := start + 1
	for i < len(src) {
		c := src[i]
		switch {
		case c == q:
			return b.String(), i + 1, nil
		case c == 0: // PostgreSQL text cannot hold it, so no query can match it
			return "", 0, syntaxError(src, i, "unexpected NUL character")
		case c == '\\':
			if i+1 >= len(src) {
				return "", 0, syntaxError(src, start, "unterminated string")
			}
			switch e := src[i+1]; e {
			case '\\', '"', '\'':
				b.WriteByte(e)
				i += 2
			case 'n':
				b.WriteByte('\n')
				i += 2
			case 'r':
				b.WriteByte('\r')
				i += 2
			case 't':
				b.WriteByte('\t')
				i += 2
			case 'u':
				h := src[i+2 : min(i+6, len(src))]
				v, err := strconv.ParseUint(h, 16, 32)
				if len(h) != 4 || err != nil || strings.ContainsAny(h, "+-_") {
					return "", 0, syntaxError(src, i, `bad escape (\u needs four hex digits)`)
				}
				r := rune(v)
				if r == 0 || !utf8.ValidRune(r) {
					return "", 0, syntaxError(src, i, `bad escape \u%s (not a character)`, h)
				}
				b.WriteRune(r)
				i += 6
			default:
				r, _ := utf8.DecodeRuneInString(src[i+1:])
				return "", 0, syntaxError(src, i, `unknown escape "\%c" (use \\, \", \', \n, \r, \t or \uXXXX)`, r)
			}
		default:
			b.WriteByte(c)
			i++
		}
	}
	return "", 0, syntaxError(src, start, "unterminated string")
}

// parser is a recursive-descent parser over the tokens of one query; depth
// counts the open parentheses and NOTs.
type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorAt(t token, format string, args ...any) *steward.Error {
	return syntaxError(p.src, t.pos, format, args...)
}

// isKeyword reports whether t is the keyword kw.
func isKeyword(t token, kw string) bool { return t.kind == tokWord && keyword(t.text) == kw }

// parseOr parses or_expr = and_expr { "OR" and_expr }.
func (p *parser) parseOr() (Expr, error) {
	var terms []Expr
	for {
		e, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		if o, ok := e.(orExpr); ok { // (a OR b) OR c is a OR b OR c
			terms = append(terms, o.terms...)
		} else {
			terms = append(terms, e)
		}
		if !isKeyword(p.peek(), "OR") {
			break
		}
		p.next()
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return orExpr{terms}, nil
}

// parseAnd parses and_expr = unary { "AND" unary }.
func (p *parser) parseAnd() (Expr, error) {
	var terms []Expr
	for {
		e, err := p.parseUnary()
		if err != nil {
			return nil, err
		}
		if a, ok := e.(andExpr); ok {
			terms = append(terms, a.terms...)
		} else {
			terms = append(terms, e)
		}
		if !isKeyword(p.peek(), "AND") {
			break
		}
		p.next()
	}
	if len(terms) == 1 {
		return terms[0], nil
	}
	return andExpr{terms}, nil
}

// enter counts one more level of nesting at t.
func (p *parser) enter(t token) error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errorAt(t, "nested deeper than %d levels", MaxDepth)
	}
	return nil
}

// parseUnary parses unary = "NOT" unary | primary.
func (p *parser) parseUnary() (Expr, error) {
	t := p.peek()
	if !isKeyword(t, "NOT") {
		return p.parsePrimary()
	}
	p.next()
	if err := p.enter(t); err != nil {
		return nil, err
	}
	x, err := p.parseUnary()
	if err != nil {
		return nil, err
	}
	p.depth--
	return notExpr{x}, nil
}

// parsePrimary parses primary = "(" or_expr ")" | comparison | "online".
func (p *parser) parsePrimary() (Expr, error) {
	t := p.next()
	switch {
	case t.kind == tokLParen:
		if err := p.enter(t); err != nil {
			return nil, err
		}
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.next(); c.kind != tokRParen {
			if c.kind == tokEOF {
				return nil, p.errorAt(t, `unclosed "("`)
			}
			return nil, p.errorAt(c, `expected AND, OR or ")", found %s`, c.describe())
		}
		p.depth--
		return e, nil
	case t.kind == tokWord && keyword(t.text) == "":
		return p.parseComparison(t)
	default:
		return nil, p.errorAt(t, "expected a condition, found %s", t.describe())
	}
}

// parseComparison parses comparison = field op value, or a bare boolean
// field, the field word being t.
func (p *parser) parseComparison(t token) (Expr, error) {
	f := field{name: t.text}
	if name, key, ok := strings.Cut(t.text, "."); ok {
		f = field{name: name, key: key}
	}
	if err := checkField(f); err != nil {
		return nil, p.errorAt(t, "%s", err.msg)
	}
	ot := p.peek()
	if ot.kind != tokOp {
		if f.name == "online" && f.key == "" { // "online" alone means online = true
			return compareExpr{f, opEq, value{kindBool, "true"}}, nil
		}
		return nil, p.errorAt(ot, "expected an operator after %s, found %s", f, ot.describe())
	}
	p.next()
	vt := p.next()
	var v value
	switch {
	case vt.kind == tokString:
		v = value{kindString, vt.text}
	case vt.kind == tokWord:
		switch kw := keyword(vt.text); kw {
		case "TRUE", "FALSE":
			v = value{kindBool, strings.ToLower(kw)}
		case "":
			if isNumber(vt.text) {
				v = value{kindNumber, vt.text}
			} else {
				v = value{kindString, vt.text}
			}
		default:
			return nil, p.errorAt(vt, "expected a value after %s %s, found %s (quote it to use it as text)", f, ot.text, kw)
		}
	default:
		return nil, p.errorAt(vt, "expected a value after %s %s, found %s", f, ot.text, vt.describe())
	}
	c := compareExpr{f, op(ot.text), v}
	if err := checkCompare(c); err != nil {
		at := vt
		if err.atOp {
			at = ot
		}
		return nil, p.errorAt(at, "%s", err.msg)
	}
	return c, nil
}

// isNumber reports whether w is a decimal number:
// ["-"] (digits ["." {digit}] | "." digits) [("e"|"E") ["+"|"-"] digits].
// strconv.ParseFloat alone would also take "Inf", "NaN", hex and underscores.
func isNumber(w string) bool {
	i := 0
	if i < len(w) && w[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(w) && w[i] >= '0' && w[i] <= '9' {
			i++
		}
		return i - j
	}
	n := digits()
	if i < len(w) && w[i] == '.' {
		i++
		n += digits()
	}
	if n == 0 {
		return false
	}
	if i < len(w) && (w[i] == 'e' || w[i] == 'E') {
		i++
		if i < len(w) && (w[i] == '+' || w[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(w)
}
