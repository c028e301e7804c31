package steward

import "time"

// Certificate is an operational certificate issued to a device.
type Certificate struct {
	Serial    string     `json:"serial"` // hex serial number
	TenantID  string     `json:"tenant_id"`
	DeviceID  string     `json:"device_id"`
	KeyID     string     `json:"key_id"` // SHA-256 of the subject public key info (hex)
	NotBefore time.Time  `json:"not_before"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	PEM       string     `json:"pem"`
	CreatedAt time.Time  `json:"created_at"`
}

// Revoked reports whether the certificate has been revoked.
func (c *Certificate) Revoked() bool { return c.RevokedAt != nil }

// SecurityEventKind names a kind of security event.
type SecurityEventKind string

// Security event kinds recorded by the server without the device's help.
const (
	SecSuspectedClone    SecurityEventKind = "suspected_clone"    // a factory identity enrolled again with another key
	SecEnrollRefused     SecurityEventKind = "enroll_refused"     // EST enrollment refused (unknown CA, expired, serial not allowed…)
	SecAuthFailed        SecurityEventKind = "auth_failed"        // device-plane authentication refused
	SecACLDenied         SecurityEventKind = "acl_denied"         // a publish or subscribe outside the device's topics
	SecClientIDMismatch  SecurityEventKind = "client_id_mismatch" // MQTT client ID differs from the certificate
	SecRevokedCredential SecurityEventKind = "revoked_credential" // a revoked certificate was presented
	SecPayloadTooLarge   SecurityEventKind = "payload_too_large"  // an oversized MQTT message
	SecValidationFailed  SecurityEventKind = "validation_failed"  // attributes failed the enrollment policy
	SecQuarantineRefused SecurityEventKind = "quarantine_refused" // a quarantined device tried what quarantine forbids
)

// SecurityEvent is one security-relevant observation about a device.
type SecurityEvent struct {
	ID       int64             `json:"id"`
	TenantID string            `json:"tenant_id"`
	DeviceID string            `json:"device_id,omitempty"`
	Kind     SecurityEventKind `json:"kind"`
	Detail   string            `json:"detail"`
	Remote   string            `json:"remote,omitempty"`
	At       time.Time         `json:"at"`
}

// Role names a set of permissions held by an operator, a service account
// or a token: a built-in role (these two, and those in permission.go) or a
// tenant's custom role. admin holds every permission within its tenant;
// system also manages tenants.
type Role string

// The administrator roles.
const (
	RoleAdmin  Role = "admin"
	RoleSystem Role = "system"
)

// APIToken is a bearer token for the management plane. Only the SHA-256 of
// the secret is stored.
type APIToken struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Name      string    `json:"name"`
	Role      Role      `json:"role"`
	Hash      string    `json:"-"` // SHA-256 of the secret (hex)
	CreatedAt time.Time `json:"created_at"`
}

// Tenant is an isolated organisation: its own device CA, groups and devices.
type Tenant struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Status is TenantActive or TenantSuspended (tenantadmin.go); a store
	// creates a tenant with an empty status as active.
	Status          string     `json:"status"`
	StatusReason    string     `json:"status_reason,omitempty"`
	StatusChangedAt *time.Time `json:"status_changed_at,omitempty"`
	CreatedAt       time.Time  `json:"created_at"`
}

// Sample is one metric value of one device.
type Sample struct {
	TenantID string    `json:"tenant_id"`
	DeviceID string    `json:"device_id"`
	Metric   string    `json:"metric"`
	Value    float64   `json:"value"`
	At       time.Time `json:"at"`
}
