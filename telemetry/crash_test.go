package telemetry

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/sqlite"
)

// crashChildEnv, when set, makes TestCrashKeepsAcknowledged the writer
// child: its value is the database path.
const crashChildEnv = "STEWARD_TELEMETRY_CRASH_CHILD"

// TestCrashKeepsAcknowledged kills the telemetry writer with SIGKILL while
// a stream flows, then checks that every message it acknowledged is
// stored: acknowledged ⊆ stored. The writer is a child process (this test
// binary run again) that prints each acknowledged sequence number as the
// acknowledgement happens; the pipe keeps what was written after the
// process dies.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	t.Parallel()
	path := tempDB(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	acked := map[int]bool{}
	killed := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		seq, ok := strings.CutPrefix(sc.Text(), "ack ")
		if !ok {
			continue // the test framework's own output
		}
		n, err := strconv.Atoi(seq)
		if err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked[n] = true
		// Kill once the stream is well under way: batches are committing
		// and more messages are queued behind them.
		if len(acked) == 3000 && !killed {
			must(t, cmd.Process.Signal(syscall.SIGKILL))
			killed = true
		}
	}
	must(t, sc.Err())
	err = cmd.Wait()
	var ee *exec.ExitError
	if !killed || !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child was not killed mid-stream: killed=%v, exit %v, %d acknowledged", killed, err, len(acked))
	}

	st := openStoreAt(t, path)
	stored := map[int]bool{}
	from := time.Time{}
	for {
		page, err := st.ListSamples(context.Background(), "t1", "d-1", "seq", from, time.Time{}, 10000)
		must(t, err)
		for _, sm := range page {
			stored[int(sm.Value)] = true
		}
		if len(page) < 10000 {
			break
		}
		from = page[len(page)-1].At.Add(time.Microsecond)
	}
	var lost []int
	for n := range acked {
		if !stored[n] {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d acknowledged messages are not stored, e.g. %v", len(lost), len(acked), lost[:min(len(lost), 10)])
	}
	t.Logf("%d acknowledged, %d stored after SIGKILL", len(acked), len(stored))
}

// crashChild is the writer: a store and an intake taking a stream of
// numbered messages, printing each acknowledgement. It never returns; the
// parent kills it.
func crashChild(path string) {
	st, err := sqlite.Open(context.Background(), path, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, BatchSize: 200, QueueSize: 500}, bus)
	go in.Run(context.Background())
	var mu sync.Mutex
	base := time.Now().UnixMilli()
	// One sample per message, a millisecond apart: all inside the
	// acceptance window for as long as the parent lets this run.
	for i := 0; i < 200000; i++ {
		payload := fmt.Appendf(nil, `{"ts":%d,"metrics":{"seq":%d}}`, base+int64(i), i)
		bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: payload}, func(err error) {
			if err != nil {
				return
			}
			mu.Lock()
			// os.Stdout is unbuffered: the line is in the pipe when the
			// acknowledgement returns.
			fmt.Fprintf(os.Stdout, "ack %d\n", i)
			mu.Unlock()
		})
	}
	for {
		time.Sleep(time.Hour) // wait to be killed
	}
}
