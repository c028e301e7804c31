//go:build unix

package runtimetune

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestReexec runs this test binary as a child that calls Reexec and prints
// its GODEBUG: the re-executed process must carry the setting, and one that
// already names it must be left alone.
func TestReexec(t *testing.T) {
	if os.Getenv("RUNTIMETUNE_CHILD") == "1" {
		Reexec()
		os.Stdout.WriteString("GODEBUG=" + os.Getenv("GODEBUG") + "\n")
		os.Exit(0)
	}
	for _, tt := range []struct{ in, want string }{
		{"", "GODEBUG=adaptivestackstart=0"},
		{"madvdontneed=1", "GODEBUG=madvdontneed=1,adaptivestackstart=0"},
		{"adaptivestackstart=1", "GODEBUG=adaptivestackstart=1"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestReexec$")
		cmd.Env = append(os.Environ(), "RUNTIMETUNE_CHILD=1", "GODEBUG="+tt.in)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, tt.want) {
			t.Errorf("GODEBUG %q: child saw %q, want %q", tt.in, got, tt.want)
		}
	}
}
