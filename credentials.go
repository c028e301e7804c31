package steward

import (
	"context"
	"crypto/x509"
	"time"
)

// RevocationReason says why a certificate was revoked, in the words of the
// CRLReason of RFC 5280 §5.3.1.
type RevocationReason string

// The revocation reasons Steward uses.
const (
	ReasonUnspecified          RevocationReason = "unspecified"
	ReasonKeyCompromise        RevocationReason = "key_compromise"
	ReasonCACompromise         RevocationReason = "ca_compromise"
	ReasonAffiliationChanged   RevocationReason = "affiliation_changed"
	ReasonSuperseded           RevocationReason = "superseded"
	ReasonCessationOfOperation RevocationReason = "cessation_of_operation"
)

// reasonCodes are the CRLReason numbers of RFC 5280.
var reasonCodes = map[RevocationReason]int{
	ReasonUnspecified:          0,
	ReasonKeyCompromise:        1,
	ReasonCACompromise:         2,
	ReasonAffiliationChanged:   3,
	ReasonSuperseded:           4,
	ReasonCessationOfOperation: 5,
}

// Valid reports whether r is a known reason.
func (r RevocationReason) Valid() bool { _, ok := reasonCodes[r]; return ok }

// Code is the reason's CRLReason number (0, unspecified, for an unknown one).
func (r RevocationReason) Code() int { return reasonCodes[r] }

// Revocation is one certificate revoked on purpose, with its reason.
type Revocation struct {
	TenantID string           `json:"tenant_id"`
	Serial   string           `json:"serial"`
	DeviceID string           `json:"device_id"`
	Reason   RevocationReason `json:"reason"`
	Actor    string           `json:"actor"`
	At       time.Time        `json:"at"`
}

// RevokedCertificate is a revoked certificate as a CRL lists it.
type RevokedCertificate struct {
	Certificate
	Reason RevocationReason `json:"reason"`
}

// Device CA generation states. A tenant has one active generation, which
// issues; during a rotation the one before it is previous until its overlap
// ends (its certificates are still accepted), then retired.
const (
	CAActive   = "active"
	CAPrevious = "previous"
	CARetired  = "retired"
)

// CAGeneration is one device CA of a tenant. Generation 0 is the CA the
// tenant was created with.
type CAGeneration struct {
	TenantID   string `json:"tenant_id"`
	Generation int    `json:"generation"`
	// KeyID is the CA's subject key identifier (hex): what its
	// certificates name as their authority key identifier.
	KeyID string `json:"key_id"`
	State string `json:"state"`
	// OverlapUntil is, for a previous generation, when its certificates
	// stop being accepted.
	OverlapUntil *time.Time `json:"overlap_until,omitempty"`
	RetiredAt    *time.Time `json:"retired_at,omitempty"`
	// ApprovalID is the approval the rotation that made it went through.
	ApprovalID string    `json:"approval_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// CAGenerationInfo is a generation with its certificate, as the Authority
// reports it.
type CAGenerationInfo struct {
	CAGeneration
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
	PEM      string    `json:"pem"`
}

// CRL is a certificate revocation list as the store keeps the latest one of
// each issuing CA: the DER, its number and the digest of the revocations it
// lists (a CRL is re-signed only when they change or it nears its next
// update).
type CRL struct {
	TenantID    string    `json:"tenant_id"`
	IssuerKeyID string    `json:"issuer_key_id"`
	Number      int64     `json:"number"`
	ThisUpdate  time.Time `json:"this_update"`
	NextUpdate  time.Time `json:"next_update"`
	Digest      string    `json:"digest"`
	DER         []byte    `json:"-"`
}

// RevokedCA is a manufacturer CA that may no longer enroll devices.
type RevokedCA struct {
	TenantID    string    `json:"tenant_id"`
	Fingerprint string    `json:"fingerprint"` // SHA-256 of the CA certificate (hex)
	GroupID     string    `json:"group_id"`
	Reason      string    `json:"reason"`
	Actor       string    `json:"actor"`
	At          time.Time `json:"at"`
}

// DataPolicy is what happens to a decommissioned device's data.
type DataPolicy string

// The data policies.
const (
	DataDelete    DataPolicy = "delete"    // telemetry, events and presence history deleted
	DataAnonymise DataPolicy = "anonymise" // identifying inventory and addresses removed, measurements kept
	DataKeep      DataPolicy = "keep"      // kept for the retention period, then deleted
)

// Valid reports whether p is a known policy.
func (p DataPolicy) Valid() bool { return p == DataDelete || p == DataAnonymise || p == DataKeep }

// Decommissioning states.
const (
	DecommissionAwaitingApproval = "awaiting_approval"
	DecommissionRunning          = "running"
	DecommissionCompleted        = "completed"
	DecommissionFailed           = "failed"
)

// Step outcomes.
const (
	StepOK      = "ok"      // done as intended
	StepFailed  = "failed"  // tried and failed; the workflow stops
	StepWarning = "warning" // not as intended, and the workflow goes on (a wipe nobody acknowledged)
	StepSkipped = "skipped"
)

// DecommissionStep is one step of a decommissioning and how it ended.
type DecommissionStep struct {
	Name    string    `json:"name"`
	Outcome string    `json:"outcome"`
	Detail  string    `json:"detail,omitempty"`
	At      time.Time `json:"at"`
}

// Decommission is the record of one device's decommissioning.
type Decommission struct {
	ID          string             `json:"id"`
	TenantID    string             `json:"tenant_id"`
	DeviceID    string             `json:"device_id"`
	Reason      string             `json:"reason"`
	Policy      DataPolicy         `json:"data_policy"`
	RetainUntil *time.Time         `json:"retain_until,omitempty"`
	State       string             `json:"state"`
	Steps       []DecommissionStep `json:"steps"`
	RequestedBy string             `json:"requested_by"`
	ApprovalID  string             `json:"approval_id,omitempty"`
	CreatedAt   time.Time          `json:"created_at"`
	UpdatedAt   time.Time          `json:"updated_at"`
	FinishedAt  *time.Time         `json:"finished_at,omitempty"`
	// Certificate is the signed decommissioning record (PEM of a CMS
	// SignedData), once the workflow has completed.
	Certificate string `json:"certificate,omitempty"`
}

// CredentialStore keeps what credential rotation, revocation and
// decommissioning need beyond the device registry.
type CredentialStore interface {
	// RevokeCertificate revokes one certificate of the tenant and records
	// why; CodeNotFound for an unknown serial, CodeFailedPrecondition when
	// it was already revoked. It returns the certificate as stored.
	RevokeCertificate(ctx context.Context, r Revocation) (Certificate, error)
	// ListRevokedCertificates returns the tenant's revoked certificates
	// that are still within their validity at now, ordered by serial.
	ListRevokedCertificates(ctx context.Context, tenantID string, now time.Time) ([]RevokedCertificate, error)
	// ListExpiringCertificates returns the tenant's unrevoked certificates
	// of devices that are not decommissioned whose validity ends in [from,
	// to), soonest first; limit 0 means 1000.
	ListExpiringCertificates(ctx context.Context, tenantID string, from, to time.Time, limit int) ([]Certificate, error)
	// ListGroupDevices returns the IDs of the tenant's devices enrolled
	// through a group, ordered by ID.
	ListGroupDevices(ctx context.Context, tenantID, groupID string) ([]string, error)

	// AddCAGeneration records a new device CA generation (CodeConflict
	// when the tenant has that generation).
	AddCAGeneration(ctx context.Context, g CAGeneration) error
	// UpdateCAGeneration writes a generation's state, overlap and
	// retirement.
	UpdateCAGeneration(ctx context.Context, g CAGeneration) error
	// ListCAGenerations returns the tenant's generations, oldest first
	// (none for a tenant that never rotated).
	ListCAGenerations(ctx context.Context, tenantID string) ([]CAGeneration, error)

	// NextCRLNumber returns the tenant's next CRL number (1, 2, …), never
	// the same twice.
	NextCRLNumber(ctx context.Context, tenantID string) (int64, error)
	// PutCRL keeps the latest CRL of an issuing CA.
	PutCRL(ctx context.Context, c CRL) error
	// GetCRL returns the latest CRL of an issuing CA (CodeNotFound when
	// none was made).
	GetCRL(ctx context.Context, tenantID, issuerKeyID string) (CRL, error)

	// RevokeManufacturerCA records that a manufacturer CA may no longer
	// enroll devices (a second record of the same CA is a no-op).
	RevokeManufacturerCA(ctx context.Context, r RevokedCA) error
	// GetRevokedCA returns the revocation of a manufacturer CA by its
	// fingerprint (CodeNotFound when it is not revoked).
	GetRevokedCA(ctx context.Context, tenantID, fingerprint string) (RevokedCA, error)

	// CreateDecommission stores a new decommissioning record; CodeConflict
	// when the device has one that is not failed.
	CreateDecommission(ctx context.Context, d Decommission) error
	// UpdateDecommission writes a record's state, steps, retention and
	// certificate.
	UpdateDecommission(ctx context.Context, d Decommission) error
	GetDecommission(ctx context.Context, tenantID, id string) (Decommission, error)
	// ListDecommissions returns the tenant's records, of one device when
	// deviceID is set, newest first.
	ListDecommissions(ctx context.Context, tenantID, deviceID string) ([]Decommission, error)
	// ListRetainedDecommissions returns, across tenants, the completed
	// records with the keep policy whose retention ended before now and
	// whose data is still there.
	ListRetainedDecommissions(ctx context.Context, now time.Time, limit int) ([]Decommission, error)

	// EraseDeviceData deletes a device's telemetry (raw and rolled up),
	// events and presence history, in one transaction, and returns how
	// many rows went.
	EraseDeviceData(ctx context.Context, tenantID, deviceID string) (int64, error)
	// AnonymiseDeviceData removes the client addresses from a device's
	// presence history and security events.
	AnonymiseDeviceData(ctx context.Context, tenantID, deviceID string) error
}

// CARotator is the part of the PKI that rotates a tenant's device CA.
type CARotator interface {
	// RotateDeviceCA makes a new device CA for the tenant, which issues
	// from now on; the current one stays trusted for overlap.
	RotateDeviceCA(ctx context.Context, tenantID string, overlap time.Duration, approvalID string) ([]CAGenerationInfo, error)
	// RetirePreviousCA stops trusting the previous device CA at once.
	RetirePreviousCA(ctx context.Context, tenantID string) ([]CAGenerationInfo, error)
	// DeviceCAStatus lists the tenant's device CA generations.
	DeviceCAStatus(ctx context.Context, tenantID string) ([]CAGenerationInfo, error)
	// TrustedDeviceCAs returns the device CAs whose certificates are
	// accepted now: the active one first.
	TrustedDeviceCAs(ctx context.Context, tenantID string) ([]*x509.Certificate, error)
	// SignCRL signs a CRL with the trusted device CA whose key ID is
	// issuerKeyID.
	SignCRL(ctx context.Context, tenantID, issuerKeyID string, tmpl *x509.RevocationList) ([]byte, error)
	// SignRecord signs data as a CMS SignedData (DER) with the tenant's
	// active device CA.
	SignRecord(ctx context.Context, tenantID string, data []byte) ([]byte, error)
}

// Commands of the credential lifecycle, answered by the agent.
const (
	// CommandRotateCredentials asks a device to make a new key, renew its
	// certificate for it over EST with its current one, put the new one
	// in use and answer over the connection made with it; the result
	// carries "serial" (the new certificate's, hex) and "previous_serial".
	CommandRotateCredentials = "rotate-credentials"
	// CommandWipe asks a device to erase its operational key, certificate
	// and state, answer, and stop.
	CommandWipe = "wipe"
)

// DeviceAccessRemover is a part of Steward that holds something a device
// can reach from the cloud (desired configuration, deployment jobs,
// subscriptions) and lets go of it when the device is decommissioned. It
// returns what it removed, for the decommissioning record.
type DeviceAccessRemover interface {
	RemoveDeviceAccess(ctx context.Context, tenantID, deviceID string) (string, error)
}

// CredentialRotation is what a device's credential rotation did.
type CredentialRotation struct {
	DeviceID  string    `json:"device_id"`
	Serial    string    `json:"serial"` // the new certificate
	NotAfter  time.Time `json:"not_after"`
	IssuerKey string    `json:"issuer_key_id"`
	// Revoked are the device's other certificates, revoked now that the
	// new one is in use.
	Revoked []string `json:"revoked"`
}

// GroupRevocation is what revoking an enrollment group or its manufacturer
// CA did.
type GroupRevocation struct {
	GroupID string `json:"group_id"`
	// CARevoked is set when the manufacturer CA may no longer enroll.
	CARevoked bool `json:"ca_revoked"`
	// Devices are the devices whose credentials were revoked.
	Devices []string `json:"devices"`
}

// CARotation is the answer to a CA rotation: the generations, or the
// approval it waits for.
type CARotation struct {
	Generations []CAGenerationInfo `json:"generations,omitempty"`
	Approval    *ApprovalRequest   `json:"approval,omitempty"`
}

// CAMigration is what moving a fleet to the active CA did.
type CAMigration struct {
	// Moved are the devices now on a certificate of the active CA.
	Moved []CredentialRotation `json:"moved"`
	// Pending are the devices still on an older CA, with why (not
	// connected: it moves at its next renewal or on a later migration).
	Pending map[string]string `json:"pending"`
}

// Credentials is credential rotation, revocation and CRLs as the
// management plane uses them (package credentials).
type Credentials interface {
	RevokeCertificate(ctx context.Context, tenantID, serial string, reason RevocationReason, actor string) (Certificate, error)
	RevokeGroup(ctx context.Context, tenantID, groupID, reason, actor string) (GroupRevocation, error)
	RevokeManufacturerCA(ctx context.Context, tenantID, groupID, reason string, devices bool, actor string) (GroupRevocation, error)
	// CRL returns the tenant's CRL of the device CA with key ID
	// issuerKeyID (the active one when empty), DER.
	CRL(ctx context.Context, tenantID, issuerKeyID string) ([]byte, error)
	Expiring(ctx context.Context, tenantID string, within time.Duration, limit int) ([]Certificate, error)
	RotateDevice(ctx context.Context, tenantID, deviceID, actor string) (CredentialRotation, error)
	RotateCA(ctx context.Context, tenantID string, overlap time.Duration, approvalID, actor string) (CARotation, error)
	CAStatus(ctx context.Context, tenantID string) ([]CAGenerationInfo, error)
	MigrateFleet(ctx context.Context, tenantID, actor string) (CAMigration, error)
	RetireOldCA(ctx context.Context, tenantID, actor string) ([]CAGenerationInfo, error)
}

// DecommissionRequest is what an operator asks of a decommissioning.
type DecommissionRequest struct {
	Reason string     `json:"reason"`
	Policy DataPolicy `json:"data_policy,omitempty"`
	// RetentionDays is how long a keep policy keeps the data (0: the
	// node's default).
	RetentionDays int `json:"retention_days,omitempty"`
	// ApprovalID is the approved request of an earlier call that asked
	// for approval.
	ApprovalID string `json:"approval_id,omitempty"`
}

// DecommissionResult is a decommissioning as the caller gets it: its
// record, and the approval it waits for when one is needed.
type DecommissionResult struct {
	Record   Decommission     `json:"record"`
	Approval *ApprovalRequest `json:"approval,omitempty"`
}

// TransferRequest moves a device to another owner (same tenant).
type TransferRequest struct {
	Owner  string `json:"owner"`
	Reason string `json:"reason"`
}

// Decommissioner runs decommissionings and transfers (package
// decommission).
type Decommissioner interface {
	Decommission(ctx context.Context, tenantID, deviceID string, r DecommissionRequest, actor string) (DecommissionResult, error)
	GetDecommission(ctx context.Context, tenantID, id string) (Decommission, error)
	ListDecommissions(ctx context.Context, tenantID, deviceID string) ([]Decommission, error)
	Transfer(ctx context.Context, tenantID, deviceID string, r TransferRequest, actor string) (Device, error)
}
