package query

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	steward "github.com/steward-iot/steward"
)

// TestDocs keeps docs/query.md true: every example query parses, and every
// row of its error table gives the message shown.
func TestDocs(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "docs", "query.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	examples, errs := 0, 0
	row := regexp.MustCompile("^\\| `(.+?)` \\| (.+) \\|$")
	section := ""
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(line, "## ") {
			section = line
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		src := m[1]
		switch section {
		case "## Examples":
			examples++
			if _, err := Parse(src); err != nil {
				t.Errorf("example %s: %v", src, err)
			}
		case "## Errors":
			errs++
			want := strings.Trim(m[2], "`")
			_, err := Parse(src)
			if steward.ErrorCode(err) != steward.CodeInvalid || steward.ErrorMessage(err) != want {
				t.Errorf("error example %s:\n got %v\nwant %s", src, err, want)
			}
		}
	}
	if examples < 5 || errs < 10 {
		t.Errorf("found %d examples and %d error rows in the doc; the tables' format changed?", examples, errs)
	}
	// The code block at the top.
	intro := strings.TrimSpace(between(doc, "It is a condition on each device's fields:\n\n```\n", "```"))
	if intro == "" {
		t.Error("the introduction's examples are gone")
	}
	for _, src := range strings.Split(intro, "\n") {
		if _, err := Parse(src); err != nil {
			t.Errorf("introduction example %s: %v", src, err)
		}
	}
	canon, err := Parse("state=active and not online")
	if err != nil || canon.String() != `state = "active" AND NOT online = true` || !strings.Contains(doc, "`"+canon.String()+"`") {
		t.Errorf("the canonical form example is not %v (%v)", canon, err)
	}
}

// between returns the text of s after start up to end.
func between(s, start, end string) string {
	_, after, ok := strings.Cut(s, start)
	if !ok {
		return ""
	}
	before, _, _ := strings.Cut(after, end)
	return before
}
