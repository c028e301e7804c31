package steward

import (
	"regexp"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"abcdefghijkl", 5, "abcde…"},
		{"ab€cd", 3, "ab…"}, // the euro sign's three bytes would be cut: it goes whole
		{"ab€cd", 5, "ab€…"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got := Truncate(tc.in, tc.limit)
			if got != tc.want || !utf8.ValidString(got) {
				t.Fatalf("Truncate(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
			}
		})
	}
}

func TestNewDeviceID(t *testing.T) {
	t.Parallel()
	form := regexp.MustCompile(`^d-[a-z2-7]{20}$`)
	a, b := NewDeviceID(), NewDeviceID()
	if !form.MatchString(a) || !form.MatchString(b) || a == b {
		t.Fatalf("NewDeviceID gave %q and %q", a, b)
	}
}
