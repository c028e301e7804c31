package steward

import (
	"context"
	"crypto/x509"
	"time"
)

// Authority is the PKI: a device CA per tenant, the server's TLS identity,
// and device certificate issuance. Private keys never leave it and are
// stored encrypted.
type Authority interface {
	// DeviceCA returns the tenant's device CA certificate, creating the CA
	// on first use.
	DeviceCA(ctx context.Context, tenantID string) (*x509.Certificate, error)
	// IssueDevice signs an operational certificate for the CSR's public key:
	// CN = deviceID, client-auth only, valid for the configured period.
	IssueDevice(ctx context.Context, tenantID, deviceID string, csr *x509.CertificateRequest) (*x509.Certificate, error)
	// VerifyDevice checks that cert was issued by a tenant's device CA and is
	// within its validity, and returns that tenant's ID. It does not look at
	// revocation: that is the registry's business.
	VerifyDevice(ctx context.Context, cert *x509.Certificate) (tenantID string, err error)
	// ServerCA returns the CA that signed the server's TLS certificates.
	ServerCA() *x509.Certificate
}

// EnrollRequest is an EST request as the device plane received it.
type EnrollRequest struct {
	Label     string              // the optional EST label (/.well-known/est/{label}/…): a tenant ID
	PeerChain []*x509.Certificate // the TLS client certificate chain, leaf first, unverified
	CSR       []byte              // the PKCS#10 request, DER
	Remote    string              // the peer address, for the records
}

// Enroller serves EST (RFC 7030) for the device plane.
type Enroller interface {
	// CACerts returns the certificates a device should trust: the device CA
	// of the tenant its credentials (or the label) name, then the server CA.
	CACerts(ctx context.Context, label string, peer []*x509.Certificate) ([]*x509.Certificate, error)
	// Enroll authenticates a factory certificate and issues a device's first
	// operational certificate (or returns its current one when the same key
	// asks again). It returns the issued certificate first.
	Enroll(ctx context.Context, r EnrollRequest) ([]*x509.Certificate, error)
	// Reenroll authenticates a current operational certificate and renews it.
	Reenroll(ctx context.Context, r EnrollRequest) ([]*x509.Certificate, error)
}

// DeviceSession is who a connected device is, as the device plane caches it
// for the life of a session.
type DeviceSession struct {
	TenantID   string
	DeviceID   string
	State      State
	CertSerial string
	NotAfter   time.Time
}

// DeviceGate is what the device plane asks before letting a device in.
type DeviceGate interface {
	// AuthenticateDevice checks a client certificate (chain to the tenant's
	// CA, validity, not revoked, device not decommissioned) and returns the
	// session identity.
	AuthenticateDevice(ctx context.Context, cert *x509.Certificate, remote string) (DeviceSession, error)
	// RecordSecurityEvent keeps a security event seen on the device plane.
	// It never blocks the device plane for long and never fails it.
	RecordSecurityEvent(ctx context.Context, e SecurityEvent)
}

// DeviceDetail is a device with its certificates and lifecycle history.
type DeviceDetail struct {
	Device
	Certificates []Certificate    `json:"certificates"`
	History      []LifecycleEvent `json:"history"`
}

// DevicePatch is what an operator may set on a device; nil fields stay.
type DevicePatch struct {
	Owner       *string           `json:"owner,omitempty"`
	Location    *Location         `json:"location,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"` // replaces the labels when not nil
	WarrantyEnd *time.Time        `json:"warranty_end,omitempty"`
}

// Fleet is the device registry as operators use it.
type Fleet interface {
	ListDevices(ctx context.Context, tenantID string, q DeviceQuery) ([]Device, error)
	GetDevice(ctx context.Context, tenantID, id string) (DeviceDetail, error)
	UpdateDevice(ctx context.Context, tenantID, id string, p DevicePatch, actor string) (Device, error)
	// Quarantine isolates a device by hand; Release returns it to active.
	Quarantine(ctx context.Context, tenantID, id, reason, actor string) (Device, error)
	Release(ctx context.Context, tenantID, id, actor string) (Device, error)
	// Maintenance takes an active device out of service on purpose;
	// EndMaintenance returns it to active.
	Maintenance(ctx context.Context, tenantID, id, reason, actor string) (Device, error)
	EndMaintenance(ctx context.Context, tenantID, id, actor string) (Device, error)
	// Revoke revokes every certificate of the device and closes its session.
	Revoke(ctx context.Context, tenantID, id, actor string) (Device, error)
	ListSecurityEvents(ctx context.Context, tenantID string, f SecurityEventFilter) ([]SecurityEvent, error)
	LatestSamples(ctx context.Context, tenantID, deviceID string) ([]Sample, error)
	// SendCommand sends a command to a connected device and waits, up to
	// timeout, for its result.
	SendCommand(ctx context.Context, tenantID, deviceID string, c Command, timeout time.Duration) (CommandResult, error)
}

// EnrollmentGroups manages enrollment groups.
type EnrollmentGroups interface {
	// CreateEnrollmentGroup checks the CA (a CA certificate, PEM) and the
	// policy, and registers the group.
	CreateEnrollmentGroup(ctx context.Context, g EnrollmentGroup, actor string) (EnrollmentGroup, error)
	ListEnrollmentGroups(ctx context.Context, tenantID string) ([]EnrollmentGroup, error)
	GetEnrollmentGroup(ctx context.Context, tenantID, id string) (EnrollmentGroup, error)
	DeleteEnrollmentGroup(ctx context.Context, tenantID, id, actor string) error
}
