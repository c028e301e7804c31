package steward

import (
	"fmt"
	"strings"
)

// VersionKey turns a version string into a key whose byte order is semantic
// version order, so that stores can compare firmware versions with a plain
// string comparison in SQL (`firmware >= "1.10.0"` must not sort 1.9 after
// 1.10). Numeric parts are zero-padded; a release sorts after its
// pre-releases ("1.0.0-rc.1" < "1.0.0"); a leading "v" and build metadata
// ("+…") are ignored. Strings that are not versions still get a key, ordered
// by their text after the versions.
func VersionKey(v string) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if i := strings.IndexByte(v, '+'); i >= 0 {
		v = v[:i]
	}
	core, pre, hasPre := strings.Cut(v, "-")
	var b strings.Builder
	parts := strings.Split(core, ".")
	for len(parts) < 3 {
		parts = append(parts, "0") // "1.2" is "1.2.0"
	}
	for _, part := range parts {
		n, ok := digits(part)
		if !ok {
			return "~" + v // not a version: after every version
		}
		b.WriteString(n)
		b.WriteByte('.')
	}
	if !hasPre {
		b.WriteByte('~') // '~' sorts after '!', so a release follows its pre-releases
		return b.String()
	}
	b.WriteByte('!')
	for _, id := range strings.Split(pre, ".") {
		if n, ok := digits(id); ok {
			b.WriteString("0" + n) // numeric identifiers sort before alphanumeric ones
		} else {
			b.WriteString("1" + id)
		}
		b.WriteByte('.')
	}
	return b.String()
}

// digits zero-pads a decimal number to 12 places.
func digits(s string) (string, bool) {
	if s == "" || len(s) > 12 {
		return "", false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return "", false
		}
	}
	return fmt.Sprintf("%012s", s), true
}

// CompareVersions compares two versions in semantic version order, returning
// -1, 0 or +1.
func CompareVersions(a, b string) int {
	return strings.Compare(VersionKey(a), VersionKey(b))
}
