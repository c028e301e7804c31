package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/steward-iot/steward"
)

// ProblemContentType is the media type of error bodies (RFC 9457).
const ProblemContentType = "application/problem+json"

// codeMethodNotAllowed is the one code the API adds to steward's: the
// services never produce it, only the router.
const codeMethodNotAllowed steward.Code = "method_not_allowed"

// Problem is an RFC 9457 problem document, with two extension members: code
// (the steward.Code, stable for programs) and request_id (to find the log
// lines of a failed request).
type Problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Code      steward.Code `json:"code"`
	RequestID string       `json:"request_id,omitempty"`
}

// statusOf maps an error code to its HTTP status: the root package's one
// mapping, plus the router's 405.
func statusOf(c steward.Code) int {
	if c == codeMethodNotAllowed {
		return http.StatusMethodNotAllowed
	}
	return c.HTTPStatus()
}

// writeError answers with the problem document of err. Only the caller-safe
// message is sent; the internal cause of a server-side failure is logged
// with the request ID, which the caller gets to quote.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := steward.ErrorCode(err)
	status := statusOf(code)
	id := requestIDFrom(r.Context())
	if status >= 500 {
		s.log.Error("api request failed", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", status, "code", code, "err", err)
	} else {
		s.log.Debug("api request refused", "request_id", id, "method", r.Method, "path", r.URL.Path,
			"status", status, "code", code, "err", err)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="steward"`)
	}
	setRetryAfter(w, err)
	detail := steward.ErrorMessage(err)
	if code == steward.CodeInternal {
		detail = "internal error; the server log has the details under request ID " + id
	}
	p := Problem{
		// about:blank says the problem has no meaning beyond its status;
		// programs tell problems apart by the code member.
		Type:      "about:blank",
		Title:     http.StatusText(status),
		Status:    status,
		Detail:    detail,
		Code:      code,
		RequestID: id,
	}
	body, mErr := marshal(p)
	if mErr != nil {
		s.log.Error("encode problem", "request_id", id, "err", mErr)
		return
	}
	w.Header().Set("Content-Type", ProblemContentType)
	w.Header().Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeJSON answers with v as JSON. The body is encoded before anything is
// written so that an encoding failure can still become a problem.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := marshal(v)
	if err != nil {
		return steward.WrapError(steward.CodeInternal, err, "encode response")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return nil
}

// marshal encodes v as one line of JSON. HTML characters are left as they
// are: the API serves JSON, never HTML, and "<token>" reads better than
// "\u003ctoken\u003e".
func marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// decodeJSON reads a request body of at most MaxBodyBytes holding exactly
// one JSON value into v, refusing unknown fields. Every failure is the
// caller's and says what is wrong; nothing is written before the body has
// been read whole.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/json" && mt != "application/merge-patch+json") {
		return steward.Errorf(steward.CodeUnsupported, "request body must be application/json, not %q", ct)
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bodyError(err)
	}
	// A second value, or anything after the first, is a malformed body.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return bodyError(err)
		}
		return steward.Errorf(steward.CodeInvalid, "request body must hold exactly one JSON value")
	}
	return nil
}

// bodyError turns a JSON decoding failure into a caller-safe error.
func bodyError(err error) error {
	var tooLarge *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooLarge):
		return steward.Errorf(steward.CodeTooLarge, "request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, io.EOF):
		return steward.Errorf(steward.CodeInvalid, "request body is empty; a JSON object is expected")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return steward.Errorf(steward.CodeInvalid, "request body is truncated JSON")
	case errors.As(err, &syntax):
		return steward.Errorf(steward.CodeInvalid, "request body is not valid JSON (at byte %d): %s", syntax.Offset, syntax.Error())
	case errors.As(err, &typ):
		if typ.Field == "" {
			return steward.Errorf(steward.CodeInvalid, "request body must be a JSON object, not %s", typ.Value)
		}
		return steward.Errorf(steward.CodeInvalid, "field %q must be %s, not %s", typ.Field, jsonTypeName(typ.Type.Kind().String()), typ.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for unknown fields.
		return steward.Errorf(steward.CodeInvalid, "unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	default:
		// A field's own decoding (steward.Duration and the like) says
		// what is wrong with it in terms meant for the client.
		var se *steward.Error
		if errors.As(err, &se) && se.Code == steward.CodeInvalid {
			return se
		}
		return steward.WrapError(steward.CodeInvalid, err, "request body cannot be read as JSON")
	}
}

// jsonTypeName names a Go kind the way a JSON user would.
func jsonTypeName(kind string) string {
	switch kind {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "map", "struct":
		return "an object"
	case "slice", "array":
		return "an array"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64", "float32", "float64":
		return "a number"
	default:
		return "a " + kind
	}
}

// requestIDKey is the context key of the request ID.
type requestIDKey struct{}

// requestID takes a well-formed X-Request-ID from the caller (so that a
// proxy's ID follows the request into our logs) or makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-ID"); id != "" && len(id) <= 64 && isToken(id) {
		return id
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}

// isToken reports whether s holds only characters safe to log and echo.
func isToken(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// requestIDFrom returns the request ID that ServeHTTP put in ctx.
func requestIDFrom(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// invalidf is a shorthand for the most common caller error.
func invalidf(format string, args ...any) error {
	return steward.Errorf(steward.CodeInvalid, format, args...)
}
