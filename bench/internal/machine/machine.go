// Package machine describes the computer a benchmark runs on, so that every
// figure a bench command prints says where it was measured.
package machine

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Describe returns one line naming the cores, CPU model, memory, kernel, Go
// version, date and load average of this machine. Missing /proc entries
// (not Linux) are reported as unknown.
func Describe() string {
	model, procs := cpuInfo()
	return fmt.Sprintf("machine: %d cores (%d in /proc/cpuinfo, GOMAXPROCS %d), %s, %s RAM, Linux %s, %s %s/%s, %s, load average %s",
		runtime.NumCPU(), procs, runtime.GOMAXPROCS(0), model, memTotal(), firstLine("/proc/sys/kernel/osrelease"),
		runtime.Version(), runtime.GOOS, runtime.GOARCH, time.Now().UTC().Format(time.RFC3339), loadAvg())
}

// loadAvg returns the 1, 5 and 15 minute load averages as /proc/loadavg
// gives them: a busy machine shows here.
func loadAvg() string {
	f := strings.Fields(firstLine("/proc/loadavg"))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func cpuInfo() (model string, procs int) {
	model = "unknown CPU"
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return model, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "processor":
			procs++
		case "model name":
			if procs <= 1 {
				model = strings.TrimSpace(v)
			}
		}
	}
	return model, procs
}

func memTotal() string {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kib, err := strconv.ParseFloat(fields[1], 64)
			if err != nil {
				break
			}
			return fmt.Sprintf("%.1f GiB", kib/(1<<20))
		}
	}
	return "unknown"
}

func firstLine(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line)
}

// CPU is a reading of the machine-wide CPU counters of /proc/stat.
type CPU struct {
	Busy, Total time.Duration // summed over all cores; busy excludes idle and iowait
}

// ReadCPU reads /proc/stat. On a shared machine the busy time that neither
// the server nor the load generator used is someone else's.
func ReadCPU() (CPU, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return CPU{}, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return CPU{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	// user nice system idle iowait irq softirq steal [guest guest_nice]:
	// guest time is already in user, so only the first eight count.
	var c CPU
	for i, s := range f[1:9] {
		ticks, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return CPU{}, fmt.Errorf("/proc/stat: %w", err)
		}
		// USER_HZ is 100 on every Linux architecture Go supports.
		d := time.Duration(ticks) * 10 * time.Millisecond
		c.Total += d
		if i != 3 && i != 4 {
			c.Busy += d
		}
	}
	return c, nil
}

// Sub returns the counters' change since o.
func (c CPU) Sub(o CPU) CPU { return CPU{Busy: c.Busy - o.Busy, Total: c.Total - o.Total} }
