// Package node runs a full Steward node (server.New with SQLite in a
// temporary data directory, ephemeral loopback ports) in a child process of
// a bench command, so that load generator and server are separate processes
// as they are in the field: the server's memory and CPU can be read apart
// from the clients', and it can be profiled on its own.
//
// The child is the bench binary itself, started again with an environment
// variable: every bench command that uses Start must call RunChildIfAsked
// first thing in main. The child serves until its standard input closes, so
// it never outlives the parent.
package node

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/steward-iot/steward/internal/runtimetune"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	rpprof "runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/server"
)

// envChild names the data directory of the node the child process serves.
const envChild = "STEWARD_BENCH_NODE_DIR"

// envLogLevel is the child's log level (debug, info, warn, error).
const envLogLevel = "STEWARD_BENCH_NODE_LOG"

// envStore is the child's server.Config.StoreURL (empty: SQLite).
const envStore = "STEWARD_BENCH_NODE_STORE"

// hello is what the child writes on its standard output once it serves.
type hello struct {
	API         string `json:"api"`
	Device      string `json:"device"`
	MQTT        string `json:"mqtt"`
	Debug       string `json:"debug"`
	Token       string `json:"token"`
	ServerCAPEM string `json:"server_ca_pem"`
	PID         int    `json:"pid"`
}

// RunChildIfAsked serves a node and exits when this process is a bench
// command's child; otherwise it returns at once.
func RunChildIfAsked() {
	dir := os.Getenv(envChild)
	if dir == "" {
		return
	}
	runtimetune.Reexec() // as `steward serve` does
	if err := serve(dir); err != nil {
		fmt.Fprintln(os.Stderr, "bench node:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func serve(dir string) error {
	logFile, err := os.OpenFile(filepath.Join(dir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer logFile.Close()
	var level slog.Level
	if err := level.UnmarshalText([]byte(cmpOr(os.Getenv(envLogLevel), "info"))); err != nil {
		return fmt.Errorf("%s: %w", envLogLevel, err)
	}
	// Logged as `steward serve` logs (text, info), but to a file: the
	// cost of each line is counted, the terminal stays readable.
	log := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: level}))
	srv, err := server.New(context.Background(), server.Config{
		DataDir:    dir,
		APIAddr:    "127.0.0.1:0",
		MQTTAddr:   "127.0.0.1:0",
		DeviceAddr: "127.0.0.1:0",
		StoreURL:   os.Getenv(envStore),
		Logger:     log,
	})
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Close()

	dbg, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(dbg, debugMux()) }()
	defer dbg.Close()

	if err := json.NewEncoder(os.Stdout).Encode(hello{
		API: srv.APIURL(), Device: srv.DeviceURL(), MQTT: srv.MQTTAddr(), Debug: "http://" + dbg.Addr().String(),
		Token: srv.AdminToken, ServerCAPEM: string(srv.ServerCAPEM()), PID: os.Getpid(),
	}); err != nil {
		return err
	}
	// Serve until the parent closes our stdin (or dies), or a signal.
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(done) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-done:
	case <-sig:
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// Mem is the server process's memory, read after garbage collection.
type Mem struct {
	HeapAlloc  uint64 `json:"heap_alloc"`  // bytes of live objects
	HeapInuse  uint64 `json:"heap_inuse"`  // bytes of heap spans in use
	StackInuse uint64 `json:"stack_inuse"` // bytes of goroutine stacks
	Sys        uint64 `json:"sys"`         // bytes the runtime got from the OS
	Goroutines int    `json:"goroutines"`
	// StartStack is the stack size new goroutines start with: the runtime
	// sets it from the average stack size it scanned.
	StartStack  uint64 `json:"start_stack"`
	RSS         uint64 `json:"rss"`          // VmRSS, bytes
	RSSReleased uint64 `json:"rss_released"` // VmRSS after debug.FreeOSMemory, bytes
}

// Usage is CPU time the server process has used.
type Usage struct {
	User   time.Duration `json:"user"`
	System time.Duration `json:"system"`
}

// Total is user plus system time.
func (u Usage) Total() time.Duration { return u.User + u.System }

// debugMux serves pprof and the bench's own probes on the child's debug
// listener (loopback only).
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("/bench/mem", func(w http.ResponseWriter, _ *http.Request) {
		// A few cycles let the runtime shrink the stacks that handshakes
		// grew, as in a server that has been up for a while.
		for range 5 {
			runtime.GC()
			time.Sleep(100 * time.Millisecond)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		m := Mem{HeapAlloc: ms.HeapAlloc, HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Sys: ms.Sys, Goroutines: runtime.NumGoroutine()}
		start := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
		metrics.Read(start)
		if start[0].Value.Kind() == metrics.KindUint64 {
			m.StartStack = start[0].Value.Uint64()
		}
		m.RSS = vmRSS()
		debug.FreeOSMemory()
		m.RSSReleased = vmRSS()
		writeJSON(w, m)
	})
	mux.HandleFunc("/bench/cpu", func(w http.ResponseWriter, _ *http.Request) {
		u, err := SelfUsage()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, u)
	})
	var profMu sync.Mutex
	var profFile *os.File
	mux.HandleFunc("/bench/cpuprofile", func(w http.ResponseWriter, r *http.Request) {
		profMu.Lock()
		defer profMu.Unlock()
		switch r.URL.Query().Get("action") {
		case "start":
			if profFile != nil {
				http.Error(w, "already profiling", http.StatusConflict)
				return
			}
			f, err := os.Create(r.URL.Query().Get("path"))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			if err := rpprof.StartCPUProfile(f); err != nil {
				_ = f.Close()
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			profFile = f
		case "stop":
			if profFile == nil {
				http.Error(w, "not profiling", http.StatusConflict)
				return
			}
			rpprof.StopCPUProfile()
			err := profFile.Close()
			profFile = nil
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		default:
			http.Error(w, "action: start or stop", http.StatusBadRequest)
		}
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// vmRSS returns this process's resident set size, or 0 if unknown.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kib, _ := strconv.ParseUint(f[0], 10, 64)
				return kib << 10
			}
		}
	}
	return 0
}

// SelfUsage returns the CPU time this process has used so far.
func SelfUsage() (Usage, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return Usage{}, fmt.Errorf("getrusage: %w", err)
	}
	return Usage{User: time.Duration(ru.Utime.Nano()), System: time.Duration(ru.Stime.Nano())}, nil
}

// Options configures Start.
type Options struct {
	// Keep leaves the data directory (store, server.log) in place.
	Keep bool
	// LogLevel is the server's log level (default info, as `steward serve`).
	LogLevel string
	// StoreURL is the server's store (server.Config.StoreURL): empty for
	// SQLite in the data directory, or a postgres:// URL.
	StoreURL string
}

// Node is a running node in a child process.
type Node struct {
	APIURL    string         // management plane, http://127.0.0.1:port
	DeviceURL string         // EST, https://127.0.0.1:port
	MQTTAddr  string         // MQTT over TLS, 127.0.0.1:port
	DataDir   string         // the SQLite store is DataDir/steward.db
	PID       int            // the server process
	Roots     *x509.CertPool // trusts the device plane's server certificate
	Admin     *client.Client // the first admin token's client
	DebugURL  string         // the server's pprof (/debug/pprof/) and bench probes, http://127.0.0.1:port

	debug string
	http  *http.Client
	cmd   *exec.Cmd
	stdin io.WriteCloser
	keep  bool
	once  sync.Once
}

// Start runs a node in a child process and waits until it serves.
func Start(ctx context.Context, opts Options) (_ *Node, err error) {
	dir, err := os.MkdirTemp("", "steward-bench-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && !opts.Keep {
			_ = os.RemoveAll(dir)
		}
	}()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envChild+"="+dir, envLogLevel+"="+cmpOr(opts.LogLevel, "info"), envStore+"="+opts.StoreURL)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server process: %w", err)
	}
	n := &Node{DataDir: dir, cmd: cmd, stdin: stdin, keep: opts.Keep, http: &http.Client{Timeout: 5 * time.Minute}}
	type result struct {
		h   hello
		err error
	}
	got := make(chan result, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err != nil {
			got <- result{err: fmt.Errorf("server process ended before serving (see its stderr): %w", err)}
			return
		}
		var h hello
		got <- result{h, json.Unmarshal(line, &h)}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	var r result
	select {
	case r = <-got:
	case <-ctx.Done():
		r.err = ctx.Err()
	case <-time.After(2 * time.Minute):
		r.err = errors.New("server process did not start within 2 minutes")
	}
	if r.err != nil {
		_ = n.Close()
		return nil, r.err
	}
	n.APIURL, n.DeviceURL, n.MQTTAddr, n.debug, n.PID = r.h.API, r.h.Device, r.h.MQTT, r.h.Debug, r.h.PID
	n.DebugURL = n.debug
	n.Roots = x509.NewCertPool()
	if !n.Roots.AppendCertsFromPEM([]byte(r.h.ServerCAPEM)) {
		_ = n.Close()
		return nil, errors.New("server process sent no server CA")
	}
	n.Admin = client.New(n.APIURL, r.h.Token, nil)
	return n, nil
}

// Close stops the server (it closes its listeners and commits what it has
// taken) and removes the data directory unless Options.Keep.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		_ = n.stdin.Close()
		done := make(chan error, 1)
		go func() { done <- n.cmd.Wait() }()
		select {
		case err = <-done:
		case <-time.After(60 * time.Second):
			_ = n.cmd.Process.Kill()
			err = errors.Join(errors.New("server process did not stop within 60 s; killed"), <-done)
		}
		if !n.keep {
			_ = os.RemoveAll(n.DataDir)
		}
	})
	return err
}

func (n *Node) get(ctx context.Context, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.debug+path, nil)
	if err != nil {
		return err
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, strings.TrimSpace(string(b)))
	}
	if out == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		return err
	}
	if w, ok := out.(io.Writer); ok {
		_, err = io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// Mem returns the server's memory after a few garbage collections.
func (n *Node) Mem(ctx context.Context) (Mem, error) {
	var m Mem
	err := n.get(ctx, "/bench/mem", &m)
	return m, err
}

// CPU returns the CPU time the server process has used so far.
func (n *Node) CPU(ctx context.Context) (Usage, error) {
	var u Usage
	err := n.get(ctx, "/bench/cpu", &u)
	return u, err
}

// StartCPUProfile starts profiling the server's CPU into path (a file the
// server process writes).
func (n *Node) StartCPUProfile(ctx context.Context, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return n.get(ctx, "/bench/cpuprofile?action=start&path="+url.QueryEscape(abs), nil)
}

// StopCPUProfile stops the profile StartCPUProfile began.
func (n *Node) StopCPUProfile(ctx context.Context) error {
	return n.get(ctx, "/bench/cpuprofile?action=stop", nil)
}

// WriteProfile writes the server's named pprof profile (heap, goroutine,
// allocs…) to path.
func (n *Node) WriteProfile(ctx context.Context, name, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := n.get(ctx, "/debug/pprof/"+name, f); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
