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
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/postgres"
	"github.com/steward-iot/steward/sqlite"
)

// restartChildEnv, when set, makes TestCrashRestartBothStores the writer
// child: its value is "sqlite:" + a database path or "postgres:" + a URL.
const restartChildEnv = "STEWARD_TELEMETRY_RESTART_CHILD"

// openByDSN opens the store a "sqlite:path" or "postgres:url" names.
func openByDSN(ctx context.Context, dsn string) (steward.Store, error) {
	if p, ok := strings.CutPrefix(dsn, "sqlite:"); ok {
		return sqlite.Open(ctx, p, nil)
	}
	if u, ok := strings.CutPrefix(dsn, "postgres:"); ok {
		return postgres.Open(ctx, u, nil)
	}
	return nil, fmt.Errorf("unknown store %q", dsn)
}

// crashStores returns the stores the crash test runs on: SQLite always,
// PostgreSQL (a fresh schema, chosen by search_path in the URL) when
// STEWARD_TEST_POSTGRES is set.
func crashStores(t *testing.T) map[string]func(t *testing.T) string {
	t.Helper()
	out := map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "sqlite:" + tempDB(t) },
	}
	base, ok := pgtest.URL()
	if !ok {
		out["postgres"] = func(t *testing.T) string {
			t.Skip("STEWARD_TEST_POSTGRES is not set: no PostgreSQL to crash a writer on")
			return ""
		}
		return out
	}
	out["postgres"] = func(t *testing.T) string {
		t.Helper()
		_, u := pgtest.Schema(t, base, "telemetrycrash_")
		return "postgres:" + u
	}
	return out
}

// TestCrashRestartBothStores kills a telemetry writer (a child process:
// this test binary run again) with SIGKILL mid-stream, on SQLite and on
// PostgreSQL, then checks that every acknowledged message is stored and
// that a new writer on the same store takes and stores messages again.
func TestCrashRestartBothStores(t *testing.T) {
	if dsn := os.Getenv(restartChildEnv); dsn != "" {
		restartChild(dsn)
		return
	}
	if testing.Short() {
		t.Skip("runs a child process")
	}
	t.Parallel()
	for name, newDSN := range crashStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := newDSN(t)
			acked := killWriter(t, dsn)

			st, err := openByDSN(t.Context(), dsn)
			must(t, err)
			t.Cleanup(func() { _ = st.Close() })
			stored := storedSeqs(t, st, "seq")
			var lost []int
			for n := range acked {
				if !stored[n] {
					lost = append(lost, n)
				}
			}
			if len(lost) > 0 {
				t.Fatalf("%d of %d acknowledged messages are not stored, e.g. %v", len(lost), len(acked), lost[:min(len(lost), 10)])
			}

			// A new writer on the same store keeps working.
			bus := inproc.New(slog.New(slog.DiscardHandler))
			in := New(Config{Store: st, Clock: steward.SystemClock{}, Logger: slog.New(slog.DiscardHandler)}, bus)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { in.Run(ctx); close(done) }()
			t.Cleanup(func() { cancel(); <-done })
			base := time.Now().UnixMilli()
			for i := range 5 {
				if err := publish(t, bus, fmt.Sprintf(`{"ts":%d,"metrics":{"after":%d}}`, base+int64(i), i)); err != nil {
					t.Fatalf("message %d to the restarted writer: %v", i, err)
				}
			}
			after := storedSeqs(t, st, "after")
			if len(after) != 5 {
				t.Fatalf("restarted writer stored %v, want 0..4", after)
			}
			t.Logf("%s: %d acknowledged, %d stored after SIGKILL; restarted writer stored 5 of 5", name, len(acked), len(stored))
		})
	}
}

// killWriter runs the writer child on dsn, kills it with SIGKILL once
// 3000 messages are acknowledged and returns the acknowledged numbers.
func killWriter(t *testing.T, dsn string) map[int]bool {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashRestartBothStores$", "-test.count=1")
	cmd.Env = append(os.Environ(), restartChildEnv+"="+dsn)
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
	return acked
}

// storedSeqs reads every stored value of d-1's metric.
func storedSeqs(t *testing.T, st steward.Store, metric string) map[int]bool {
	t.Helper()
	stored := map[int]bool{}
	from := time.Time{}
	for {
		page, err := st.ListSamples(context.Background(), "t1", "d-1", metric, from, time.Time{}, 10000)
		must(t, err)
		for _, sm := range page {
			stored[int(sm.Value)] = true
		}
		if len(page) < 10000 {
			return stored
		}
		from = page[len(page)-1].At.Add(time.Microsecond)
	}
}

// restartChild is the writer: a store and an intake taking a stream of
// numbered messages, printing each acknowledgement as it happens. It never
// returns; the parent kills it.
func restartChild(dsn string) {
	st, err := openByDSN(context.Background(), dsn)
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	bus := inproc.New(slog.New(slog.DiscardHandler))
	in := New(Config{Store: st, Clock: steward.SystemClock{}, BatchSize: 200, QueueSize: 500}, bus)
	go in.Run(context.Background())
	var mu sync.Mutex
	base := time.Now().UnixMilli()
	for i := 0; i < 200000; i++ {
		payload := fmt.Appendf(nil, `{"ts":%d,"metrics":{"seq":%d}}`, base+int64(i), i)
		bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: "d-1", Channel: steward.ChannelTelemetry, Payload: payload}, func(err error) {
			if err != nil {
				return
			}
			mu.Lock()
			fmt.Fprintf(os.Stdout, "ack %d\n", i) // unbuffered: in the pipe when the ack returns
			mu.Unlock()
		})
	}
	for {
		time.Sleep(time.Hour) // wait to be killed
	}
}
