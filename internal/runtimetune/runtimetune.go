//go:build unix

// Package runtimetune sets the Go runtime options a long-running Steward
// server wants but cannot set from inside the process.
package runtimetune

import (
	"os"
	"strings"
	"syscall"
)

// setting makes new goroutines start at the minimum stack (2 KiB) rather
// than at the average stack size the runtime has seen. A server holds two
// goroutines per device session, most of them idle in shallow frames, while
// enrollment and the API run deep ones; with the average, every session's
// write loop starts at 8 KiB. Measured: 45.8 → 40.5 KiB per idle mTLS
// session at 10,000 sessions (docs/benchmarks.md).
//
// The runtime reads it only at start-up and `//go:debug` does not accept
// it, hence the re-exec.
const setting = "adaptivestackstart=0"

// Reexec replaces the process with itself, same arguments and PID, with
// the setting added to GODEBUG, unless GODEBUG already names
// adaptivestackstart (which is also how an operator opts out:
// GODEBUG=adaptivestackstart=1). It returns only when no re-exec happened
// (already set, or exec failed), and the process then runs as it is.
func Reexec() {
	cur := os.Getenv("GODEBUG")
	if strings.Contains(cur, "adaptivestackstart") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	env := setting
	if cur != "" {
		env = cur + "," + setting
	}
	if os.Setenv("GODEBUG", env) != nil {
		return
	}
	_ = syscall.Exec(exe, os.Args, os.Environ())
	// Exec failed: carry on without it.
	_ = os.Setenv("GODEBUG", cur)
}
