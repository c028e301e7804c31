package query

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	steward "github.com/steward-iot/steward"
)

func TestParseBlank(t *testing.T) {
	t.Parallel()
	for _, src := range []string{"", " ", "\t\n\r  "} {
		e, err := Parse(src)
		if e != nil || err != nil {
			t.Errorf("Parse(%q) = %v, %v; want nil, nil", src, e, err)
		}
	}
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src, want string
	}{
		{"quoted string", `model = "gw-100"`, `model = "gw-100"`},
		{"bare word", `state = active`, `state = "active"`},
		{"no spaces", `model!=gw-100`, `model != "gw-100"`},
		{"all operators", `id = a AND id != b AND id < c AND id <= d AND id > e AND id >= f AND id ~ g*`,
			`id = "a" AND id != "b" AND id < "c" AND id <= "d" AND id > "e" AND id >= "f" AND id ~ "g*"`},
		{"keywords any case", `model = a and not online Or state = active`, `model = "a" AND NOT online = true OR state = "active"`},
		{"bare online", `online`, `online = true`},
		{"booleans any case", `online = TRUE OR online = False`, `online = true OR online = false`},
		{"firmware version word", `firmware < 2.0.0`, `firmware < "2.0.0"`},
		{"version with build", `firmware = 1.2.0+build.5`, `firmware = "1.2.0+build.5"`},
		{"glob word", `labels.site ~ plant-*`, `labels.site ~ "plant-*"`},
		{"email word", `owner = alice@example.com`, `owner = "alice@example.com"`},
		{"unicode word", `site = Zürich`, `site = "Zürich"`},
		{"integer", `attributes.cores >= 4`, `attributes.cores >= 4`},
		{"number kept as written", `serial = 007`, `serial = 007`},
		{"negative exponent", `attributes.temp > -1.5e-3`, `attributes.temp > -1.5e-3`},
		{"exponent plus", `attributes.big < 1E+9`, `attributes.big < 1E+9`},
		{"leading dot", `attributes.ratio < .5`, `attributes.ratio < .5`},
		{"not a number", `attributes.x = 1.2.3`, `attributes.x = "1.2.3"`},
		{"single quotes", `model = 'it\'s "ok"'`, `model = "it's \"ok\""`},
		{"escapes", `model = "a\\b\"c\n\r\t\u00e9"`, `model = "a\\b\"c\n\r\té"`},
		{"control character", "model = \"\x01\"", `model = "\u0001"`},
		{"raw newline in string", "model = \"a\nb\"", `model = "a\nb"`},
		{"hostile value", `serial = "' OR 1=1 --"`, `serial = "' OR 1=1 --"`},
		{"label key with dots", `labels.k8s.io-zone_1 = x`, `labels.k8s.io-zone_1 = "x"`},
		{"attribute", `attributes.region = "eu-west"`, `attributes.region = "eu-west"`},
		{"AND binds tighter than OR", `model = a OR model = b AND online`, `model = "a" OR model = "b" AND online = true`},
		{"parens kept where needed", `(model = a OR model = b) AND online`, `(model = "a" OR model = "b") AND online = true`},
		{"redundant parens dropped", `((model = a)) AND (online)`, `model = "a" AND online = true`},
		{"AND flattened", `(model = a AND model = b) AND model = c`, `model = "a" AND model = "b" AND model = "c"`},
		{"OR flattened", `model = a OR (model = b OR model = c)`, `model = "a" OR model = "b" OR model = "c"`},
		{"NOT binds tighter than AND", `NOT online AND state = active`, `NOT online = true AND state = "active"`},
		{"NOT of group", `NOT (online OR state = active)`, `NOT (online = true OR state = "active")`},
		{"double NOT", `NOT NOT online`, `NOT NOT online = true`},
		{"state glob not validated", `state ~ "*ed"`, `state ~ "*ed"`},
		{"keyword as quoted value", `owner = "and"`, `owner = "and"`},
		{"true as text field value", `labels.enabled = true`, `labels.enabled = true`},
		{"whitespace everywhere", "\tmodel\n=\r\n\"x\"  ", `model = "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Parse(tt.src)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.src, err)
			}
			if got := e.String(); got != tt.want {
				t.Fatalf("Parse(%q).String() = %s, want %s", tt.src, got, tt.want)
			}
			again, err := Parse(e.String())
			if err != nil {
				t.Fatalf("Parse(%q) (the canonical text): %v", e.String(), err)
			}
			if !reflect.DeepEqual(again, e) {
				t.Fatalf("canonical text %s parses to %#v, want %#v", e.String(), again, e)
			}
		})
	}
}

func TestParseTree(t *testing.T) {
	t.Parallel()
	cmp := func(f field, o op, k valueKind, text string) compareExpr {
		return compareExpr{f, o, value{k, text}}
	}
	model := field{name: "model"}
	online := cmp(field{name: "online"}, opEq, kindBool, "true")
	tests := []struct {
		src  string
		want Expr
	}{
		{`NOT model = a OR online`, orExpr{[]Expr{notExpr{cmp(model, opEq, kindString, "a")}, online}}},
		{`model = a OR model = b AND online`, orExpr{[]Expr{
			cmp(model, opEq, kindString, "a"),
			andExpr{[]Expr{cmp(model, opEq, kindString, "b"), online}},
		}}},
		{`labels.site ~ "plant-*" AND NOT online`, andExpr{[]Expr{
			cmp(field{"labels", "site"}, opGlob, kindString, "plant-*"),
			notExpr{online},
		}}},
		{`attributes.temp >= -4.5`, cmp(field{"attributes", "temp"}, opGe, kindNumber, "-4.5")},
		{`attributes.secure = false`, cmp(field{"attributes", "secure"}, opEq, kindBool, "false")},
	}
	for _, tt := range tests {
		e, err := Parse(tt.src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.src, err)
		}
		if !reflect.DeepEqual(e, tt.want) {
			t.Errorf("Parse(%q) = %#v, want %#v", tt.src, e, tt.want)
		}
	}
}

// nested returns a query with n levels of parentheses around a comparison.
func nested(n int) string {
	return strings.Repeat("(", n) + "online" + strings.Repeat(")", n)
}

func TestParseLimits(t *testing.T) {
	t.Parallel()
	long := `model = "` + strings.Repeat("x", MaxLength-len(`model = ""`)) + `"`
	if _, err := Parse(long); err != nil {
		t.Errorf("a query of exactly %d bytes: %v", MaxLength, err)
	}
	for _, src := range []string{nested(MaxDepth), strings.Repeat("NOT ", MaxDepth) + "online", strings.Repeat("NOT (", MaxDepth/2) + "online" + strings.Repeat(")", MaxDepth/2)} {
		if _, err := Parse(src); err != nil {
			t.Errorf("nesting of exactly %d: %v", MaxDepth, err)
		}
	}
}

func TestParseInvalid(t *testing.T) {
	t.Parallel()
	const fields = "(fields: id, model, serial, firmware, hardware, state, online, site, owner, labels.<key>, attributes.<key>)"
	const states = "(states: registered, provisioned, active, quarantined, maintenance, decommissioned)"
	tests := []struct {
		name, src, want string
	}{
		{"unknown field", `modle = x`, `unknown field "modle" ` + fields + ` at column 1`},
		{"field is case-sensitive", `online AND Model = x`, `unknown field "Model" ` + fields + ` at column 12`},
		{"key on plain field", `model.x = 1`, `unknown field "model.x" ` + fields + ` at column 1`},
		{"labels without key", `labels = x`, `labels needs a key, as in labels.name at column 1`},
		{"attributes with empty key", `attributes. = x`, `attributes needs a key, as in attributes.name at column 1`},
		{"bad key", `labels.a*b = x`, `invalid key "a*b" in labels (a key has up to 128 letters, digits, "_", "-" and ".") at column 1`},
		{"key too long", `labels.` + strings.Repeat("k", 129) + ` = x`, `invalid key "` + strings.Repeat("k", 40) + `…" in labels (a key has up to 128 letters, digits, "_", "-" and ".") at column 1`},
		{"online string", `online = "x"`, `online is true or false, not "x" at column 10`},
		{"online number", `online = 1`, `online is true or false, not 1 at column 10`},
		{"online ordering", `online < true`, `operator < does not apply to online (use = or !=) at column 8`},
		{"online glob", `online ~ "t*"`, `operator ~ does not apply to online (use = or !=) at column 8`},
		{"unknown state", `state = bogus`, `unknown state "bogus" ` + states + ` at column 9`},
		{"state is case-sensitive", `state = "Active"`, `unknown state "Active" ` + states + ` at column 9`},
		{"state ordering", `state >= active`, `operator >= does not apply to state (use =, != or ~) at column 7`},
		{"firmware ordering needs a version", `firmware > banana`, `firmware > needs a version such as "1.2.3", not "banana" at column 12`},
		{"firmware ordering empty", `firmware <= ""`, `firmware <= needs a version such as "1.2.3", not "" at column 13`},
		{"attribute ordering boolean", `attributes.x > true`, `operator > does not apply to attributes.x (use = or != with true or false) at column 14`},
		{"number out of range", `attributes.x = 1e999`, `number 1e999 is out of range at column 16`},
		{"unterminated string", `model = "abc`, `unterminated string at column 9`},
		{"unterminated by escaped quote", `model = 'abc\'`, `unterminated string at column 9`},
		{"unterminated after backslash", `model = "abc\`, `unterminated string at column 9`},
		{"unknown escape", `model = "a\qb"`, `unknown escape "\q" (use \\, \", \', \n, \r, \t or \uXXXX) at column 11`},
		{"short unicode escape", `model = "\u12"`, `bad escape (\u needs four hex digits) at column 10`},
		{"surrogate escape", `model = "\ud800"`, `bad escape \ud800 (not a character) at column 10`},
		{"NUL escape", `model = "\u0000"`, `bad escape \u0000 (not a character) at column 10`},
		{"trailing word", `model = a b`, `expected AND, OR or the end of the query, found "b" at column 11`},
		{"trailing string", `model = a "b"`, `expected AND, OR or the end of the query, found string "b" at column 11`},
		{"trailing paren", `model = a)`, `unexpected ")" with no "(" before it at column 10`},
		{"unclosed paren", `online AND (model = a`, `unclosed "(" at column 12`},
		{"garbage in parens", `(model = a b)`, `expected AND, OR or ")", found "b" at column 12`},
		{"empty parens", `()`, `expected a condition, found ")" at column 2`},
		{"field alone", `model`, `expected an operator after model, found the end of the query at column 6`},
		{"field then field", `model serial`, `expected an operator after model, found "serial" at column 7`},
		{"missing value", `model =`, `expected a value after model =, found the end of the query at column 8`},
		{"keyword as value", `owner = and`, `expected a value after owner =, found AND (quote it to use it as text) at column 9`},
		{"paren as value", `model = (`, `expected a value after model =, found "(" at column 9`},
		{"leading AND", `AND model = a`, `expected a condition, found AND at column 1`},
		{"dangling AND", `model = a AND`, `expected a condition, found the end of the query at column 14`},
		{"lone NOT", `NOT`, `expected a condition, found the end of the query at column 4`},
		{"double OR", `online OR OR online`, `expected a condition, found OR at column 11`},
		{"string as field", `"model" = a`, `expected a condition, found string "model" at column 1`},
		{"double equals", `model == a`, `unexpected "==" (use =) at column 7`},
		{"angle not equal", `model <> a`, `unexpected "<>" (use !=) at column 7`},
		{"bang", `!online`, `unexpected "!" (use != or NOT) at column 1`},
		{"C and", `online && model = a`, `unexpected "&&" (use AND) at column 8`},
		{"C or", `online || model = a`, `unexpected "||" (use OR) at column 8`},
		{"semicolon", `model = "x"; DROP TABLE devices`, `unexpected character ';' at column 12`},
		{"hash", `model = a # comment`, `unexpected character '#' at column 11`},
		{"NUL byte", "model = a\x00", `unexpected NUL character at column 10`},
		{"NUL byte in string", "model = \"a\x00\"", `unexpected NUL character at column 11`},
		{"invalid UTF-8", "model = \xff", `invalid UTF-8 at column 9`},
		{"column counts characters", `site = Zürich x`, `expected AND, OR or the end of the query, found "x" at column 15`},
		{"too long", strings.Repeat(" ", MaxLength+1), `too long: 4097 bytes, at most 4096`},
		{"too long in canonical form", strings.Repeat("online OR ", 400) + "online", `too long: 6813 bytes in canonical form, at most 4096`},
		{"parens too deep", nested(MaxDepth + 1), `nested deeper than 32 levels at column 33`},
		{"NOTs too deep", strings.Repeat("NOT ", MaxDepth+1) + "online", `nested deeper than 32 levels at column 129`},
		{"mixed too deep", strings.Repeat("NOT (", MaxDepth/2) + "NOT online" + strings.Repeat(")", MaxDepth/2), `nested deeper than 32 levels at column 81`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e, err := Parse(tt.src)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", tt.src, e)
			}
			if e != nil {
				t.Errorf("Parse(%q) returned %v with its error", tt.src, e)
			}
			var se *steward.Error
			if !errors.As(err, &se) {
				t.Fatalf("Parse(%q) error %T %v is not a *steward.Error", tt.src, err, err)
			}
			if se.Code != steward.CodeInvalid {
				t.Errorf("code = %s, want %s", se.Code, steward.CodeInvalid)
			}
			if want := "query: " + tt.want; se.Message != want {
				t.Errorf("Parse(%q) message\n got %s\nwant %s", tt.src, se.Message, want)
			}
		})
	}
}
