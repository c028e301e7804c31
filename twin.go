package steward

import (
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"time"
)

// ConfigLayer is one level of the configuration a device's desired state is
// built from. The layers apply in the order of ConfigLayers, each one a JSON
// merge patch over those before it, so the more specific layer wins.
type ConfigLayer string

// The configuration layers, least specific first.
const (
	LayerBase     ConfigLayer = "base"     // every device of the tenant
	LayerModel    ConfigLayer = "model"    // devices whose model is the selector
	LayerCustomer ConfigLayer = "customer" // devices whose owner is the selector
	LayerSite     ConfigLayer = "site"     // devices whose location's site is the selector
	LayerDevice   ConfigLayer = "device"   // the device whose ID is the selector
)

// ConfigLayers lists the layers in the order they apply.
var ConfigLayers = []ConfigLayer{LayerBase, LayerModel, LayerCustomer, LayerSite, LayerDevice}

// Rank returns the place of l in ConfigLayers, or -1 for an unknown layer.
func (l ConfigLayer) Rank() int { return slices.Index(ConfigLayers, l) }

// Valid reports whether l is a known layer.
func (l ConfigLayer) Valid() bool { return l.Rank() >= 0 }

// SelectorOf returns the value of d that a template of layer l must name to
// apply to d: empty for the base layer, which applies to every device.
func (l ConfigLayer) SelectorOf(d Device) string {
	switch l {
	case LayerModel:
		return d.Model
	case LayerCustomer:
		return d.Owner
	case LayerSite:
		return d.Location.Site
	case LayerDevice:
		return d.ID
	}
	return ""
}

// Limits of configuration documents and their metadata.
const (
	// MaxConfigDocument is the largest configuration document, schema,
	// desired or reported state, in bytes of JSON.
	MaxConfigDocument = 64 << 10
	// MaxConfigMessage is the longest version message.
	MaxConfigMessage      = 1024
	MaxConfigTemplateName = 128
	MaxConfigSelector     = 256
)

// ConfigTemplate is a named configuration for one layer and selector: the
// base, a model, a customer, a site or a device. Its content lives in its
// versions; the template holds what describes it.
type ConfigTemplate struct {
	ID          string      `json:"id"`
	TenantID    string      `json:"tenant_id"`
	Name        string      `json:"name"`
	Layer       ConfigLayer `json:"layer"`
	Selector    string      `json:"selector,omitempty"`
	Description string      `json:"description,omitempty"`
	// LatestVersion is the number of the template's newest version, 0
	// when it has none; the store keeps it.
	LatestVersion int       `json:"latest_version"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// Validate checks a template before it is stored.
func (t *ConfigTemplate) Validate() error {
	switch {
	case t.ID == "" || t.TenantID == "":
		return Errorf(CodeInvalid, "a configuration template needs an id and a tenant")
	case !validConfigName(t.Name, MaxConfigTemplateName):
		return Errorf(CodeInvalid, "configuration template name %q: use 1 to %d characters without surrounding spaces or control characters", t.Name, MaxConfigTemplateName)
	case !t.Layer.Valid():
		return Errorf(CodeInvalid, "configuration layer %q: want one of base, model, customer, site, device", t.Layer)
	case t.Layer == LayerBase && t.Selector != "":
		return Errorf(CodeInvalid, "a base template applies to every device and takes no selector")
	case t.Layer != LayerBase && !validConfigName(t.Selector, MaxConfigSelector):
		return Errorf(CodeInvalid, "a %s template needs a selector (the %s it applies to) of 1 to %d characters", t.Layer, t.Layer, MaxConfigSelector)
	case len(t.Description) > MaxConfigMessage:
		return Errorf(CodeInvalid, "configuration template description over %d bytes", MaxConfigMessage)
	case t.CreatedAt.IsZero() || t.UpdatedAt.IsZero():
		return Errorf(CodeInvalid, "a configuration template needs its times of creation and update")
	}
	return nil
}

// ConfigVersion is one immutable version of a template: the layer's
// document, the JSON Schema the merged document must satisfy (optional),
// who made it and why. A change is a new version; none is ever edited.
type ConfigVersion struct {
	ID         string `json:"id"`
	TenantID   string `json:"tenant_id"`
	TemplateID string `json:"template_id"`
	// Version numbers a template's versions from 1; the store assigns it.
	Version int `json:"version"`
	// Layer and Selector are the template's, copied when the version is
	// made.
	Layer    ConfigLayer `json:"layer"`
	Selector string      `json:"selector,omitempty"`
	// Document is a JSON object applied as a merge patch (RFC 7386) over
	// the layers before this one: a null member removes a key.
	Document json.RawMessage `json:"document"`
	// Schema, when set, is a JSON Schema every device's merged document
	// must satisfy while this version is part of it.
	Schema    json.RawMessage `json:"schema,omitempty"`
	Author    string          `json:"author"`
	Message   string          `json:"message"`
	CreatedAt time.Time       `json:"created_at"`
}

// Validate checks a version before it is stored (the schema itself is
// compiled by the service, which knows JSON Schema).
func (v *ConfigVersion) Validate() error {
	switch {
	case v.ID == "" || v.TenantID == "" || v.TemplateID == "":
		return Errorf(CodeInvalid, "a configuration version needs an id, a tenant and a template")
	case v.Author == "":
		return Errorf(CodeInvalid, "a configuration version needs an author")
	case strings.TrimSpace(v.Message) == "" || len(v.Message) > MaxConfigMessage:
		return Errorf(CodeInvalid, "a configuration version needs a message of 1 to %d bytes", MaxConfigMessage)
	case v.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "a configuration version needs its time of creation")
	}
	if err := CheckConfigObject("document", v.Document); err != nil {
		return err
	}
	if len(v.Schema) > 0 {
		if len(v.Schema) > MaxConfigDocument || !json.Valid(v.Schema) {
			return Errorf(CodeInvalid, "configuration schema: want a JSON Schema of at most %d bytes", MaxConfigDocument)
		}
	}
	return nil
}

// CheckConfigObject checks that doc is a JSON object of at most
// MaxConfigDocument bytes; what names the document in the error.
func CheckConfigObject(what string, doc json.RawMessage) error {
	if len(doc) > MaxConfigDocument {
		return Errorf(CodeTooLarge, "configuration %s of %d bytes, over %d", what, len(doc), MaxConfigDocument)
	}
	d := bytes.TrimSpace(doc)
	if len(d) == 0 || d[0] != '{' || !json.Valid(d) {
		return Errorf(CodeInvalid, "configuration %s must be a JSON object", what)
	}
	return nil
}

// ConfigSource names one template version a desired document was built from.
type ConfigSource struct {
	TemplateID string      `json:"template_id"`
	VersionID  string      `json:"version_id"`
	Version    int         `json:"version"`
	Layer      ConfigLayer `json:"layer"`
}

// Twin is a device's configuration as the server wants it (desired) and as
// the device last said it is (reported). DesiredVersion counts the changes
// of the desired state: a change made against a stale version is refused
// (optimistic concurrency), and the device reports the version it applied.
type Twin struct {
	TenantID string `json:"tenant_id"`
	DeviceID string `json:"device_id"`
	// Desired is the whole desired document: the layers of Sources merged,
	// then Override.
	Desired        json.RawMessage `json:"desired"`
	DesiredVersion int64           `json:"desired_version"`
	Sources        []ConfigSource  `json:"sources"`
	// Override is the device's own merge patch, set by direct updates of
	// this one twin; it applies over every template.
	Override  json.RawMessage `json:"override,omitempty"`
	DesiredBy string          `json:"desired_by,omitempty"`
	DesiredAt time.Time       `json:"desired_at"`
	// Reported is the state the device last reported, for the desired
	// version ReportedVersion; ReportErrors holds the keys it could not
	// apply, with the reason.
	Reported        json.RawMessage   `json:"reported,omitempty"`
	ReportedVersion int64             `json:"reported_version"`
	ReportErrors    map[string]string `json:"report_errors,omitempty"`
	ReportedAt      time.Time         `json:"reported_at,omitzero"`
	// DriftSince is when reported and desired began to differ (nil while
	// they agree); Drifted is set by the drift check once that lasted
	// beyond the grace period.
	DriftSince *time.Time `json:"drift_since,omitempty"`
	Drifted    bool       `json:"drifted"`
	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	// Rev is the stored row's revision: PutTwin writes only over the
	// revision it read, so that desired and reported writes never lose
	// each other.
	Rev int64 `json:"-"`
}

// InSync reports whether the device reported exactly its desired document.
func (t *Twin) InSync() bool {
	return len(t.Reported) > 0 && JSONEqual(t.Desired, t.Reported)
}

// UpdateDrift sets DriftSince from InSync: cleared when in sync, else kept
// or started at now.
func (t *Twin) UpdateDrift(now time.Time) {
	switch {
	case t.InSync():
		t.DriftSince = nil
	case t.DriftSince == nil:
		t.DriftSince = &now
	}
}

// Validate checks a twin before it is stored.
func (t *Twin) Validate() error {
	if t.TenantID == "" || !ValidDeviceID(t.DeviceID) {
		return Errorf(CodeInvalid, "a twin needs a tenant and a valid device id")
	}
	if t.DesiredVersion < 0 || t.ReportedVersion < 0 {
		return Errorf(CodeInvalid, "twin versions cannot be negative")
	}
	if err := CheckConfigObject("desired state", t.Desired); err != nil {
		return err
	}
	for what, doc := range map[string]json.RawMessage{"override": t.Override, "reported state": t.Reported} {
		if len(doc) > 0 {
			if err := CheckConfigObject(what, doc); err != nil {
				return err
			}
		}
	}
	if t.DesiredAt.IsZero() || t.CreatedAt.IsZero() || t.UpdatedAt.IsZero() {
		return Errorf(CodeInvalid, "a twin needs its times of creation, update and desired change")
	}
	return nil
}

// JSONEqual reports whether two JSON texts hold the same value (objects
// compared by member, numbers by value); invalid JSON equals nothing.
func JSONEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// TwinFilter narrows a list of twins.
type TwinFilter struct {
	Drifted bool   // only the devices flagged as drifted
	After   string // keyset pagination: only device IDs greater than this
	Limit   int    // 0 means 100; at most 1000
}

// DriftChange is a device flagged as drifted, or no longer drifted.
type DriftChange struct {
	TenantID string    `json:"tenant_id"`
	DeviceID string    `json:"device_id"`
	Drifted  bool      `json:"drifted"`
	Since    time.Time `json:"since,omitzero"` // when reported and desired began to differ
	At       time.Time `json:"at"`
}

// DriftCount is how many of a tenant's twins there are and how many of
// them are flagged as drifted.
type DriftCount struct {
	TenantID string `json:"tenant_id"`
	Twins    int    `json:"twins"`
	Drifted  int    `json:"drifted"`
}

// TwinStore keeps configuration templates, their versions and device twins.
type TwinStore interface {
	// CreateConfigTemplate refuses (CodeConflict) a name, or a layer and
	// selector, already used in the tenant.
	CreateConfigTemplate(ctx context.Context, t ConfigTemplate) error
	GetConfigTemplate(ctx context.Context, tenantID, id string) (ConfigTemplate, error)
	// ListConfigTemplates returns the tenant's templates by layer (in the
	// order they apply), then selector.
	ListConfigTemplates(ctx context.Context, tenantID string) ([]ConfigTemplate, error)
	// UpdateConfigTemplate changes a template's name and description.
	UpdateConfigTemplate(ctx context.Context, t ConfigTemplate) (ConfigTemplate, error)
	// DeleteConfigTemplate deletes a template that has no versions
	// (CodeFailedPrecondition otherwise: versions are kept for good).
	DeleteConfigTemplate(ctx context.Context, tenantID, id string) error
	// CreateConfigVersion stores v as its template's next version and
	// returns it with its number, layer and selector.
	CreateConfigVersion(ctx context.Context, v ConfigVersion) (ConfigVersion, error)
	GetConfigVersion(ctx context.Context, tenantID, id string) (ConfigVersion, error)
	// ListConfigVersions returns a template's versions, newest first.
	ListConfigVersions(ctx context.Context, tenantID, templateID string) ([]ConfigVersion, error)
	// LatestConfigVersion returns a template's newest version
	// (CodeNotFound when it has none).
	LatestConfigVersion(ctx context.Context, tenantID, templateID string) (ConfigVersion, error)

	GetTwin(ctx context.Context, tenantID, deviceID string) (Twin, error)
	// PutTwin creates a twin (t.Rev 0; CodeConflict when one exists, and
	// CodeNotFound when the device is not in the tenant) or writes every
	// field of it over revision t.Rev (CodeConflict when the stored
	// revision moved on). It returns the twin as stored, with its new Rev.
	PutTwin(ctx context.Context, t Twin) (Twin, error)
	// ListTwins returns the tenant's twins matching f, by device ID.
	ListTwins(ctx context.Context, tenantID string, f TwinFilter) ([]Twin, error)
	// DeleteTwin deletes a device's twin and its known-good versions, and
	// reports whether there was a twin (a device that leaves the fleet
	// keeps no desired configuration).
	DeleteTwin(ctx context.Context, tenantID, deviceID string) (bool, error)
	// MarkDrift flags every twin, of all tenants, out of sync since before
	// now-grace and not yet flagged, and unflags the flagged ones back in
	// sync; it returns each change once, even when two nodes run it at
	// once.
	MarkDrift(ctx context.Context, now time.Time, grace time.Duration) ([]DriftChange, error)
	// CountDrift counts twins and drifted twins per tenant, of all tenants.
	CountDrift(ctx context.Context) ([]DriftCount, error)
	// RecordKnownGood remembers that the device was in sync with each of
	// sources at at.
	RecordKnownGood(ctx context.Context, tenantID, deviceID string, sources []ConfigSource, at time.Time) error
	// PreviousGoodVersion returns the version of a template the device was
	// last in sync with, other than except; CodeNotFound when none.
	PreviousGoodVersion(ctx context.Context, tenantID, deviceID, templateID, except string) (string, error)
}

// Configuration apply states of one device and one version, for the
// deployment engine.
const (
	ConfigPending    = "pending"    // the device has not reported the desired state yet
	ConfigApplied    = "applied"    // the device reported its desired state, this version included
	ConfigFailed     = "failed"     // the device reported the desired version with errors
	ConfigSuperseded = "superseded" // the device's desired state no longer has this version
)

// ConfigRollout is what the deployment engine needs of device twins to roll
// out a configuration version: the desired document a version makes for a
// device, setting it, watching it apply, and the version to roll back to.
type ConfigRollout interface {
	// ResolveConfig returns the desired document the device would get with
	// versionID in place of its template's version, without writing it;
	// CodeInvalid, naming the path, when it breaks a schema.
	ResolveConfig(ctx context.Context, tenantID, deviceID, versionID string) (json.RawMessage, error)
	// ApplyConfigVersion makes versionID part of the device's desired state
	// (replacing its template's version there) and publishes it.
	ApplyConfigVersion(ctx context.Context, tenantID, deviceID, versionID, actor string) (Twin, error)
	// ConfigStatus returns ConfigPending, ConfigApplied, ConfigFailed or
	// ConfigSuperseded for versionID on the device, with the errors it
	// reported when it failed.
	ConfigStatus(ctx context.Context, tenantID, deviceID, versionID string) (state, detail string, err error)
	// PreviousGoodConfig returns the version of templateID the device was
	// last in sync with before its current one: the rollback target.
	PreviousGoodConfig(ctx context.Context, tenantID, deviceID, templateID string) (string, error)
}

// SecMalformedPayload is a device message its handler could not read (not
// the JSON its channel expects).
const SecMalformedPayload SecurityEventKind = "malformed_payload"

// validConfigName reports whether s is 1 to max characters without surrounding
// spaces or control characters.
func validConfigName(s string, max int) bool {
	return s != "" && len(s) <= max && strings.TrimSpace(s) == s && !strings.ContainsAny(s, "\x00\n\r\t")
}

// TwinDesiredMessage is what the server publishes, retained, on
// dev/{id}/twin/desired: the whole desired document and its version, and
// the change from the previous desired document as a JSON merge patch.
// State is authoritative: a device that missed messages while offline gets
// only the last one, so it applies the difference between State and what
// it has, and Delta is for reading.
type TwinDesiredMessage struct {
	Version int64           `json:"version"`
	State   json.RawMessage `json:"state"`
	Delta   json.RawMessage `json:"delta,omitempty"`
}

// TwinReportedMessage is what a device publishes on dev/{id}/twin/reported:
// the desired version it applied, the configuration it now runs, and each
// key it could not apply with the reason.
type TwinReportedMessage struct {
	Version int64             `json:"version"`
	State   json.RawMessage   `json:"state"`
	Errors  map[string]string `json:"errors,omitempty"`
}

// ConfigChange is one difference between two configuration documents, in
// the shape of an RFC 6902 operation (add, remove or replace at a JSON
// pointer), with the value before the change in Old for reading.
type ConfigChange struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
	Old   any    `json:"old,omitempty"`
}
