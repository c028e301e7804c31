package query

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	steward "github.com/steward-iot/steward"
)

var update = flag.Bool("update", false, "rewrite testdata/compile.golden")

// goldenQueries cover every field type, operator and literal kind, and the
// escaping of globs, in both dialects.
var goldenQueries = []string{
	``,
	`model = "gw-100" AND firmware < "2.0.0"`,
	`labels.site ~ "plant-*" AND NOT online`,
	`id = d-0123 OR serial != SN1 OR hardware < revC OR site <= b OR owner > c OR model >= d`,
	`state = active`,
	`state != decommissioned`,
	`state ~ "*ed"`,
	`online = false`,
	`online != true`,
	`firmware = 1.10.0`,
	`firmware != 1.10.0`,
	`firmware ~ "1.10.*"`,
	`firmware < 1.10.0`,
	`firmware <= 1.10.0-rc.1`,
	`firmware > v1.9`,
	`firmware >= 2.0.0-beta.2+build.9`,
	`labels.tier = gold`,
	`labels.tier != gold`,
	`labels.k8s.io-zone_1 > b`,
	`attributes.temp > 50`,
	`attributes.temp <= -0.5e1`,
	`attributes.cores != 4`,
	`attributes.rack = "12"`,
	`attributes.rack < "B"`,
	`attributes.rack != "12"`,
	`attributes.secure_boot = true`,
	`attributes.secure_boot != false`,
	`attributes.note ~ "50%_off\\*"`,
	`attributes.cores ~ 4`,
	`model ~ "a[b]c?%_\\*"`,
	`NOT (state = active OR online) AND NOT NOT labels.x = y`,
	`serial = "' OR 1=1 --"`,
}

// formatArgs shows arguments with their Go types, which the drivers bind by.
func formatArgs(args []any) string {
	parts := make([]string, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			parts[i] = "string " + strconv.Quote(s)
		} else {
			parts[i] = fmt.Sprintf("%T %v", a, a)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func TestCompileGolden(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	b.WriteString("# Compile output for each query, SQLite then PostgreSQL (firstArg 1).\n# Regenerate with: go test ./query -run TestCompileGolden -update\n")
	for _, src := range goldenQueries {
		e, err := Parse(src)
		if err != nil {
			t.Fatalf("Parse(%q): %v", src, err)
		}
		fmt.Fprintf(&b, "\nquery:    %s\n", src)
		for _, d := range []Dialect{SQLite, Postgres} {
			cond, args, err := Compile(e, d, 1)
			if err != nil {
				t.Fatalf("Compile(%q, %s): %v", src, d, err)
			}
			fmt.Fprintf(&b, "%-9s %s\n          %s\n", d.String()+":", cond, formatArgs(args))
		}
	}
	path := filepath.Join("testdata", "compile.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got := b.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := range max(len(gl), len(wl)) {
			var g, w string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("compile output differs from %s at line %d:\n got %s\nwant %s", path, i+1, g, w)
			}
		}
	}
}

func TestCompileNil(t *testing.T) {
	t.Parallel()
	for d, want := range map[Dialect]string{SQLite: "1=1", Postgres: "TRUE"} {
		cond, args, err := Compile(nil, d, 7)
		if err != nil || cond != want || args != nil {
			t.Errorf("Compile(nil, %s) = %q, %v, %v; want %q", d, cond, args, err, want)
		}
	}
}

func TestCompileFirstArg(t *testing.T) {
	t.Parallel()
	e, err := Parse(`model = a OR attributes.temp > 5 AND firmware >= 1.2`)
	if err != nil {
		t.Fatal(err)
	}
	cond, args, err := Compile(e, Postgres, 4)
	if err != nil {
		t.Fatal(err)
	}
	const want = `(model = $4 OR (CASE WHEN jsonb_typeof(attributes->($5::text)) = 'number' THEN (attributes->>($6::text))::numeric END > $7::text::numeric AND (firmware_key COLLATE "C" >= $8 AND firmware_key COLLATE "C" < '~')))`
	if cond != want {
		t.Errorf("cond\n got %s\nwant %s", cond, want)
	}
	if len(args) != 5 {
		t.Errorf("args = %v, want 5", args)
	}
	// SQLite numbers nothing: firstArg changes nothing.
	c1, a1, _ := Compile(e, SQLite, 1)
	c9, a9, _ := Compile(e, SQLite, 9)
	if c1 != c9 || formatArgs(a1) != formatArgs(a9) {
		t.Errorf("SQLite output depends on firstArg: %s %v / %s %v", c1, a1, c9, a9)
	}
}

func TestCompileBadCalls(t *testing.T) {
	t.Parallel()
	e, err := Parse(`online`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		d        Dialect
		firstArg int
	}{
		{"zero dialect", Dialect{}, 1},
		{"postgres placeholder 0", Postgres, 0},
	}
	for _, tt := range tests {
		cond, args, err := Compile(e, tt.d, tt.firstArg)
		if steward.ErrorCode(err) != steward.CodeInternal || cond != "" || args != nil {
			t.Errorf("%s: Compile = %q, %v, %v; want a CodeInternal error", tt.name, cond, args, err)
		}
	}
	// A malformed tree cannot come from Parse; Compile still refuses it
	// rather than writing bad SQL.
	for _, bad := range []Expr{
		andExpr{},
		compareExpr{field{name: "nope"}, opEq, value{kindString, "x"}},
		compareExpr{field{name: "labels", key: `a"b`}, opEq, value{kindString, "x"}},
		compareExpr{field{name: "online"}, opEq, value{kindString, "x"}},
		compareExpr{field{name: "model"}, op("=="), value{kindString, "x"}},
	} {
		_, _, err := Compile(bad, SQLite, 1)
		var se *steward.Error
		if !errors.As(err, &se) || se.Code != steward.CodeInternal {
			t.Errorf("Compile(%#v) error = %v, want CodeInternal", bad, err)
		}
	}
}

// placeholders counts the placeholders in cond: `?` for SQLite, and checks
// that PostgreSQL's are numbered first, first+1, … in order.
func placeholders(t testing.TB, cond string, d Dialect, first int) int {
	t.Helper()
	if d == SQLite {
		return strings.Count(cond, "?")
	}
	ms := regexp.MustCompile(`\$(\d+)`).FindAllStringSubmatch(cond, -1)
	for i, m := range ms {
		if n, _ := strconv.Atoi(m[1]); n != first+i {
			t.Fatalf("placeholder %d is $%s, want $%d in %s", i, m[1], first+i, cond)
		}
	}
	return len(ms)
}

func TestCompilePlaceholdersMatchArgs(t *testing.T) {
	t.Parallel()
	for _, src := range goldenQueries {
		e, err := Parse(src)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range []Dialect{SQLite, Postgres} {
			cond, args, err := Compile(e, d, 3)
			if err != nil {
				t.Fatal(err)
			}
			if n := placeholders(t, cond, d, 3); n != len(args) {
				t.Errorf("%s %s: %d placeholders, %d args", d, src, n, len(args))
			}
		}
	}
}

func TestPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct{ glob, like, sqliteGlob string }{
		{"plant-*", "plant-%", "plant-*"},
		{"a?c", "a_c", "a?c"},
		{"50%_off", `50\%\_off`, "50%_off"},
		{`back\slash`, `back\\slash`, `back\slash`},
		{"a[b]c", "a[b]c", "a[[]b]c"},
		{"[[*", "[[%", "[[][[]*"},
	}
	for _, tt := range tests {
		if got := likePattern(tt.glob); got != tt.like {
			t.Errorf("likePattern(%q) = %q, want %q", tt.glob, got, tt.like)
		}
		if got := globPattern(tt.glob); got != tt.sqliteGlob {
			t.Errorf("globPattern(%q) = %q, want %q", tt.glob, got, tt.sqliteGlob)
		}
	}
}
