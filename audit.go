package steward

import (
	"context"
	"encoding/json"
	"time"
)

// Audit outcomes.
const (
	AuditSuccess = "success"
	AuditFailure = "failure"
	AuditDenied  = "denied"
)

// AuditRecord is one action as the audit log keeps it: who did what to what,
// when, from where, and how it ended, with the state before and after where
// that applies. The log assigns Index and the hashes; callers fill the rest.
type AuditRecord struct {
	// Index is the record's position in its tenant's log (0-based), set by
	// the log.
	Index    int64  `json:"index"`
	TenantID string `json:"tenant_id"`
	// Actor is who acted: "token:ID", "user:ID", "device:ID" or
	// "system:COMPONENT".
	Actor string `json:"actor"`
	// Action names what was done, "resource.verb": "device.quarantine",
	// "deployment.approve", "auth.login".
	Action string `json:"action"`
	// Target is what it was done to: "device:ID", "deployment:ID", ….
	Target  string `json:"target,omitempty"`
	Outcome string `json:"outcome"` // AuditSuccess, AuditFailure or AuditDenied
	// Remote is the client address of the request, when there was one.
	Remote    string          `json:"remote,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	Detail    string          `json:"detail,omitempty"`
	Before    json.RawMessage `json:"before,omitempty"`
	After     json.RawMessage `json:"after,omitempty"`
	At        time.Time       `json:"at"`
}

// Auditor records actions in the tamper-evident audit log. Services take
// one and record what they do; Record returns once the record is durable,
// so that an acknowledged action is never missing from the log.
type Auditor interface {
	Record(ctx context.Context, r AuditRecord) error
}

// AuditorFunc adapts a function to Auditor.
type AuditorFunc func(ctx context.Context, r AuditRecord) error

// Record implements Auditor.
func (f AuditorFunc) Record(ctx context.Context, r AuditRecord) error { return f(ctx, r) }
