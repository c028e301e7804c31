package steward

import (
	"context"
	"time"
)

// Store is Steward's state. Two adapters implement it, sqlite (embedded) and
// postgres (cluster), and both pass the one conformance suite in storetest.
//
// Tenant isolation is enforced here: every method that reads or changes a
// tenant's data takes the tenant ID and matches it in the query, so a
// caller holding another tenant's ID gets CodeNotFound, never the data. The
// few lookups that must work before the tenant is known (a token by its
// hash, an enrollment group by its CA subject) say so.
//
// Errors carry CodeNotFound and CodeConflict where those apply; anything
// else from the database is CodeInternal.
type Store interface {
	// InTx runs fn in one transaction: all of fn's writes land, or none.
	InTx(ctx context.Context, fn func(tx Store) error) error
	Close() error

	CreateTenant(ctx context.Context, t Tenant) error
	GetTenant(ctx context.Context, id string) (Tenant, error)
	ListTenants(ctx context.Context) ([]Tenant, error)

	// CreateSecret stores a server-held secret (already encrypted by the
	// caller) under a unique name; CodeConflict when the name is taken, so
	// that two nodes starting at once agree on one value.
	CreateSecret(ctx context.Context, name string, value []byte) error
	GetSecret(ctx context.Context, name string) ([]byte, error)

	CreateToken(ctx context.Context, t APIToken) error
	// TokenByHash finds a token across tenants: authentication happens
	// before the tenant is known.
	TokenByHash(ctx context.Context, hash string) (APIToken, error)
	ListTokens(ctx context.Context, tenantID string) ([]APIToken, error)
	DeleteToken(ctx context.Context, tenantID, id string) error

	// CreateEnrollmentGroup refuses (CodeConflict) a name already used in the
	// tenant and a CA already registered in any tenant.
	CreateEnrollmentGroup(ctx context.Context, g EnrollmentGroup) error
	GetEnrollmentGroup(ctx context.Context, tenantID, id string) (EnrollmentGroup, error)
	ListEnrollmentGroups(ctx context.Context, tenantID string) ([]EnrollmentGroup, error)
	DeleteEnrollmentGroup(ctx context.Context, tenantID, id string) error
	// EnrollmentGroupsBySubject finds the groups, across tenants, whose CA
	// subject hash is the given one: the device plane knows a factory
	// certificate's issuer before it knows the tenant.
	EnrollmentGroupsBySubject(ctx context.Context, subjectHash string) ([]EnrollmentGroup, error)

	// CreateDevice refuses (CodeConflict) an ID in use in any tenant and a
	// factory ID already bound to a device of the tenant.
	CreateDevice(ctx context.Context, d Device) error
	GetDevice(ctx context.Context, tenantID, id string) (Device, error)
	DeviceByFactoryID(ctx context.Context, tenantID, factoryID string) (Device, error)
	// UpdateDevice writes every mutable field of d except the presence
	// fields (UpdatePresence owns those) when d.Version is the stored version, and returns the device as stored, with its new version;
	// CodeConflict when someone else updated it first.
	UpdateDevice(ctx context.Context, d Device) (Device, error)
	// UpdatePresence writes only the presence fields; it never conflicts.
	UpdatePresence(ctx context.Context, tenantID, deviceID string, p Presence) error
	// TouchDevices moves the last-seen time of each device forward (never
	// back) in one transaction; unknown devices are skipped.
	TouchDevices(ctx context.Context, seen []DeviceSeen) error
	// ListDevices returns the tenant's devices matching q, ordered by ID.
	ListDevices(ctx context.Context, tenantID string, q DeviceQuery) ([]Device, error)
	CountDevices(ctx context.Context, tenantID string, q DeviceQuery) (int, error)

	AddLifecycleEvent(ctx context.Context, e LifecycleEvent) error
	ListLifecycleEvents(ctx context.Context, tenantID, deviceID string) ([]LifecycleEvent, error)

	AddCertificate(ctx context.Context, c Certificate) error
	GetCertificate(ctx context.Context, tenantID, serial string) (Certificate, error)
	ListCertificates(ctx context.Context, tenantID, deviceID string) ([]Certificate, error)
	// RevokeCertificates revokes every unrevoked certificate of a device and
	// returns how many it revoked.
	RevokeCertificates(ctx context.Context, tenantID, deviceID string, at time.Time) (int, error)

	AddSecurityEvent(ctx context.Context, e SecurityEvent) error
	ListSecurityEvents(ctx context.Context, tenantID string, f SecurityEventFilter) ([]SecurityEvent, error)

	// WriteSamples writes a batch of samples, of any tenants, in one
	// transaction, and keeps the latest value per device and metric.
	WriteSamples(ctx context.Context, samples []Sample) error
	// LatestSamples returns the latest value of each metric of a device.
	LatestSamples(ctx context.Context, tenantID, deviceID string) ([]Sample, error)
	// ListSamples returns a device's samples of one metric in [from, to),
	// oldest first; a zero to means no upper bound, limit 0 the store's
	// default (1000, at most 10000).
	ListSamples(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, limit int) ([]Sample, error)
}

// DeviceSeen says a device was heard from at a time.
type DeviceSeen struct {
	TenantID string
	DeviceID string
	At       time.Time
}

// DeviceQuery selects devices. Query is the fleet query language (see
// docs/query.md), parsed and compiled to parameterised SQL by the store; an
// invalid query is CodeInvalid.
type DeviceQuery struct {
	Query string
	After string // keyset pagination: only IDs greater than this
	Limit int    // 0 means the store's default (100); at most 1000
}

// SecurityEventFilter narrows a list of security events.
type SecurityEventFilter struct {
	DeviceID string
	Kind     SecurityEventKind
	Limit    int
}
