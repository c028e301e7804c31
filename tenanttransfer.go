package steward

import (
	"context"
	"time"
)

// Device transfer states. A transfer is pending from its creation until the
// target tenant accepts it with its code, the source cancels it, or it
// expires; the last three are final.
const (
	TransferPending   = "pending"
	TransferAccepted  = "accepted"
	TransferCancelled = "cancelled"
	TransferExpired   = "expired"
)

// DefaultTransferTTL is how long a transfer code can be used.
const DefaultTransferTTL = 7 * 24 * time.Hour

// DeviceTransfer moves a device from one tenant (TenantID, the source) to
// another (TargetTenantID). No operator holds rights in both tenants, so it
// has two sides: the source creates it, which revokes the device's
// credentials and resets it, and receives a one-time code; the target's
// administrator accepts with the code, which creates a device record in the
// target awaiting re-provisioning with an individual enrollment pinned to
// the device's factory certificate. Only the code's hash is stored.
type DeviceTransfer struct {
	ID             string `json:"id"`
	TenantID       string `json:"tenant_id"`
	DeviceID       string `json:"device_id"`
	TargetTenantID string `json:"target_tenant_id"`
	Reason         string `json:"reason"`
	// Policy is what happens to the device's data in the source tenant
	// once the transfer is accepted (as for a decommissioning);
	// RetentionDays goes with the keep policy.
	Policy        DataPolicy `json:"data_policy"`
	RetentionDays int        `json:"retention_days,omitempty"`
	State         string     `json:"state"`
	CodeHash      string     `json:"-"` // SHA-256 of the code (hex)
	// FactoryID is the SHA-256 of the device's factory certificate (hex):
	// the identity the target's individual enrollment is pinned to.
	FactoryID string `json:"factory_id"`
	// Model, Serial and Hardware are the inventory the target receives;
	// nothing else of the source's record or data goes across.
	Model       string    `json:"model,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	Hardware    string    `json:"hardware,omitempty"`
	RequestedBy string    `json:"requested_by"`
	ApprovalID  string    `json:"approval_id,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ExpiresAt   time.Time `json:"expires_at"`
	UpdatedAt   time.Time `json:"updated_at"`
	// FinishedBy is who accepted or cancelled it ("system" for expiry).
	FinishedBy string     `json:"finished_by,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// TargetDeviceID is the device's ID in the target tenant, once
	// accepted; DecommissionID the source's tombstone record.
	TargetDeviceID string `json:"target_device_id,omitempty"`
	DecommissionID string `json:"decommission_id,omitempty"`
}

// IndividualEnrollment lets one factory certificate enroll into a tenant,
// whatever enrollment group its manufacturer CA belongs to. It takes
// precedence over the group at EST enrollment, as in Azure DPS. Steward
// creates one when a device transfer is accepted; at most one exists per
// factory certificate across all tenants.
type IndividualEnrollment struct {
	TenantID  string `json:"tenant_id"`
	DeviceID  string `json:"device_id"`
	FactoryID string `json:"factory_id"` // SHA-256 of the factory certificate (hex)
	// Model and Serial are what the device must report again: the
	// enrollment's policy, in place of a group's.
	Model      string    `json:"model,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	TransferID string    `json:"transfer_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
}

// TransferStore is the part of Store that keeps device transfers and
// individual enrollments.
type TransferStore interface {
	// CreateDeviceTransfer stores a new pending transfer; CodeConflict when
	// the device has a pending one, CodeNotFound for an unknown device.
	CreateDeviceTransfer(ctx context.Context, t DeviceTransfer) error
	// FinishDeviceTransfer writes a pending transfer's new state and what
	// goes with it (finished by and at, target device, tombstone record),
	// only if it is still pending: CodeFailedPrecondition otherwise, so
	// that two acceptances or an acceptance and a cancellation cannot both
	// win.
	FinishDeviceTransfer(ctx context.Context, t DeviceTransfer) error
	// SetTransferDecommission records the source's tombstone record of an
	// accepted transfer.
	SetTransferDecommission(ctx context.Context, tenantID, id, decommissionID string) error
	GetDeviceTransfer(ctx context.Context, tenantID, id string) (DeviceTransfer, error)
	// DeviceTransferByCode finds a transfer by the hash of its code, across
	// tenants: the target presents a code before anything names the source.
	DeviceTransferByCode(ctx context.Context, codeHash string) (DeviceTransfer, error)
	// ListDeviceTransfers returns the source tenant's transfers, of one
	// device when deviceID is set, newest first.
	ListDeviceTransfers(ctx context.Context, tenantID, deviceID string) ([]DeviceTransfer, error)
	// ListIncomingTransfers returns the transfers accepted into a tenant,
	// newest first; pending ones are not listed (only the code names them).
	ListIncomingTransfers(ctx context.Context, targetTenantID string) ([]DeviceTransfer, error)
	// ExpireDeviceTransfers marks, across tenants, the pending transfers
	// whose code expired before now as expired, and returns them.
	ExpireDeviceTransfers(ctx context.Context, now time.Time) ([]DeviceTransfer, error)

	// PutIndividualEnrollment stores an enrollment, replacing the one of the
	// same factory certificate in replaceTenant (the tenant the device
	// leaves; empty when none); CodeConflict when another tenant holds one
	// for that certificate.
	PutIndividualEnrollment(ctx context.Context, e IndividualEnrollment, replaceTenant string) error
	// IndividualEnrollmentByFactoryID finds the enrollment of a factory
	// certificate across tenants: the device plane knows the certificate
	// before the tenant (CodeNotFound when there is none).
	IndividualEnrollmentByFactoryID(ctx context.Context, factoryID string) (IndividualEnrollment, error)
	// ListIndividualEnrollments returns the tenant's enrollments, ordered
	// by device ID.
	ListIndividualEnrollments(ctx context.Context, tenantID string) ([]IndividualEnrollment, error)
}

// TenantTransferRequest is what the source tenant asks of a transfer.
type TenantTransferRequest struct {
	ToTenant string `json:"to_tenant"`
	Reason   string `json:"reason"`
	// Policy and RetentionDays apply to the source's copy of the device's
	// data once the transfer is accepted (default delete).
	Policy        DataPolicy `json:"data_policy,omitempty"`
	RetentionDays int        `json:"retention_days,omitempty"`
	// ApprovalID is the approved request of an earlier call that asked
	// for approval.
	ApprovalID string `json:"approval_id,omitempty"`
}

// TenantTransferResult is a created transfer with its code, which is shown
// once; or the approval the transfer waits for.
type TenantTransferResult struct {
	Transfer *DeviceTransfer  `json:"transfer,omitempty"`
	Code     string           `json:"code,omitempty"`
	Approval *ApprovalRequest `json:"approval,omitempty"`
}

// TransferAcceptance is what accepting a transfer did: the transfer and
// the device created in the accepting tenant.
type TransferAcceptance struct {
	Transfer DeviceTransfer `json:"transfer"`
	Device   Device         `json:"device"`
}

// TenantTransfers moves devices between tenants (package decommission).
type TenantTransfers interface {
	TransferToTenant(ctx context.Context, tenantID, deviceID string, r TenantTransferRequest, actor string) (TenantTransferResult, error)
	CancelTransfer(ctx context.Context, tenantID, id, actor string) (DeviceTransfer, error)
	GetTransfer(ctx context.Context, tenantID, id string) (DeviceTransfer, error)
	ListTransfers(ctx context.Context, tenantID, deviceID string) ([]DeviceTransfer, error)
	// AcceptTransfer is called by the target tenant with the code.
	AcceptTransfer(ctx context.Context, tenantID, code, actor string) (TransferAcceptance, error)
	ListIncomingTransfers(ctx context.Context, tenantID string) ([]DeviceTransfer, error)
}
