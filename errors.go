package steward

import (
	"errors"
	"fmt"
	"net/http"
)

// Code classifies an Error. The management plane maps each code to one HTTP
// status in a single place (http.statusOf); the device plane maps them to
// EST statuses and MQTT reason codes.
type Code string

// The error codes. Every error that crosses a service boundary carries one.
const (
	CodeInvalid            Code = "invalid"             // the input is malformed or breaks a rule
	CodeNotFound           Code = "not_found"           // no such thing, or not in the caller's tenant
	CodeConflict           Code = "conflict"            // already exists, or changed concurrently
	CodeUnauthenticated    Code = "unauthenticated"     // no or bad credentials
	CodePermissionDenied   Code = "permission_denied"   // credentials fine, action not allowed
	CodeFailedPrecondition Code = "failed_precondition" // not allowed in the current state
	CodeTooLarge           Code = "too_large"           // a body or payload over its limit
	CodeUnsupported        Code = "unsupported"         // e.g. a wrong content type
	CodeUnavailable        Code = "unavailable"         // try again later
	CodeRateLimited        Code = "rate_limited"        // too many requests; try again after a while
	CodeInternal           Code = "internal"            // a bug or a failed dependency; details are logged, not sent
)

// Error is the one error type of Steward. Message is safe to show to the
// caller; Err holds the internal cause, which is logged and never sent.
type Error struct {
	Code    Code
	Message string
	Err     error
}

// Error implements error.
func (e *Error) Error() string {
	if e.Err != nil {
		return e.Message + ": " + e.Err.Error()
	}
	return e.Message
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a caller-safe message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// WrapError builds an Error whose message is safe to show and whose cause
// is kept for the logs.
func WrapError(code Code, err error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrorCode returns the code of the first *Error in err's chain, or
// CodeInternal when there is none (an unclassified error is a bug or a failed
// dependency, never the caller's fault).
func ErrorCode(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the caller-safe message of err: the message of the
// first *Error in its chain, or a generic text for anything else.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) && e.Code != CodeInternal {
		return e.Message
	}
	return "internal error"
}

// IsNotFound reports whether err carries CodeNotFound.
func IsNotFound(err error) bool { return ErrorCode(err) == CodeNotFound }

// IsConflict reports whether err carries CodeConflict.
func IsConflict(err error) bool { return ErrorCode(err) == CodeConflict }

// HTTPStatus is the one mapping from error codes to HTTP statuses, used by
// the management plane and by EST on the device plane.
func (c Code) HTTPStatus() int {
	switch c {
	case CodeInvalid:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeConflict:
		return http.StatusConflict
	case CodeUnauthenticated:
		return http.StatusUnauthorized
	case CodePermissionDenied:
		return http.StatusForbidden
	case CodeFailedPrecondition:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnsupported:
		return http.StatusUnsupportedMediaType
	case CodeUnavailable:
		return http.StatusServiceUnavailable
	case CodeRateLimited:
		return http.StatusTooManyRequests
	default:
		return http.StatusInternalServerError
	}
}

// CodeOfHTTPStatus is the reverse of Code.HTTPStatus, for clients reading
// an answer: 409 reads as a conflict (the server also uses it for failed
// preconditions), and the statuses a proxy or a busy server sends (202
// pending, 502, 503, 504) read as unavailable.
func CodeOfHTTPStatus(status int) Code {
	switch status {
	case http.StatusBadRequest:
		return CodeInvalid
	case http.StatusUnauthorized:
		return CodeUnauthenticated
	case http.StatusForbidden:
		return CodePermissionDenied
	case http.StatusNotFound:
		return CodeNotFound
	case http.StatusConflict:
		return CodeConflict
	case http.StatusRequestEntityTooLarge:
		return CodeTooLarge
	case http.StatusUnsupportedMediaType:
		return CodeUnsupported
	case http.StatusTooManyRequests:
		return CodeRateLimited
	case http.StatusAccepted, http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
		return CodeUnavailable
	default:
		return CodeInternal
	}
}
