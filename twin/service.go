// Package twin is configuration as a device twin: templates per layer
// (base, model, customer, site, device) with immutable versions, merged
// into each device's desired state, validated against JSON Schema, sent to
// the device retained on dev/{id}/twin/desired, compared with what the
// device reports on dev/{id}/twin/reported, and checked for drift.
package twin

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/steward-iot/steward"
)

// DefaultGrace is how long a device's reported configuration may differ
// from its desired one before it is flagged as drifted.
const DefaultGrace = 10 * time.Minute

// maxRetries bounds the re-reads of a twin written concurrently by the
// device plane (a report) while an operator's change was being made.
const maxRetries = 8

// Config wires a Service.
type Config struct {
	Store steward.Store
	// Bus carries the desired state to devices and their reports back; nil
	// in tests that only exercise the store side.
	Bus   steward.Bus
	Clock steward.Clock
	// Auditor, when set, records every change made through the service.
	Auditor steward.Auditor
	// Grace is how long reported and desired may differ before the drift
	// check flags the device (DefaultGrace when zero).
	Grace time.Duration
	// OnDrift, when set, is called with the changes each drift check finds
	// (see Signals for the hook that feeds the alert rules).
	OnDrift func(ctx context.Context, changes []steward.DriftChange)
	// RecordSecurityEvent, when set, takes the security events of refused
	// reports instead of the store (the device gate, which stores them and
	// records them in the audit log, aggregated); nil stores them.
	RecordSecurityEvent func(ctx context.Context, e steward.SecurityEvent)
	Logger              *slog.Logger
}

// Service manages configuration templates, versions and device twins. It
// implements steward.ConfigRollout for the deployment engine.
type Service struct {
	cfg    Config
	counts atomic.Pointer[[]steward.DriftCount]

	// schemas caches compiled schemas by version ID: a version never
	// changes, and compiling is most of the cost of building a twin.
	schemaMu sync.Mutex
	schemas  map[string]*jsonschema.Schema
}

// maxCachedSchemas bounds the schema cache; it starts over when full.
const maxCachedSchemas = 1024

// schemaOf returns the compiled schema of a version.
func (s *Service) schemaOf(v steward.ConfigVersion) (*jsonschema.Schema, error) {
	s.schemaMu.Lock()
	sch, ok := s.schemas[v.ID]
	s.schemaMu.Unlock()
	if ok {
		return sch, nil
	}
	sch, err := compileSchema(v.Schema)
	if err != nil {
		return nil, err
	}
	s.schemaMu.Lock()
	if s.schemas == nil || len(s.schemas) >= maxCachedSchemas {
		s.schemas = map[string]*jsonschema.Schema{}
	}
	s.schemas[v.ID] = sch
	s.schemaMu.Unlock()
	return sch, nil
}

var _ steward.ConfigRollout = (*Service)(nil)

// New returns a Service and, with a Bus, takes the devices' reports.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = DefaultGrace
	}
	s := &Service{cfg: cfg}
	if cfg.Bus != nil {
		cfg.Bus.HandleInbound(steward.ChannelTwinReported, s.HandleReported)
	}
	return s
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID makes a random ID: prefix + 20 lower-case base32 characters.
func newID(prefix string) string {
	b := make([]byte, 13)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + lowerBase32.EncodeToString(b)[:20]
}

// audit records an action; a failure to record fails the call, since an
// acknowledged change must never be missing from the log.
func (s *Service) audit(ctx context.Context, tenantID, actor, action, target string, before, after any) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	r := steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: action, Target: target, Outcome: steward.AuditSuccess, At: s.cfg.Clock.Now()}
	if before != nil {
		r.Before, _ = json.Marshal(before)
	}
	if after != nil {
		r.After, _ = json.Marshal(after)
	}
	if err := s.cfg.Auditor.Record(ctx, r); err != nil {
		return steward.WrapError(steward.CodeUnavailable, err, "record %s in the audit log", action)
	}
	return nil
}

// CreateTemplate creates a template (its ID and times are assigned).
func (s *Service) CreateTemplate(ctx context.Context, t steward.ConfigTemplate, actor string) (steward.ConfigTemplate, error) {
	now := s.cfg.Clock.Now()
	t.ID, t.CreatedAt, t.UpdatedAt, t.LatestVersion = newID("ct-"), now, now, 0
	if err := s.cfg.Store.CreateConfigTemplate(ctx, t); err != nil {
		return t, err
	}
	t, err := s.cfg.Store.GetConfigTemplate(ctx, t.TenantID, t.ID)
	if err != nil {
		return t, err
	}
	return t, s.audit(ctx, t.TenantID, actor, "config_template.create", "config_template:"+t.ID, nil, t)
}

// GetTemplate returns a template.
func (s *Service) GetTemplate(ctx context.Context, tenantID, id string) (steward.ConfigTemplate, error) {
	return s.cfg.Store.GetConfigTemplate(ctx, tenantID, id)
}

// ListTemplates returns the tenant's templates in the order they apply.
func (s *Service) ListTemplates(ctx context.Context, tenantID string) ([]steward.ConfigTemplate, error) {
	return s.cfg.Store.ListConfigTemplates(ctx, tenantID)
}

// UpdateTemplate changes a template's name and description.
func (s *Service) UpdateTemplate(ctx context.Context, t steward.ConfigTemplate, actor string) (steward.ConfigTemplate, error) {
	before, err := s.cfg.Store.GetConfigTemplate(ctx, t.TenantID, t.ID)
	if err != nil {
		return before, err
	}
	t.UpdatedAt = s.cfg.Clock.Now()
	after, err := s.cfg.Store.UpdateConfigTemplate(ctx, t)
	if err != nil {
		return after, err
	}
	return after, s.audit(ctx, t.TenantID, actor, "config_template.update", "config_template:"+t.ID, before, after)
}

// DeleteTemplate deletes a template that has no versions.
func (s *Service) DeleteTemplate(ctx context.Context, tenantID, id, actor string) error {
	before, err := s.cfg.Store.GetConfigTemplate(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteConfigTemplate(ctx, tenantID, id); err != nil {
		return err
	}
	return s.audit(ctx, tenantID, actor, "config_template.delete", "config_template:"+id, before, nil)
}

// CreateVersion stores a new version of a template. Its schema, when it
// has one, must compile; a base version with a schema must itself satisfy
// it, since every device's configuration starts from it.
func (s *Service) CreateVersion(ctx context.Context, v steward.ConfigVersion, actor string) (steward.ConfigVersion, error) {
	v.ID, v.CreatedAt, v.Author, v.Version = newID("cv-"), s.cfg.Clock.Now(), actor, 0
	doc, err := decodeObject("document", v.Document)
	if err != nil {
		return v, err
	}
	if len(v.Schema) > 0 {
		sch, err := compileSchema(v.Schema)
		if err != nil {
			return v, err
		}
		t, err := s.cfg.Store.GetConfigTemplate(ctx, v.TenantID, v.TemplateID)
		if err != nil {
			return v, err
		}
		if t.Layer == steward.LayerBase {
			if err := validate(sch, doc); err != nil {
				return v, err
			}
		}
	}
	out, err := s.cfg.Store.CreateConfigVersion(ctx, v)
	if err != nil {
		return out, err
	}
	return out, s.audit(ctx, v.TenantID, actor, "config_version.create", "config_version:"+out.ID, nil, out)
}

// GetVersion returns a version.
func (s *Service) GetVersion(ctx context.Context, tenantID, id string) (steward.ConfigVersion, error) {
	return s.cfg.Store.GetConfigVersion(ctx, tenantID, id)
}

// ListVersions returns a template's versions, newest first.
func (s *Service) ListVersions(ctx context.Context, tenantID, templateID string) ([]steward.ConfigVersion, error) {
	return s.cfg.Store.ListConfigVersions(ctx, tenantID, templateID)
}

// Diff lists the changes from version against to version id. An empty
// against compares with the version before id in its template (with an
// empty document for a first version).
func (s *Service) Diff(ctx context.Context, tenantID, id, against string) ([]steward.ConfigChange, error) {
	v, err := s.cfg.Store.GetConfigVersion(ctx, tenantID, id)
	if err != nil {
		return nil, err
	}
	from := json.RawMessage(`{}`)
	if against != "" {
		a, err := s.cfg.Store.GetConfigVersion(ctx, tenantID, against)
		if err != nil {
			return nil, err
		}
		from = a.Document
	} else if v.Version > 1 {
		vs, err := s.cfg.Store.ListConfigVersions(ctx, tenantID, v.TemplateID)
		if err != nil {
			return nil, err
		}
		for _, p := range vs {
			if p.Version < v.Version {
				from = p.Document
				break
			}
		}
	}
	a, err := decode(from)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "read configuration version")
	}
	b, err := decode(v.Document)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "read configuration version")
	}
	return Diff(a, b), nil
}

// composition is a desired document and what it was built from.
type composition struct {
	doc     map[string]any
	sources []steward.ConfigSource
}

// compose builds a device's desired document: for each template that
// applies to the device, in layer order, pin when it is of that template,
// else the version the device has now (current), else the template's
// latest; then the device's override. The result must satisfy the schema
// of every version used.
func (s *Service) compose(ctx context.Context, d steward.Device, current []steward.ConfigSource, pin *steward.ConfigVersion, override json.RawMessage) (composition, error) {
	templates, err := s.cfg.Store.ListConfigTemplates(ctx, d.TenantID)
	if err != nil {
		return composition{}, err
	}
	have := map[string]string{}
	for _, src := range current {
		have[src.TemplateID] = src.VersionID
	}
	var (
		doc     any = map[string]any{}
		c       composition
		schemas []*jsonschema.Schema
		pinned  bool
	)
	for _, t := range templates {
		if t.Selector != t.Layer.SelectorOf(d) {
			continue
		}
		var v steward.ConfigVersion
		switch {
		case pin != nil && pin.TemplateID == t.ID:
			v, pinned = *pin, true
		case have[t.ID] != "":
			if v, err = s.cfg.Store.GetConfigVersion(ctx, d.TenantID, have[t.ID]); err != nil {
				return c, err
			}
		case t.LatestVersion == 0:
			continue
		default:
			if v, err = s.cfg.Store.LatestConfigVersion(ctx, d.TenantID, t.ID); err != nil {
				return c, err
			}
		}
		patch, err := decode(v.Document)
		if err != nil {
			return c, steward.WrapError(steward.CodeInternal, err, "read configuration version %s", v.ID)
		}
		doc = MergePatch(doc, patch)
		c.sources = append(c.sources, steward.ConfigSource{TemplateID: t.ID, VersionID: v.ID, Version: v.Version, Layer: t.Layer})
		if len(v.Schema) > 0 {
			sch, err := s.schemaOf(v)
			if err != nil {
				return c, err
			}
			schemas = append(schemas, sch)
		}
	}
	if pin != nil && !pinned {
		return c, steward.Errorf(steward.CodeFailedPrecondition, "configuration version %s is of a %s template that does not apply to device %s", pin.ID, pin.Layer, d.ID)
	}
	if len(override) > 0 {
		patch, err := decodeObject("override", override)
		if err != nil {
			return c, err
		}
		doc = MergePatch(doc, patch)
	}
	for _, sch := range schemas {
		if err := validate(sch, doc); err != nil {
			return c, err
		}
	}
	c.doc = doc.(map[string]any)
	return c, nil
}

// GetTwin returns a device's twin. A device whose desired state was never
// set gets the twin its templates' latest versions make, at desired
// version 0, not stored.
func (s *Service) GetTwin(ctx context.Context, tenantID, deviceID string) (steward.Twin, error) {
	t, err := s.cfg.Store.GetTwin(ctx, tenantID, deviceID)
	if !steward.IsNotFound(err) {
		return t, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.Twin{}, err
	}
	if d.State == steward.StateDecommissioned {
		return steward.Twin{}, steward.Errorf(steward.CodeNotFound, "device %s is decommissioned and has no twin", deviceID)
	}
	c, err := s.compose(ctx, d, nil, nil, nil)
	if err != nil {
		return steward.Twin{}, err
	}
	doc, err := encode(c.doc)
	if err != nil {
		return steward.Twin{}, err
	}
	return steward.Twin{TenantID: tenantID, DeviceID: deviceID, Desired: doc, Sources: c.sources}, nil
}

// UpdateTwin applies a direct change to one device's desired state and
// publishes it. patch is a JSON merge patch applied to the device's
// override, the layer over every template. ifMatch, when set, is the
// desired version the change was made against: a twin now at another
// version is not changed (CodeFailedPrecondition).
func (s *Service) UpdateTwin(ctx context.Context, tenantID, deviceID string, patchDoc json.RawMessage, ifMatch *int64, actor string) (steward.Twin, error) {
	patch, err := decodeObject("patch", patchDoc)
	if err != nil {
		return steward.Twin{}, err
	}
	return s.changeDesired(ctx, tenantID, deviceID, ifMatch, actor, "twin.update", func(d steward.Device, t steward.Twin) (composition, json.RawMessage, error) {
		var cur any = map[string]any{}
		if len(t.Override) > 0 {
			if cur, err = decode(t.Override); err != nil {
				return composition{}, nil, steward.WrapError(steward.CodeInternal, err, "read twin override")
			}
		}
		override, err := encode(ComposePatches(cur, patch))
		if err != nil {
			return composition{}, nil, err
		}
		if len(override) > steward.MaxConfigDocument {
			return composition{}, nil, steward.Errorf(steward.CodeTooLarge, "configuration override over %d bytes", steward.MaxConfigDocument)
		}
		if string(override) == "{}" {
			override = nil
		}
		c, err := s.compose(ctx, d, t.Sources, nil, override)
		return c, override, err
	})
}

// ResolveConfig implements steward.ConfigRollout.
func (s *Service) ResolveConfig(ctx context.Context, tenantID, deviceID, versionID string) (json.RawMessage, error) {
	v, err := s.cfg.Store.GetConfigVersion(ctx, tenantID, versionID)
	if err != nil {
		return nil, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return nil, err
	}
	var t steward.Twin
	if t, err = s.cfg.Store.GetTwin(ctx, tenantID, deviceID); err != nil && !steward.IsNotFound(err) {
		return nil, err
	}
	c, err := s.compose(ctx, d, t.Sources, &v, t.Override)
	if err != nil {
		return nil, err
	}
	return encode(c.doc)
}

// ApplyConfigVersion implements steward.ConfigRollout.
func (s *Service) ApplyConfigVersion(ctx context.Context, tenantID, deviceID, versionID, actor string) (steward.Twin, error) {
	v, err := s.cfg.Store.GetConfigVersion(ctx, tenantID, versionID)
	if err != nil {
		return steward.Twin{}, err
	}
	return s.changeDesired(ctx, tenantID, deviceID, nil, actor, "twin.apply_version", func(d steward.Device, t steward.Twin) (composition, json.RawMessage, error) {
		c, err := s.compose(ctx, d, t.Sources, &v, t.Override)
		return c, t.Override, err
	})
}

// ConfigStatus implements steward.ConfigRollout.
func (s *Service) ConfigStatus(ctx context.Context, tenantID, deviceID, versionID string) (string, string, error) {
	t, err := s.cfg.Store.GetTwin(ctx, tenantID, deviceID)
	if err != nil {
		return "", "", err
	}
	found := false
	for _, src := range t.Sources {
		found = found || src.VersionID == versionID
	}
	switch {
	case !found:
		return steward.ConfigSuperseded, "", nil
	case t.ReportedVersion == t.DesiredVersion && t.InSync():
		return steward.ConfigApplied, "", nil
	case t.ReportedVersion == t.DesiredVersion && len(t.ReportErrors) > 0:
		b, _ := json.Marshal(t.ReportErrors)
		return steward.ConfigFailed, string(b), nil
	}
	return steward.ConfigPending, "", nil
}

// PreviousGoodConfig implements steward.ConfigRollout.
func (s *Service) PreviousGoodConfig(ctx context.Context, tenantID, deviceID, templateID string) (string, error) {
	t, err := s.cfg.Store.GetTwin(ctx, tenantID, deviceID)
	if err != nil {
		return "", err
	}
	current := ""
	for _, src := range t.Sources {
		if src.TemplateID == templateID {
			current = src.VersionID
		}
	}
	return s.cfg.Store.PreviousGoodVersion(ctx, tenantID, deviceID, templateID, current)
}

// changeDesired is the one path that changes a desired state: read the
// twin (or start one), check the expected version, build the new desired
// state with build, write it over the revision read (again from the top
// when a report got in between), record it and publish it.
func (s *Service) changeDesired(ctx context.Context, tenantID, deviceID string, ifMatch *int64, actor, action string,
	build func(steward.Device, steward.Twin) (composition, json.RawMessage, error)) (steward.Twin, error) {
	d, err := s.cfg.Store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.Twin{}, err
	}
	if d.State == steward.StateDecommissioned {
		return steward.Twin{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s is decommissioned: it takes no configuration", deviceID)
	}
	for range maxRetries {
		before, err := s.cfg.Store.GetTwin(ctx, tenantID, deviceID)
		fresh := steward.IsNotFound(err)
		if err != nil && !fresh {
			return before, err
		}
		if ifMatch != nil && *ifMatch != before.DesiredVersion {
			return before, steward.Errorf(steward.CodeFailedPrecondition,
				"the twin of device %s is at desired version %d, not %d: read it again and redo the change", deviceID, before.DesiredVersion, *ifMatch)
		}
		c, override, err := build(d, before)
		if err != nil {
			return before, err
		}
		doc, err := encode(c.doc)
		if err != nil {
			return before, err
		}
		now := s.cfg.Clock.Now()
		t := before
		if fresh {
			t = steward.Twin{TenantID: tenantID, DeviceID: deviceID, CreatedAt: now}
		}
		t.Desired, t.Sources, t.Override = doc, c.sources, override
		t.DesiredVersion++
		t.DesiredBy, t.DesiredAt, t.UpdatedAt = actor, now, now
		if t.InSync() {
			t.DriftSince = nil
		} else {
			// The device needs time to apply the new state: the grace
			// period starts again.
			t.DriftSince = &now
		}
		after, err := s.cfg.Store.PutTwin(ctx, t)
		if steward.IsConflict(err) {
			continue // a report, a drift check or another change got in first
		}
		if err != nil {
			return after, err
		}
		if err := s.audit(ctx, tenantID, actor, action, "device:"+deviceID, auditView(before, fresh), auditView(after, false)); err != nil {
			return after, err
		}
		s.publish(ctx, before, after)
		return after, nil
	}
	return steward.Twin{}, steward.Errorf(steward.CodeConflict, "the twin of device %s kept changing: try again", deviceID)
}

// auditView is what the audit log keeps of a twin: its desired side.
func auditView(t steward.Twin, none bool) any {
	if none {
		return nil
	}
	return map[string]any{"desired": t.Desired, "desired_version": t.DesiredVersion, "sources": t.Sources, "override": t.Override}
}

// publish sends a twin's desired state to its device, retained, with the
// change from before. A device plane that cannot take it is logged: the
// stored twin is the truth, and Republish sends it again at start.
func (s *Service) publish(ctx context.Context, before, after steward.Twin) {
	if s.cfg.Bus == nil {
		return
	}
	msg := steward.TwinDesiredMessage{Version: after.DesiredVersion, State: after.Desired}
	from, err1 := decode(orEmpty(before.Desired))
	to, err2 := decode(after.Desired)
	if fm, ok := from.(map[string]any); ok && err1 == nil && err2 == nil {
		if tm, ok := to.(map[string]any); ok {
			msg.Delta, _ = encode(MakeMergePatch(fm, tm))
		}
	}
	if err := s.send(ctx, after.TenantID, after.DeviceID, msg); err != nil {
		s.cfg.Logger.Warn("publish desired twin", "tenant", after.TenantID, "device", after.DeviceID, "version", after.DesiredVersion, "err", err)
	}
}

func (s *Service) send(ctx context.Context, tenantID, deviceID string, msg steward.TwinDesiredMessage) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode desired message: %w", err)
	}
	return s.cfg.Bus.Send(ctx, steward.OutboundMessage{TenantID: tenantID, DeviceID: deviceID, Channel: steward.ChannelTwinDesired,
		Payload: b, QoS: 1, Retain: true})
}

func orEmpty(b json.RawMessage) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage(`{}`)
	}
	return b
}

// Republish sends every stored desired state to its device again, retained:
// the broker keeps retained messages in memory, so a node that restarts
// calls it once its device plane is up.
func (s *Service) Republish(ctx context.Context) (int, error) {
	if s.cfg.Bus == nil {
		return 0, nil
	}
	tenants, err := s.cfg.Store.ListTenants(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, tn := range tenants {
		after := ""
		for {
			twins, err := s.cfg.Store.ListTwins(ctx, tn.ID, steward.TwinFilter{After: after, Limit: 1000})
			if err != nil {
				return n, err
			}
			for _, t := range twins {
				if err := s.send(ctx, t.TenantID, t.DeviceID, steward.TwinDesiredMessage{Version: t.DesiredVersion, State: t.Desired}); err != nil {
					return n, fmt.Errorf("republish desired twin of %s: %w", t.DeviceID, err)
				}
				n++
			}
			if len(twins) < 1000 {
				break
			}
			after = twins[len(twins)-1].DeviceID
		}
	}
	return n, nil
}

// RemoveDeviceAccess implements steward.DeviceAccessRemover: a device that
// leaves the fleet keeps no desired configuration, so nothing republishes
// one to it. The retained message itself is cleared by the caller.
func (s *Service) RemoveDeviceAccess(ctx context.Context, tenantID, deviceID string) (string, error) {
	before, err := s.cfg.Store.GetTwin(ctx, tenantID, deviceID)
	if steward.IsNotFound(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	gone, err := s.cfg.Store.DeleteTwin(ctx, tenantID, deviceID)
	if err != nil || !gone {
		return "", err
	}
	if err := s.audit(ctx, tenantID, "system:decommission", "twin.delete", "device:"+deviceID, before, nil); err != nil {
		return "", err
	}
	return fmt.Sprintf("device twin deleted (desired version %d)", before.DesiredVersion), nil
}

var _ steward.DeviceAccessRemover = (*Service)(nil)
