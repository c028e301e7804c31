package steward

import (
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Limits on a telemetry schema.
const (
	MaxModelLen          = 128
	MaxSchemaAllowLength = 256 // entries of TelemetrySchema.Allow
)

// TelemetrySchema is a tenant's allow-list of the metrics devices of one
// model may send (data minimisation): samples of other metrics are dropped
// on arrival and counted. A model without a schema may send any metric.
type TelemetrySchema struct {
	TenantID string `json:"tenant_id"`
	Model    string `json:"model"`
	// Allow holds metric names and prefixes: "cpu" allows exactly cpu,
	// "biz.*" every metric whose name starts with "biz.". An empty list
	// allows nothing: devices of the model send no telemetry that is kept.
	Allow     []string  `json:"allow"`
	UpdatedAt time.Time `json:"updated_at"`
}

// ValidModel reports whether m can be the model of a telemetry schema: 1
// to 128 bytes of UTF-8 without control characters, '/' (it is one path
// segment of the API) or surrounding spaces (device models are trimmed).
func ValidModel(m string) bool {
	if m == "" || len(m) > MaxModelLen || !utf8.ValidString(m) || strings.TrimSpace(m) != m {
		return false
	}
	for _, r := range m {
		if unicode.IsControl(r) || r == '/' {
			return false
		}
	}
	return true
}

// ValidMetricPattern reports whether p can be an entry of an allow-list: a
// metric name, or a metric name followed by ".*" (a prefix).
func ValidMetricPattern(p string) bool {
	if base, ok := strings.CutSuffix(p, ".*"); ok {
		return base != "" && ValidMetricName(base+".")
	}
	return ValidMetricName(p)
}

// MetricAllowed reports whether metric matches one of the patterns of an
// allow-list (see TelemetrySchema.Allow).
func MetricAllowed(allow []string, metric string) bool {
	for _, p := range allow {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if strings.HasPrefix(metric, prefix) && len(metric) > len(prefix) {
				return true
			}
		} else if p == metric {
			return true
		}
	}
	return false
}

// Validate checks a schema before it is stored: a tenant, a valid model,
// at most MaxSchemaAllowLength valid patterns, none twice, and a time.
func (s *TelemetrySchema) Validate() error {
	switch {
	case s.TenantID == "":
		return Errorf(CodeInvalid, "a telemetry schema needs a tenant")
	case !ValidModel(s.Model):
		return Errorf(CodeInvalid, "model %q: use 1 to %d characters, no '/', control characters or surrounding spaces", s.Model, MaxModelLen)
	case s.Allow == nil:
		return Errorf(CodeInvalid, "a telemetry schema needs an allow list (an empty one allows nothing)")
	case len(s.Allow) > MaxSchemaAllowLength:
		return Errorf(CodeInvalid, "allow list has %d entries, more than %d", len(s.Allow), MaxSchemaAllowLength)
	case s.UpdatedAt.IsZero():
		return Errorf(CodeInvalid, "a telemetry schema needs its time of update")
	}
	seen := make(map[string]bool, len(s.Allow))
	for _, p := range s.Allow {
		if !ValidMetricPattern(p) {
			return Errorf(CodeInvalid, "allow %q: want a metric name (letters, digits, '_', '-', '.', at most %d) or a prefix ending in \".*\"", p, MaxMetricNameLen)
		}
		if seen[p] {
			return Errorf(CodeInvalid, "allow %q is listed twice", p)
		}
		seen[p] = true
	}
	return nil
}
