package mqtt

import "github.com/steward-iot/steward"

// Reasons a handshake or CONNECT is refused, as Metrics.ConnectRefused
// receives them.
const (
	// RefusedHandshake: the TLS handshake failed or timed out before the gate
	// gave a verdict (scanners, clients that do not trust the server, no
	// client certificate).
	RefusedHandshake = "handshake"
	// RefusedCertificate: the gate refused the client certificate (unknown
	// CA, expired, revoked, device decommissioned).
	RefusedCertificate = "certificate"
	// RefusedClientID: the CONNECT's client ID is not the certificate's
	// device ID.
	RefusedClientID = "client_id"
	// RefusedWill: the CONNECT's will is on a topic the device may not
	// publish, or over the payload limit.
	RefusedWill = "will"
)

// Reasons a device message is refused, as Metrics.MessageRefused receives
// them.
const (
	RefusedACL        = "acl"        // a topic outside the device's own, or a wildcard in a topic name
	RefusedQuarantine = "quarantine" // a channel a quarantined device may not use
	RefusedTooLarge   = "too_large"  // a payload or packet over the limit
	RefusedInvalid    = "invalid"    // the channel's handler refused the payload as malformed
	RefusedHandler    = "handler"    // the channel's handler refused it for another lasting reason
)

// Metrics receives the broker's counts (package metrics implements it over
// Prometheus). Its methods are called on connection goroutines, once per
// message on the hot path: they must be cheap and never block. The reasons
// are the Refused… constants.
type Metrics interface {
	// Connected counts a session established (CONNACK sent).
	Connected()
	// ConnectRefused counts a handshake or CONNECT refused.
	ConnectRefused(reason string)
	// MessageReceived counts a device message handed to the Bus.
	MessageReceived(ch steward.Channel)
	// MessageRefused counts a device message refused.
	MessageRefused(reason string)
}

// noMetrics is the Metrics of a broker configured without any.
type noMetrics struct{}

func (noMetrics) Connected()                      {}
func (noMetrics) ConnectRefused(string)           {}
func (noMetrics) MessageReceived(steward.Channel) {}
func (noMetrics) MessageRefused(string)           {}

// refusedReason maps a security event kind of a refused message to its
// Metrics reason.
func refusedReason(kind steward.SecurityEventKind) string {
	switch kind {
	case steward.SecQuarantineRefused:
		return RefusedQuarantine
	case steward.SecPayloadTooLarge:
		return RefusedTooLarge
	default:
		return RefusedACL
	}
}

// handlerRefusal maps a handler's lasting refusal to its Metrics reason.
func handlerRefusal(err error) string {
	switch steward.ErrorCode(err) {
	case steward.CodeInvalid:
		return RefusedInvalid
	case steward.CodeTooLarge:
		return RefusedTooLarge
	default:
		return RefusedHandler
	}
}

// Sessions is how many device sessions this broker holds.
func (b *Broker) Sessions() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sessions)
}
