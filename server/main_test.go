package server

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain runs the tests under a watchdog: a test that hangs would
// otherwise end in go test's timeout panic, whose dump of every goroutine
// (hundreds, most of them idle servers) buries the one that hangs, and CI
// keeps only the tail of it. Shortly before the timeout the watchdog
// prints the goroutines running test or shutdown code, last, and exits.
func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.timeout"); f != nil {
		if d, ok := f.Value.(flag.Getter).Get().(time.Duration); ok && d > 2*time.Minute {
			time.AfterFunc(d-time.Minute, func() { hangReport(d) })
		}
	}
	os.Exit(m.Run())
}

// hangReport writes the stacks that say where a test hangs and exits.
func hangReport(timeout time.Duration) {
	buf := make([]byte, 64<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var keep [][]byte
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("hangReport")) || bytes.Contains(g, []byte("testing.(*M).Run")) {
			continue // the watchdog and the test runner itself
		}
		if bytes.Contains(g, []byte("_test.go")) || bytes.Contains(g, []byte(").Close(")) {
			keep = append(keep, g)
		}
	}
	fmt.Fprintf(os.Stderr, "\nwatchdog: the tests are still running a minute before the %s timeout; the goroutines in test or shutdown code (%d):\n\n%s\n", timeout, len(keep), bytes.Join(keep, []byte("\n\n")))
	os.Exit(3)
}
