package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward/bench/internal/machine"
)

// Meter measures where the CPU time of a timed part went: the server
// process, this process (the load generator) and the whole machine.
type Meter struct {
	server  func(context.Context) (Usage, error)
	start   time.Time
	srv     Usage
	self    Usage
	machine machine.CPU
}

// StartMeter takes the first reading, with the node as the server.
func (n *Node) StartMeter(ctx context.Context) (*Meter, error) {
	return StartMeter(ctx, n.CPU)
}

// StartMeter takes the first reading; server reads the server's CPU time.
func StartMeter(ctx context.Context, server func(context.Context) (Usage, error)) (*Meter, error) {
	m := &Meter{server: server}
	var err error
	if m.srv, err = server(ctx); err != nil {
		return nil, err
	}
	if m.self, err = SelfUsage(); err != nil {
		return nil, err
	}
	if m.machine, err = machine.ReadCPU(); err != nil {
		return nil, err
	}
	m.start = time.Now()
	return m, nil
}

// Split is the CPU time used between two readings.
type Split struct {
	Wall, Server, Client, MachineBusy, MachineTotal time.Duration
}

// Stop takes the second reading.
func (m *Meter) Stop(ctx context.Context) (Split, error) {
	wall := time.Since(m.start)
	mc, err := machine.ReadCPU()
	if err != nil {
		return Split{}, err
	}
	self, err := SelfUsage()
	if err != nil {
		return Split{}, err
	}
	srv, err := m.server(ctx)
	if err != nil {
		return Split{}, err
	}
	d := mc.Sub(m.machine)
	return Split{Wall: wall, Server: srv.Total() - m.srv.Total(), Client: self.Total() - m.self.Total(), MachineBusy: d.Busy, MachineTotal: d.Total}, nil
}

// String says how busy each part was, in cores, and per op (an op is what
// the caller counts: an enrollment, a message).
func (s Split) String() string {
	cores := func(d time.Duration) float64 { return d.Seconds() / s.Wall.Seconds() }
	others := max(s.MachineBusy-s.Server-s.Client, 0)
	return fmt.Sprintf("CPU in the timed part (%.1f s): server %.2f cores, load generator %.2f cores, other processes %.2f cores, idle %.2f cores",
		s.Wall.Seconds(), cores(s.Server), cores(s.Client), cores(others), cores(max(s.MachineTotal-s.MachineBusy, 0)))
}

// PerOp gives the server's and the load generator's CPU time per op.
func (s Split) PerOp(ops int, unit string) string {
	if ops == 0 {
		return ""
	}
	per := func(d time.Duration) string {
		us := float64(d) / float64(time.Microsecond) / float64(ops)
		if us >= 1000 {
			return fmt.Sprintf("%.2f ms", us/1000)
		}
		return fmt.Sprintf("%.1f µs", us)
	}
	return fmt.Sprintf("CPU per %s: server %s, load generator %s", unit, per(s.Server), per(s.Client))
}

// ProcUsage returns a function that reads the CPU time of process pid from
// /proc/pid/stat: a server this command did not build, such as Mosquitto.
func ProcUsage(pid int) func(context.Context) (Usage, error) {
	return func(context.Context) (Usage, error) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return Usage{}, err
		}
		// The command name may hold spaces: the fields start after its ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			return Usage{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			return Usage{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
		}
		// Fields 14 and 15 (utime, stime) in USER_HZ, 100 on Linux.
		ut, err1 := strconv.ParseUint(f[11], 10, 64)
		st, err2 := strconv.ParseUint(f[12], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return Usage{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		return Usage{User: time.Duration(ut) * 10 * time.Millisecond, System: time.Duration(st) * 10 * time.Millisecond}, nil
	}
}
