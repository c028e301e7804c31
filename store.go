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
	// Inside InTx the batch lands if and only if the transaction commits;
	// a store whose telemetry has a database of its own (SQLite) writes it
	// right after that commit, in a transaction of its own.
	WriteSamples(ctx context.Context, samples []Sample) error
	// LatestSamples returns the latest value of each metric of a device.
	LatestSamples(ctx context.Context, tenantID, deviceID string) ([]Sample, error)
	// ListSamples returns a device's samples of one metric in [from, to),
	// oldest first; a zero to means no upper bound, limit 0 the store's
	// default (1000, at most 10000).
	ListSamples(ctx context.Context, tenantID, deviceID, metric string, from, to time.Time, limit int) ([]Sample, error)
	// RollupSamples recomputes from the raw samples, in one transaction,
	// the minute rollups of every device and metric in [from, to), from
	// those the hour rollups of every hour [from, to) touches and from
	// those the day rollups of every day it touches that is closed (ends
	// at or before the watermark it leaves; an open day has none), then
	// moves the rollup watermark forward to to (never back). from and to
	// are whole minutes (CodeInvalid otherwise). Whole buckets are
	// upserted and two calls are serialised, so running it again, or on
	// two nodes at once, leaves the same rows. A system job: all tenants.
	RollupSamples(ctx context.Context, from, to time.Time) error
	// RollupWatermark returns the end of the ranges rolled up so far; the
	// zero time when nothing was.
	RollupWatermark(ctx context.Context) (time.Time, error)
	// ListRollups returns a device's rollups of one metric at resolution
	// RollupMinute, RollupHour or RollupDay (CodeInvalid otherwise) whose buckets
	// start in [from, to), oldest first; limit as in ListSamples.
	ListRollups(ctx context.Context, tenantID, deviceID, metric string, resolution time.Duration, from, to time.Time, limit int) ([]Rollup, error)
	// DeleteSamplesBefore deletes at most limit (1 to 100000) readings —
	// a device's raw samples of one time — older than before, of all
	// tenants, and returns how many it deleted.
	DeleteSamplesBefore(ctx context.Context, before time.Time, limit int) (int, error)
	// DeleteRollupsBefore deletes at most limit (1 to 100000) rollups of a
	// resolution whose buckets start before before, of all tenants.
	DeleteRollupsBefore(ctx context.Context, resolution time.Duration, before time.Time, limit int) (int, error)

	// AddDeviceEvents writes events a device reported, in one transaction:
	// all of them or, when one is invalid (CodeInvalid) or names a device
	// not in its tenant (CodeNotFound), none.
	AddDeviceEvents(ctx context.Context, events []DeviceEvent) error
	// ListDeviceEvents returns a device's events matching f, newest first
	// (by the device's time, then by arrival).
	ListDeviceEvents(ctx context.Context, tenantID, deviceID string, f DeviceEventFilter) ([]DeviceEvent, error)

	// AddPresenceEvent records one connect or disconnect of a device of
	// the event's tenant (CodeNotFound otherwise).
	AddPresenceEvent(ctx context.Context, e PresenceEvent) error
	// ListPresenceEvents returns a device's presence history in [from, to),
	// newest first; a zero to means no upper bound, limit 0 the store's
	// default (100, at most 10000).
	ListPresenceEvents(ctx context.Context, tenantID, deviceID string, from, to time.Time, limit int) ([]PresenceEvent, error)
	// CountPresenceEvents counts a device's connects and disconnects in
	// [from, to) (a zero to means no upper bound), however many there are.
	CountPresenceEvents(ctx context.Context, tenantID, deviceID string, from, to time.Time) (PresenceCounts, error)

	// FleetAggregates returns, for each of the tenant's devices matching
	// q.Query (ordered by ID), its grouping fields, whether it is online,
	// the count and mean of its q.Metric samples and the count of its
	// q.Event events in [q.From, q.To); an empty Metric or Event counts
	// nothing. q.GroupBy is not used. A bad query is CodeInvalid.
	FleetAggregates(ctx context.Context, tenantID string, q FleetStatsQuery) ([]DeviceAggregate, error)

	// PutTelemetrySchema creates or replaces the schema of s.Model in
	// s.TenantID (CodeInvalid when s does not validate, CodeNotFound for
	// an unknown tenant).
	PutTelemetrySchema(ctx context.Context, s TelemetrySchema) error
	GetTelemetrySchema(ctx context.Context, tenantID, model string) (TelemetrySchema, error)
	// ListTelemetrySchemas returns the tenant's schemas, ordered by model.
	ListTelemetrySchemas(ctx context.Context, tenantID string) ([]TelemetrySchema, error)
	DeleteTelemetrySchema(ctx context.Context, tenantID, model string) error

	// CreateAlertRule stores a new rule (CodeInvalid when it does not
	// validate or its scope does not parse, CodeConflict when its name is
	// taken in the tenant).
	CreateAlertRule(ctx context.Context, r AlertRule) error
	GetAlertRule(ctx context.Context, tenantID, id string) (AlertRule, error)
	// ListAlertRules returns the tenant's rules, ordered by name.
	ListAlertRules(ctx context.Context, tenantID string) ([]AlertRule, error)
	// UpdateAlertRule replaces a rule's fields but its creation time.
	UpdateAlertRule(ctx context.Context, r AlertRule) error
	// DeleteAlertRule deletes a rule and its alerts.
	DeleteAlertRule(ctx context.Context, tenantID, id string) error
	// PutAlert writes the one open alert of (a.RuleID, a.DeviceID): it
	// creates it when there is none (with a.ID) and otherwise updates the
	// open one (keeping its ID, start, acknowledgement and assignee), so
	// that two open alerts of a rule and device never exist. It returns the
	// alert as stored.
	PutAlert(ctx context.Context, a Alert) (Alert, error)
	GetAlert(ctx context.Context, tenantID, id string) (Alert, error)
	// ListAlerts returns the tenant's alerts matching f, newest first.
	ListAlerts(ctx context.Context, tenantID string, f AlertFilter) ([]Alert, error)
	// DeleteAlert deletes an alert (the evaluator drops a pending alert
	// whose condition cleared before it fired).
	DeleteAlert(ctx context.Context, tenantID, id string) error
	// AcknowledgeAlert records who acknowledged an alert and when.
	AcknowledgeAlert(ctx context.Context, tenantID, id, by string, at time.Time) (Alert, error)
	// AssignAlert sets an alert's assignee (empty to unassign).
	AssignAlert(ctx context.Context, tenantID, id, assignee string) (Alert, error)
	// CountAlerts counts the alerts of every tenant by state and severity
	// (a system job: metrics).
	CountAlerts(ctx context.Context) ([]AlertCount, error)
	// AlertSignals returns, for each of the tenant's devices matching
	// q.Scope (ordered by ID), what alert rules look at, in one grouped
	// query. A bad scope is CodeInvalid.
	AlertSignals(ctx context.Context, tenantID string, q AlertSignalQuery) ([]AlertSignal, error)
	// SiteConnectivity counts, in one grouped query, the tenant's devices
	// of each site (devices without a site left out), ordered by site.
	SiteConnectivity(ctx context.Context, tenantID string) ([]SiteConnectivity, error)

	// Notification channels (see notify.go). CreateChannel refuses
	// (CodeConflict) a name already used in the tenant.
	CreateChannel(ctx context.Context, c NotificationChannel) error
	GetChannel(ctx context.Context, tenantID, id string) (NotificationChannel, error)
	// ListChannels returns the tenant's channels, ordered by name.
	ListChannels(ctx context.Context, tenantID string) ([]NotificationChannel, error)
	// DeleteChannel deletes a channel and its deliveries.
	DeleteChannel(ctx context.Context, tenantID, id string) error
	// UpdateChannel writes an existing channel's name, kind, settings and
	// enabled flag (its creation time stays): CodeNotFound for an unknown
	// channel, CodeConflict for a name taken in the tenant.
	UpdateChannel(ctx context.Context, c NotificationChannel) error

	CreateSilence(ctx context.Context, s Silence) error
	GetSilence(ctx context.Context, tenantID, id string) (Silence, error)
	// ListSilences returns the tenant's silences, newest first.
	ListSilences(ctx context.Context, tenantID string) ([]Silence, error)
	// ExpireSilence ends a silence at at (when it would end later) and
	// returns it as stored.
	ExpireSilence(ctx context.Context, tenantID, id string, at time.Time) (Silence, error)
	// ActiveSilences returns the tenant's silences active at at.
	ActiveSilences(ctx context.Context, tenantID string, at time.Time) ([]Silence, error)

	// EnqueueDelivery stores a pending delivery; CodeConflict when the
	// channel already has one of the notification key, CodeNotFound when
	// the channel is not in the tenant.
	EnqueueDelivery(ctx context.Context, d Delivery) error
	GetDelivery(ctx context.Context, tenantID, id string) (Delivery, error)
	// ClaimDeliveries takes up to limit pending deliveries due at now, of
	// all tenants (the oldest due first, returned in no particular order): it counts an attempt on each and moves
	// its next attempt to now+lease, so that no other node takes it while
	// it is sent and a node that dies mid-send leaves it to be retried.
	// Two nodes claiming at once never get the same delivery.
	ClaimDeliveries(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]Delivery, error)
	// RecordDelivery writes the outcome of an attempt: status, replies,
	// error, next attempt and delivery time.
	RecordDelivery(ctx context.Context, d Delivery) error
	// ListDeliveries returns the tenant's delivery log, newest first.
	ListDeliveries(ctx context.Context, tenantID string, f DeliveryFilter) ([]Delivery, error)

	// Notification policies, groups and alert actions (see routing.go).
	PolicyStore
	// Approval policies and requests (see approvalpolicy.go).
	ApprovalStore
	TenantStore     // suspending and deleting tenants (tenantadmin.go)
	AuditStore      // the tamper-evident audit log (auditlog.go)
	TwinStore       // configuration templates, versions and device twins (twin.go)
	ArtifactStore   // artifacts, download grants, uploads, TUF metadata (artifact.go)
	UserStore       // operators, service accounts, custom roles, sessions, account tokens (operator.go)
	CredentialStore // CA generations, revocation reasons, CRLs, revoked manufacturer CAs, decommissioning records (credentials.go)
	RetentionStore  // per-tenant retention periods and pruning of data classes (retention.go)
	PrivacyStore    // device consent, export and erasure (privacy.go)
	QuarantineStore // the tenants' quarantine policies (quarantinepolicy.go)
	DeploymentStore // deployments, their devices and each device's history (deployment.go)
	TransferStore   // device transfers between tenants and individual enrollments (tenanttransfer.go)
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

// Severity ranks a device event, from debug to critical (the syslog levels
// a device is likely to report, without the rarely used alert and emergency).
type Severity string

// The severities, least severe first.
const (
	SeverityDebug    Severity = "debug"
	SeverityInfo     Severity = "info"
	SeverityNotice   Severity = "notice"
	SeverityWarning  Severity = "warning"
	SeverityError    Severity = "error"
	SeverityCritical Severity = "critical"
)

// Severities lists every severity, least severe first.
var Severities = []Severity{SeverityDebug, SeverityInfo, SeverityNotice, SeverityWarning, SeverityError, SeverityCritical}

// Rank returns the place of s in Severities (0 for debug), or -1 for an
// unknown severity.
func (s Severity) Rank() int {
	for i, v := range Severities {
		if s == v {
			return i
		}
	}
	return -1
}

// Valid reports whether s is a known severity.
func (s Severity) Valid() bool { return s.Rank() >= 0 }

// AtLeast returns the severities at least as severe as s (all of them for
// an unknown or empty s).
func (s Severity) AtLeast() []Severity {
	return Severities[max(s.Rank(), 0):]
}

// Limits on a device event.
const (
	MaxEventTypeLen    = 64
	MaxEventMessageLen = 4096 // bytes
)

// ValidEventType reports whether t can be an event type: 1 to 64 letters,
// digits, '_', '-' or '.'.
func ValidEventType(t string) bool {
	return len(t) <= MaxEventTypeLen && ValidDeviceID(t)
}

// DeviceEvent is one event a device reported on its events channel: a
// reboot, a crash, a log line worth keeping.
type DeviceEvent struct {
	ID       int64    `json:"id"`
	TenantID string   `json:"tenant_id"`
	DeviceID string   `json:"device_id"`
	Type     string   `json:"type"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message,omitempty"`
	// Fields holds the payload's other keys, as the device sent them.
	Fields map[string]any `json:"fields,omitempty"`
	// At is when it happened, by the device's clock; Received is when the
	// server took it.
	At       time.Time `json:"at"`
	Received time.Time `json:"received"`
}

// Validate checks what every stored event must have: a tenant, a device, a
// valid type and severity, a message within its limit and both times.
func (e *DeviceEvent) Validate() error {
	switch {
	case e.TenantID == "" || e.DeviceID == "":
		return Errorf(CodeInvalid, "an event needs a tenant and a device")
	case !ValidEventType(e.Type):
		return Errorf(CodeInvalid, "event type %q: use 1 to %d letters, digits, '_', '-', '.'", e.Type, MaxEventTypeLen)
	case !e.Severity.Valid():
		return Errorf(CodeInvalid, "event severity %q: want one of debug, info, notice, warning, error, critical", e.Severity)
	case len(e.Message) > MaxEventMessageLen:
		return Errorf(CodeInvalid, "event message is %d bytes, more than %d", len(e.Message), MaxEventMessageLen)
	case e.At.IsZero() || e.Received.IsZero():
		return Errorf(CodeInvalid, "an event needs its time and its time of receipt")
	}
	return nil
}

// DeviceEventFilter narrows a device's event list.
type DeviceEventFilter struct {
	Type        string    // only this type
	MinSeverity Severity  // only this severity and worse
	From, To    time.Time // only events at or after From and before To; zero means no bound
	Limit       int       // 0 means the store's default (100); at most 1000
}

// PresenceEvent is one connect (Online) or disconnect of a device, as the
// device plane saw it.
type PresenceEvent struct {
	ID         int64     `json:"id"`
	TenantID   string    `json:"tenant_id"`
	DeviceID   string    `json:"device_id"`
	Online     bool      `json:"online"`
	At         time.Time `json:"at"`
	RemoteAddr string    `json:"remote_addr,omitempty"`
}

// PresenceCounts counts a device's presence changes in a window.
type PresenceCounts struct {
	Connects    int64 `json:"connects"`
	Disconnects int64 `json:"disconnects"`
}

// PresenceSummary is a device's connection quality over a window [From,
// To), computed from its presence history: how often it connected again.
type PresenceSummary struct {
	Online      bool      `json:"online"` // connected now
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	Connects    int64     `json:"connects"`
	Disconnects int64     `json:"disconnects"`
	// Reconnects counts the connects in the window that followed an
	// earlier connection: every connect but the device's very first.
	Reconnects        int64   `json:"reconnects"`
	ReconnectsPerHour float64 `json:"reconnects_per_hour"`
}
