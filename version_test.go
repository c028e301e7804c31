package steward

import (
	"sort"
	"testing"
)

func TestVersionOrder(t *testing.T) {
	t.Parallel()
	// Each version sorts strictly before the next.
	ordered := []string{"0.9.0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.2", "1.2.1", "1.9.0", "1.10.0", "v2.0.0", "10.0.0", "banana"}
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if CompareVersions(a, b) >= 0 {
			t.Errorf("%s should sort before %s (keys %q, %q)", a, b, VersionKey(a), VersionKey(b))
		}
	}
	shuffled := append([]string(nil), ordered...)
	sort.Slice(shuffled, func(i, j int) bool { return VersionKey(shuffled[i]) > VersionKey(shuffled[j]) })
	sort.Slice(shuffled, func(i, j int) bool { return VersionKey(shuffled[i]) < VersionKey(shuffled[j]) })
	for i := range ordered {
		if shuffled[i] != ordered[i] {
			t.Fatalf("sort by key: %v", shuffled)
		}
	}
	for _, eq := range [][2]string{{"1.2", "1.2.0"}, {"v1.2.0", "1.2.0"}, {"1.2.0+build.5", "1.2.0"}} {
		if CompareVersions(eq[0], eq[1]) != 0 {
			t.Errorf("%s and %s should be equal", eq[0], eq[1])
		}
	}
}
