package agent

import (
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// copyTree copies a fixture tree so that a test can change it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	if err := os.CopyFS(dst, os.DirFS(src)); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestHostAttributesFromFixture(t *testing.T) {
	t.Parallel()
	h, err := NewHost("testdata/host", t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := h.Attributes()
	want := map[string]any{
		"os":             "stewardos",
		"os_name":        "Steward OS",
		"os_version":     "2.1",
		"os_pretty_name": `Steward OS 2.1 ("edge")`,
		"kernel":         "6.1.0-28-arm64",
		"hostname":       "gw-0042",
		"arch":           runtime.GOARCH,
	}
	if len(got) != len(want) {
		t.Errorf("attributes %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

func TestParseOSRelease(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		want     map[string]string
	}{
		{"plain", "ID=debian\n", map[string]string{"ID": "debian"}},
		{"double quotes with escapes", `NAME="A \"B\" \\ \$C"` + "\n", map[string]string{"NAME": `A "B" \ $C`}},
		{"single quotes are literal", `NAME='A \"B'` + "\n", map[string]string{"NAME": `A \"B`}},
		{"comments and blanks", "# c\n\n  ID=x  \nnot a pair\n", map[string]string{"ID": "x"}},
		{"empty value", "VARIANT=\n", map[string]string{"VARIANT": ""}},
		{"lone quote", `NAME="` + "\n", map[string]string{"NAME": `"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := parseOSRelease([]byte(tt.in))
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Fatalf("%s = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestHostTelemetryFromFixture(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "testdata/host")
	// btime in the fixture is 1795785566; the clock is an hour later.
	clock := newFakeClock(time.Unix(1795785566, 0).Add(time.Hour))
	h, err := NewHost(root, t.TempDir(), clock)
	if err != nil {
		t.Fatal(err)
	}
	later, err := os.ReadFile("testdata/stat-later")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/stat"), later, 0o644); err != nil {
		t.Fatal(err)
	}
	m := h.Telemetry()
	want := map[string]float64{
		"cpu":         0.6, // 600 of 1000 jiffies busy between the readings
		"memory":      0.75,
		"uptime":      3600,
		"load1":       0.52,
		"temperature": 51.25, // the hottest zone; zone 2 has no temp
	}
	for k, v := range want {
		if got, ok := m[k]; !ok || math.Abs(got-v) > 1e-9 {
			t.Errorf("%s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if d, ok := m["disk"]; !ok || d < 0 || d > 1 {
		t.Errorf("disk = %v (present %v), want a fraction", d, ok)
	}
	// Without a change in /proc/stat there is no CPU figure, not a bogus 0.
	if _, ok := h.Telemetry()["cpu"]; ok {
		t.Error("cpu reported although no time passed")
	}
}

func TestHostTelemetryMissingSources(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "testdata/host")
	for _, p := range []string{"proc/meminfo", "sys"} {
		if err := os.RemoveAll(filepath.Join(root, p)); err != nil {
			t.Fatal(err)
		}
	}
	h, err := NewHost(root, filepath.Join(root, "no such dir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	m := h.Telemetry()
	for _, k := range []string{"memory", "temperature", "disk"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s reported without its source", k)
		}
	}
	if _, ok := m["load1"]; !ok {
		t.Error("load1 missing although /proc/loadavg is there")
	}
}

func TestHostWithoutProc(t *testing.T) {
	t.Parallel()
	h, err := NewHost(t.TempDir(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if m := h.Telemetry(); len(m) != 0 {
		t.Fatalf("telemetry from an empty root: %v", m)
	}
	if a := h.Attributes(); len(a) != 1 || a["arch"] != runtime.GOARCH {
		t.Fatalf("attributes from an empty root: %v", a)
	}
}

// TestHostTelemetryIsStandard checks that every metric the agent sends is
// in the standard vocabulary, with the unit it promises: the agent and the
// vocabulary are one contract.
func TestHostTelemetryIsStandard(t *testing.T) {
	t.Parallel()
	root := copyTree(t, "testdata/host")
	h, err := NewHost(root, t.TempDir(), newFakeClock(time.Unix(1795785566, 0).Add(time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	later, err := os.ReadFile("testdata/stat-later")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/stat"), later, 0o644); err != nil {
		t.Fatal(err)
	}
	m := h.Telemetry()
	if len(m) < 6 {
		t.Fatalf("fixture gave only %v", m)
	}
	for name, v := range m {
		def, ok := steward.LookupMetric(name)
		if !ok || def.Category == steward.CategoryBusiness {
			t.Errorf("agent sends %q, which is not a standard metric", name)
			continue
		}
		if def.Unit == "ratio" && (v < 0 || v > 1) {
			t.Errorf("%s = %v, not a ratio 0 to 1", name, v)
		}
	}
}
