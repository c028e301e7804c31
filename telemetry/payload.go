package telemetry

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// Limits on one telemetry message.
const (
	maxSamplesPerMessage = 1000
	maxMetricName        = steward.MaxMetricNameLen
)

// point is one telemetry object on the wire: {"ts": …, "metrics": {…}}.
type point struct {
	TS      json.RawMessage            `json:"ts"`
	Metrics map[string]json.RawMessage `json:"metrics"`
}

// Decode parses a telemetry payload, one object or an array of them, into
// samples of one device. ts may be RFC 3339 or Unix milliseconds; absent
// means now. Metric values are numbers (booleans count as 0 and 1); other
// value types, unknown keys and non-finite numbers are an error, so a device
// learns at once that its payload is wrong. Nothing is half-taken: an error
// means no sample of the message is kept.
func Decode(payload []byte, tenantID, deviceID string, now time.Time) ([]steward.Sample, error) {
	payload = bytes.TrimSpace(payload)
	var points []point
	switch {
	case len(payload) > 0 && payload[0] == '[':
		if err := json.Unmarshal(payload, &points); err != nil {
			return nil, steward.Errorf(steward.CodeInvalid, "telemetry: not a JSON array of objects: %s", jsonErr(err))
		}
	case len(payload) > 0 && payload[0] == '{':
		var p point
		if err := json.Unmarshal(payload, &p); err != nil {
			return nil, steward.Errorf(steward.CodeInvalid, "telemetry: not a JSON object: %s", jsonErr(err))
		}
		points = []point{p}
	default:
		return nil, steward.Errorf(steward.CodeInvalid, "telemetry: want a JSON object or array")
	}
	var out []steward.Sample
	for i, p := range points {
		at, err := decodeTS(p.TS, now)
		if err != nil {
			return nil, steward.Errorf(steward.CodeInvalid, "telemetry[%d]: %s", i, err.Message)
		}
		if len(p.Metrics) == 0 {
			return nil, steward.Errorf(steward.CodeInvalid, "telemetry[%d]: no metrics", i)
		}
		for name, raw := range p.Metrics {
			if !validMetric(name) {
				return nil, steward.Errorf(steward.CodeInvalid, "telemetry[%d]: metric name %q: use letters, digits, '_', '-', '.', at most %d", i, name, maxMetricName)
			}
			v, err := decodeValue(raw)
			if err != nil {
				return nil, steward.Errorf(steward.CodeInvalid, "telemetry[%d]: metric %q: %s", i, name, err.Message)
			}
			out = append(out, steward.Sample{TenantID: tenantID, DeviceID: deviceID, Metric: name, Value: v, At: at})
			if len(out) > maxSamplesPerMessage {
				return nil, steward.Errorf(steward.CodeTooLarge, "telemetry: more than %d samples in one message", maxSamplesPerMessage)
			}
		}
	}
	return out, nil
}

// inRange refuses a time whose UTC year has more than four digits (or is
// before year 0): RFC 3339 cannot write it, so the API could not show it
// (time.Time.MarshalJSON fails) once stored.
func inRange(t time.Time) (time.Time, *steward.Error) {
	if y := t.Year(); y < 0 || y > 9999 {
		return time.Time{}, steward.Errorf(steward.CodeInvalid, "ts is out of range: years 0000 to 9999 (UTC)")
	}
	return t, nil
}

// jsonErr says where a payload broke without echoing it back.
func jsonErr(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return "syntax error at byte " + strconv.FormatInt(se.Offset, 10)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "wrong type at " + te.Field
	}
	return "malformed JSON"
}

func decodeTS(raw json.RawMessage, now time.Time) (time.Time, *steward.Error) {
	if len(raw) == 0 || string(raw) == "null" {
		return now, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err == nil {
			if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
				return inRange(t.UTC())
			}
		}
		return time.Time{}, steward.Errorf(steward.CodeInvalid, "ts is not RFC 3339")
	}
	// raw is a JSON token, so a number is in the syntax ParseFloat reads.
	if ms, err := strconv.ParseFloat(string(raw), 64); err == nil && ms >= 0 && ms < 1e15 {
		return inRange(time.UnixMilli(int64(ms)).UTC())
	}
	return time.Time{}, steward.Errorf(steward.CodeInvalid, "ts must be RFC 3339 text or Unix milliseconds")
}

// decodeValue reads a metric value without a trip through any: raw is one
// JSON token, already checked by the decoder.
func decodeValue(raw json.RawMessage) (float64, *steward.Error) {
	switch {
	case string(raw) == "true":
		return 1, nil
	case string(raw) == "false":
		return 0, nil
	case len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'):
		v, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return 0, steward.Errorf(steward.CodeInvalid, "not a finite number")
		}
		return v, nil
	default:
		return 0, steward.Errorf(steward.CodeInvalid, "must be a number or a boolean")
	}
}

// validMetric is the metric-name rule, shared with telemetry schemas and
// the standard vocabulary.
func validMetric(name string) bool { return steward.ValidMetricName(name) }
