package steward

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestStandardMetrics(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, m := range StandardMetrics() {
		t.Run(m.Name, func(t *testing.T) {
			if !ValidMetricName(m.Name) {
				t.Errorf("name %q breaks the telemetry metric-name rule", m.Name)
			}
			if seen[m.Name] {
				t.Errorf("name %q is defined twice", m.Name)
			}
			seen[m.Name] = true
			if strings.HasPrefix(m.Name, BusinessMetricPrefix) {
				t.Errorf("standard metric %q uses the business prefix", m.Name)
			}
			if m.Name != strings.ToLower(m.Name) || strings.Contains(m.Name, "..") || strings.HasSuffix(m.Name, ".") {
				t.Errorf("name %q: want lower case dot-separated words", m.Name)
			}
			if m.Unit == "" || m.Description == "" {
				t.Errorf("%q has no unit or description", m.Name)
			}
			switch m.Kind {
			case MetricGauge, MetricDelta:
			default:
				t.Errorf("%q has kind %q", m.Name, m.Kind)
			}
			switch m.Category {
			case CategoryConnectivity, CategoryHealth, CategoryApplication, CategorySecurity:
			default:
				t.Errorf("%q has category %q", m.Name, m.Category)
			}
			if m.Kind == MetricDelta && m.Unit != "count" {
				t.Errorf("delta %q counts in %q, want count", m.Name, m.Unit)
			}
			if got, ok := LookupMetric(m.Name); !ok || got != m {
				t.Errorf("LookupMetric(%q) = %+v, %v", m.Name, got, ok)
			}
		})
	}
	// A caller cannot change the vocabulary through the slice it got.
	StandardMetrics()[0].Name = "changed"
	if StandardMetrics()[0].Name == "changed" {
		t.Fatal("StandardMetrics returns shared state")
	}
}

func TestLookupMetric(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		ok       bool
		category MetricCategory
		unit     string
	}{
		{"cpu", true, CategoryHealth, "ratio"},
		{"temperature", true, CategoryHealth, "°C"},
		{"net.rssi", true, CategoryConnectivity, "dBm"},
		{"sec.auth.failures", true, CategorySecurity, "count"},
		{"biz.orders", true, CategoryBusiness, ""},
		{"biz.", false, "", ""},
		{"biz.bad name", false, "", ""},
		{"mem_used", false, "", ""},
		{"net.type", false, "", ""}, // an attribute, not a metric
		{"", false, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m, ok := LookupMetric(tc.name)
			if ok != tc.ok || m.Category != tc.category || m.Unit != tc.unit {
				t.Fatalf("LookupMetric(%q) = %+v, %v", tc.name, m, ok)
			}
		})
	}
}

func TestMetricAllowed(t *testing.T) {
	t.Parallel()
	allow := []string{"cpu", "net.rssi", "biz.*", "app.msg.*"}
	cases := []struct {
		metric string
		want   bool
	}{
		{"cpu", true},
		{"cpu2", false},
		{"net.rssi", true},
		{"net.rssi.max", false},
		{"net.latency", false},
		{"biz.orders", true},
		{"biz.a.b", true},
		{"biz.", false},
		{"biz", false},
		{"bizarre", false},
		{"app.msg.failed", true},
		{"app.crashes", false},
	}
	for _, tc := range cases {
		if got := MetricAllowed(allow, tc.metric); got != tc.want {
			t.Errorf("MetricAllowed(%q) = %v, want %v", tc.metric, got, tc.want)
		}
	}
	if MetricAllowed(nil, "cpu") || MetricAllowed([]string{}, "cpu") {
		t.Error("an empty allow-list allows something")
	}
}

func TestValidMetricPattern(t *testing.T) {
	t.Parallel()
	for p, want := range map[string]bool{
		"cpu": true, "biz.*": true, "app.msg.*": true, "a_b-c.d": true,
		"": false, "*": false, ".*": false, "biz*": false, "biz.*.x": false, "*.biz": false,
		"temp °C": false, strings.Repeat("m", MaxMetricNameLen+1): false,
	} {
		if got := ValidMetricPattern(p); got != want {
			t.Errorf("ValidMetricPattern(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestValidModel(t *testing.T) {
	t.Parallel()
	for m, want := range map[string]bool{
		"gw-100": true, "Raspberry Pi 4 Model B": true, "Sensör": true,
		"": false, " gw": false, "gw ": false, "gw/100": false, "gw\x00": false, "gw\n1": false, "\xff": false,
		strings.Repeat("m", MaxModelLen): true, strings.Repeat("m", MaxModelLen+1): false,
	} {
		if got := ValidModel(m); got != want {
			t.Errorf("ValidModel(%q) = %v, want %v", m, got, want)
		}
	}
}

// TestMetricsDoc checks that docs/metrics.md lists every standard metric
// with its unit and kind, as the vocabulary defines them.
func TestMetricsDoc(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range StandardMetrics() {
		row := fmt.Sprintf("| `%s` | %s | %s | %s |", m.Name, m.Unit, m.Kind, m.Description)
		if !strings.Contains(string(doc), row) {
			t.Errorf("docs/metrics.md lacks the row\n%s", row)
		}
	}
}
