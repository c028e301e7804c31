package steward

import (
	"context"
	"slices"
	"time"
)

// The data classes a person may consent to for a device that belongs to
// them (DeviceConsent). Telemetry of a personal device without consent to
// ConsentTelemetry is dropped on arrival and counted.
const (
	ConsentTelemetry = "telemetry" // samples the device sends
	ConsentEvents    = "events"    // events the device reports
	ConsentLocation  = "location"  // where the device is (site, coordinates)
)

// ConsentClasses lists the data classes of consent.
var ConsentClasses = []string{ConsentEvents, ConsentLocation, ConsentTelemetry}

// DeviceConsent is what the person a device belongs to agreed may be kept
// about it. A device that is not Personal needs no consent: everything is
// kept. A personal device's data of a class not in Granted is not kept.
type DeviceConsent struct {
	TenantID  string    `json:"tenant_id"`
	DeviceID  string    `json:"device_id"`
	Personal  bool      `json:"personal"`
	Granted   []string  `json:"granted"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Allows reports whether data of class may be kept.
func (c *DeviceConsent) Allows(class string) bool {
	return !c.Personal || slices.Contains(c.Granted, class)
}

// Validate checks a consent record before it is stored: tenant, device,
// known classes (each once, a nil list made empty) and a time.
func (c *DeviceConsent) Validate() error {
	if c.TenantID == "" || c.DeviceID == "" {
		return Errorf(CodeInvalid, "consent needs a tenant and a device")
	}
	if c.UpdatedAt.IsZero() {
		return Errorf(CodeInvalid, "consent needs its time")
	}
	if c.Granted == nil {
		c.Granted = []string{}
	}
	for i, g := range c.Granted {
		if !slices.Contains(ConsentClasses, g) {
			return Errorf(CodeInvalid, "consent class %q: want one of %v", g, ConsentClasses)
		}
		if slices.Contains(c.Granted[:i], g) {
			return Errorf(CodeInvalid, "consent class %q is listed twice", g)
		}
	}
	return nil
}

// DeviceTombstone is what is kept of an erased device: who erased it and
// when, and the serials of its certificates (revoked before they were
// erased), which a revocation list may still name. The audit log keeps
// the record of the erasure.
type DeviceTombstone struct {
	TenantID string    `json:"tenant_id"`
	DeviceID string    `json:"device_id"`
	ErasedAt time.Time `json:"erased_at"`
	ErasedBy string    `json:"erased_by"`
	Serials  []string  `json:"serials"`
	// Erased counts the rows deleted per table (EraseDevice's answer;
	// not stored).
	Erased map[string]int `json:"erased,omitempty"`
}

// DeviceExport is everything the store holds about a device: the archive a
// person gets when they ask for their data (GET /api/v1/devices/{id}/export).
type DeviceExport struct {
	ExportedAt     time.Time        `json:"exported_at"`
	Device         Device           `json:"device"`
	Consent        *DeviceConsent   `json:"consent,omitempty"`
	Certificates   []Certificate    `json:"certificates"`
	Lifecycle      []LifecycleEvent `json:"lifecycle"`
	SecurityEvents []SecurityEvent  `json:"security_events"`
	Events         []DeviceEvent    `json:"events"`
	Presence       []PresenceEvent  `json:"presence"`
	// Latest is the latest value of each metric; Samples the raw samples
	// kept; Minutes, Hours and Days the rollups kept.
	Latest  []Sample `json:"latest"`
	Samples []Sample `json:"samples"`
	Minutes []Rollup `json:"minute_rollups"`
	Hours   []Rollup `json:"hour_rollups"`
	Days    []Rollup `json:"day_rollups"`
	Alerts  []Alert  `json:"alerts"`
	// Other holds the rows of every other table that names the device
	// (by a device_id column), column by column, by table name.
	Other map[string][]map[string]any `json:"other,omitempty"`
}

// PrivacyStore keeps devices' consent, exports a device's data and erases
// it.
type PrivacyStore interface {
	// PutDeviceConsent creates or replaces a device's consent
	// (CodeInvalid when it does not validate, CodeNotFound when the device
	// is not in the tenant).
	PutDeviceConsent(ctx context.Context, c DeviceConsent) error
	// GetDeviceConsent returns a device's consent; CodeNotFound when none
	// was recorded (the device is then not personal).
	GetDeviceConsent(ctx context.Context, tenantID, deviceID string) (DeviceConsent, error)
	// WithheldDevices returns the tenant's personal devices whose person
	// has not consented to class, ordered by ID.
	WithheldDevices(ctx context.Context, tenantID, class string) ([]string, error)
	// ExportDevice reads everything held about a device, table by table
	// (CodeNotFound when it is not in the tenant).
	ExportDevice(ctx context.Context, tenantID, deviceID string, at time.Time) (DeviceExport, error)
	// EraseDevice revokes the device's certificates and deletes, in one
	// transaction, the device and every row that names it in any table
	// (but the audit log's), and keeps a
	// tombstone (t's tenant, device, time and actor; the store fills the
	// serials), which it returns. CodeNotFound when the device is not in
	// the tenant.
	EraseDevice(ctx context.Context, t DeviceTombstone) (DeviceTombstone, error)
	// GetDeviceTombstone returns the tombstone of an erased device.
	GetDeviceTombstone(ctx context.Context, tenantID, deviceID string) (DeviceTombstone, error)
}
