package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// MaxEventsPerMessage is the most events one message may carry.
const MaxEventsPerMessage = 100

// The keys of an event object that Steward reads; any other key is kept in
// the event's fields.
const (
	keyTS       = "ts"
	keyType     = "type"
	keySeverity = "severity"
	keyMessage  = "message"
)

// Decode parses an events payload, one JSON object or an array of at most
// MaxEventsPerMessage of them, into events of one device received at now.
//
// Each object: "type" (required, 1 to 64 letters, digits, '_', '-', '.'),
// "ts" (RFC 3339 text or Unix milliseconds; absent or null means now),
// "severity" (debug, info, notice, warning, error or critical; absent means
// info), "message" (text of at most 4 KiB). Every other key is kept, as
// sent, in Fields. Nothing is half-taken: an error means no event of the
// message is kept.
func Decode(payload []byte, tenantID, deviceID string, now time.Time) ([]steward.DeviceEvent, error) {
	payload = bytes.TrimSpace(payload)
	var objs []json.RawMessage
	switch {
	case len(payload) > 0 && payload[0] == '[':
		if err := json.Unmarshal(payload, &objs); err != nil {
			return nil, steward.Errorf(steward.CodeInvalid, "events: not a JSON array: %s", jsonErr(err))
		}
		if len(objs) == 0 {
			return nil, steward.Errorf(steward.CodeInvalid, "events: empty array")
		}
		if len(objs) > MaxEventsPerMessage {
			return nil, steward.Errorf(steward.CodeTooLarge, "events: %d events in one message, at most %d", len(objs), MaxEventsPerMessage)
		}
	case len(payload) > 0 && payload[0] == '{':
		objs = []json.RawMessage{payload}
	default:
		return nil, steward.Errorf(steward.CodeInvalid, "events: want a JSON object or array")
	}
	single := payload[0] == '{'
	where := func(i int) string {
		if single {
			return "event"
		}
		return "events[" + strconv.Itoa(i) + "]"
	}
	out := make([]steward.DeviceEvent, 0, len(objs))
	for i, raw := range objs {
		e, err := decodeOne(raw, now)
		if err != nil {
			return nil, steward.Errorf(err.Code, "%s: %s", where(i), err.Message)
		}
		e.TenantID, e.DeviceID, e.Received = tenantID, deviceID, now
		if verr := e.Validate(); verr != nil { // the root's rules, which the store applies too
			return nil, steward.Errorf(steward.CodeInvalid, "%s: %s", where(i), steward.ErrorMessage(verr))
		}
		out = append(out, e)
	}
	return out, nil
}

// decodeOne reads one event object.
func decodeOne(raw json.RawMessage, now time.Time) (steward.DeviceEvent, *steward.Error) {
	if len(raw) == 0 || raw[0] != '{' {
		return steward.DeviceEvent{}, steward.Errorf(steward.CodeInvalid, "not a JSON object")
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return steward.DeviceEvent{}, steward.Errorf(steward.CodeInvalid, "not a JSON object: %s", jsonErr(err))
	}
	var e steward.DeviceEvent
	var err *steward.Error
	if e.At, err = decodeTS(m[keyTS], now); err != nil {
		return e, err
	}
	typ, ok := stringOf(m[keyType])
	switch {
	case !ok || m[keyType] == nil:
		return e, steward.Errorf(steward.CodeInvalid, "type is required and must be a string")
	case !steward.ValidEventType(typ):
		return e, steward.Errorf(steward.CodeInvalid, "type %q: use 1 to %d letters, digits, '_', '-', '.'", truncate(typ, 80), steward.MaxEventTypeLen)
	}
	e.Type = typ
	e.Severity = steward.SeverityInfo
	if raw, present := m[keySeverity]; present && string(raw) != "null" {
		s, ok := stringOf(raw)
		if !ok || !steward.Severity(s).Valid() {
			return e, steward.Errorf(steward.CodeInvalid, "severity must be one of debug, info, notice, warning, error, critical")
		}
		e.Severity = steward.Severity(s)
	}
	if raw, present := m[keyMessage]; present && string(raw) != "null" {
		s, ok := stringOf(raw)
		if !ok {
			return e, steward.Errorf(steward.CodeInvalid, "message must be a string")
		}
		if len(s) > steward.MaxEventMessageLen {
			return e, steward.Errorf(steward.CodeInvalid, "message is %d bytes, at most %d", len(s), steward.MaxEventMessageLen)
		}
		e.Message = s
	}
	for k, v := range m {
		switch k {
		case keyTS, keyType, keySeverity, keyMessage:
			continue
		}
		// UseNumber keeps the numbers of the fields as sent: a 64-bit
		// counter must not come back rounded to a float.
		var val any
		d := json.NewDecoder(bytes.NewReader(v))
		d.UseNumber()
		if err := d.Decode(&val); err != nil { // cannot happen: v is a token the decoder checked
			return e, steward.Errorf(steward.CodeInvalid, "field %q: %s", truncate(k, 80), jsonErr(err))
		}
		if e.Fields == nil {
			e.Fields = map[string]any{}
		}
		e.Fields[k] = val
	}
	return e, nil
}

// stringOf reads a JSON string; absent (nil) reads as "" and ok.
func stringOf(raw json.RawMessage) (string, bool) {
	if raw == nil {
		return "", true
	}
	if raw[0] != '"' {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

// decodeTS reads ts: RFC 3339 text or Unix milliseconds; absent or null
// means now.
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
	// raw is one JSON token, so a number is in the syntax ParseFloat reads.
	if ms, err := strconv.ParseFloat(string(raw), 64); err == nil && ms >= 0 && ms < 1e15 {
		return inRange(time.UnixMilli(int64(ms)).UTC())
	}
	return time.Time{}, steward.Errorf(steward.CodeInvalid, "ts must be RFC 3339 text or Unix milliseconds")
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
		return "wrong type"
	}
	return "malformed JSON"
}

// truncate shortens what is quoted back to the device.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
