package agent

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

	"github.com/steward-iot/steward"
)

// Host reads a Linux host's inventory and health from /etc/os-release,
// /proc and /sys under a root directory ("/" on a device, a fixture tree in
// tests). Each reading that fails is left out rather than failing the rest.
type Host struct {
	root     string
	diskPath string
	clock    steward.Clock
	proc     procfs.FS
	procErr  error

	mu      sync.Mutex
	prevCPU *procfs.CPUStat // the last reading, for CPU use between samples
}

// NewHost reads the host below root; diskPath is the file system whose use
// is reported (the agent's state directory). It takes a first CPU reading,
// so that the first sample already has a CPU figure.
func NewHost(root, diskPath string, clock steward.Clock) (*Host, error) {
	if clock == nil {
		clock = steward.SystemClock{}
	}
	h := &Host{root: root, diskPath: diskPath, clock: clock}
	h.proc, h.procErr = procfs.NewFS(filepath.Join(root, "proc"))
	if h.procErr == nil {
		if st, err := h.proc.Stat(); err == nil {
			h.prevCPU = &st.CPUTotal
		}
	}
	return h, nil
}

// Attributes returns the host's inventory: os (the os-release ID), os_name,
// os_version, kernel, hostname, arch.
func (h *Host) Attributes() map[string]any {
	attrs := map[string]any{"arch": runtime.GOARCH}
	rel := h.osRelease()
	for key, attr := range map[string]string{"ID": "os", "NAME": "os_name", "VERSION_ID": "os_version", "PRETTY_NAME": "os_pretty_name"} {
		if v := rel[key]; v != "" {
			attrs[attr] = v
		}
	}
	if v := h.readTrimmed("proc/sys/kernel/osrelease"); v != "" {
		attrs["kernel"] = v
	}
	if v := h.readTrimmed("proc/sys/kernel/hostname"); v != "" {
		attrs["hostname"] = v
	} else if h.root == "/" {
		if v, err := os.Hostname(); err == nil {
			attrs["hostname"] = v
		}
	}
	return attrs
}

// Telemetry returns one sample, named and measured as the standard
// vocabulary says (steward.StandardMetrics, docs/metrics.md): cpu (busy
// fraction since the last sample), memory (used fraction: 1 −
// MemAvailable/MemTotal), disk (used fraction of the state directory's
// file system), uptime (seconds), load1, and temperature (°C, the hottest
// thermal zone) where the host has one.
func (h *Host) Telemetry() map[string]float64 {
	m := map[string]float64{}
	if h.procErr == nil {
		if st, err := h.proc.Stat(); err == nil {
			h.mu.Lock()
			if h.prevCPU != nil {
				if busy, ok := cpuBusy(*h.prevCPU, st.CPUTotal); ok {
					m[steward.MetricCPU] = busy
				}
			}
			h.prevCPU = &st.CPUTotal
			h.mu.Unlock()
			if st.BootTime > 0 {
				if up := h.clock.Now().Sub(time.Unix(int64(st.BootTime), 0)).Seconds(); up >= 0 {
					m[steward.MetricUptime] = up
				}
			}
		}
		if mi, err := h.proc.Meminfo(); err == nil && mi.MemTotal != nil && *mi.MemTotal > 0 && mi.MemAvailable != nil {
			m[steward.MetricMemory] = 1 - float64(*mi.MemAvailable)/float64(*mi.MemTotal)
		}
		if la, err := h.proc.LoadAvg(); err == nil {
			m[steward.MetricLoad1] = la.Load1
		}
	}
	if used, ok := diskUsed(h.diskPath); ok {
		m[steward.MetricDisk] = used
	}
	if t, ok := h.temperature(); ok {
		m[steward.MetricTemperature] = t
	}
	return m
}

// cpuBusy is the busy fraction between two readings of /proc/stat's cpu
// line. Guest time is already counted in user and nice.
func cpuBusy(prev, cur procfs.CPUStat) (float64, bool) {
	total := func(c procfs.CPUStat) float64 {
		return c.User + c.Nice + c.System + c.Idle + c.Iowait + c.IRQ + c.SoftIRQ + c.Steal
	}
	dt := total(cur) - total(prev)
	if dt <= 0 {
		return 0, false
	}
	idle := (cur.Idle + cur.Iowait) - (prev.Idle + prev.Iowait)
	busy := 1 - idle/dt
	return min(max(busy, 0), 1), true
}

// temperature is the hottest /sys/class/thermal zone in °C. Read here
// rather than with procfs/sysfs, whose zone reader fails a zone that lacks
// its policy file, while only temp matters.
func (h *Host) temperature() (float64, bool) {
	zones, _ := filepath.Glob(filepath.Join(h.root, "sys/class/thermal/thermal_zone*/temp"))
	best, found := 0.0, false
	for _, z := range zones {
		data, err := os.ReadFile(z)
		if err != nil {
			continue
		}
		milli, err := strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
		if err != nil {
			continue
		}
		if c := float64(milli) / 1000; !found || c > best {
			best, found = c, true
		}
	}
	return best, found
}

// osRelease reads os-release(5): KEY=value lines, values optionally
// quoted. Parsed here because it is a dozen lines and no library is worth
// a dependency for it.
func (h *Host) osRelease() map[string]string {
	data, err := os.ReadFile(filepath.Join(h.root, "etc/os-release"))
	if err != nil {
		data, err = os.ReadFile(filepath.Join(h.root, "usr/lib/os-release"))
		if err != nil {
			return nil
		}
	}
	return parseOSRelease(data)
}

func parseOSRelease(data []byte) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			q := v[0]
			v = v[1 : len(v)-1]
			if q == '"' {
				// Shell double-quote escapes: \" \\ \$ \`.
				r := strings.NewReplacer(`\"`, `"`, `\\`, `\`, `\$`, `$`, "\\`", "`")
				v = r.Replace(v)
			}
		}
		out[k] = v
	}
	return out
}

func (h *Host) readTrimmed(rel string) string {
	data, err := os.ReadFile(filepath.Join(h.root, rel))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
