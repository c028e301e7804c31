package steward

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// The data classes whose retention the store itself enforces (see
// RetentionStore.PruneDataClass). Raw telemetry and its rollups keep their
// own, server-wide periods (the telemetry policy: raw 7 days, minute
// rollups 30 days, hour rollups 400 days, day rollups 5 years).
const (
	RetentionDeviceEvents    = "events.device"            // what devices reported on their events channel
	RetentionPresenceEvents  = "events.presence"          // connects and disconnects
	RetentionSecurityEvents  = "events.security"          // refused connections, bad certificates, …
	RetentionLifecycleEvents = "events.lifecycle"         // a device's state changes
	RetentionDeliveries      = "notifications.deliveries" // delivered and failed notifications (pending ones are kept)
	RetentionClosedAlerts    = "alerts.closed"            // resolved alerts, by the time they resolved
)

// Bounds on a retention period.
const (
	MinRetention = time.Hour
	MaxRetention = 100 * 365 * 24 * time.Hour
)

// RetentionClass is a class of data with a retention period: rows of the
// class older than the period are deleted by the retention job. A tenant
// may set its own period within [Min, Max] (RetentionOverride).
type RetentionClass struct {
	// Name is "area.kind": 1 to 64 letters, digits, '_', '-' or '.'.
	Name        string        `json:"name"`
	Description string        `json:"description"`
	Default     time.Duration `json:"-"`
	// Min and Max bound the periods a tenant may set; zero takes
	// MinRetention and MaxRetention. A class with a legal minimum (the
	// audit log) sets Min to it.
	Min time.Duration `json:"-"`
	Max time.Duration `json:"-"`
	// Prune deletes at most limit of the tenant's rows of the class that
	// are older than before, and returns how many it deleted.
	Prune func(ctx context.Context, tenantID string, before time.Time, limit int) (int, error) `json:"-"`
}

// Bounds returns the class's Min and Max with their defaults.
func (c RetentionClass) Bounds() (lo, hi time.Duration) {
	lo, hi = cmp.Or(c.Min, MinRetention), cmp.Or(c.Max, MaxRetention)
	return lo, hi
}

// RetentionOverride is a tenant's own retention period for a data class.
type RetentionOverride struct {
	TenantID  string    `json:"tenant_id"`
	Class     string    `json:"class"`
	Period    Duration  `json:"period"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RetentionStore keeps the tenants' retention overrides and prunes the
// data classes the store holds.
type RetentionStore interface {
	// PutRetentionOverride creates or replaces a tenant's period for a
	// class (CodeInvalid for an empty class or a period under a second,
	// CodeNotFound for an unknown tenant). The registry checks the class
	// and its bounds before (RetentionRegistry.CheckOverride).
	PutRetentionOverride(ctx context.Context, o RetentionOverride) error
	// ListRetentionOverrides returns the tenant's overrides, by class.
	ListRetentionOverrides(ctx context.Context, tenantID string) ([]RetentionOverride, error)
	// DeleteRetentionOverride returns a class of the tenant to its default
	// (CodeNotFound when it had no override).
	DeleteRetentionOverride(ctx context.Context, tenantID, class string) error
	// PruneDataClass deletes at most limit (1 to 100000) of the tenant's
	// rows of a built-in class (the Retention* constants; CodeInvalid for
	// any other) older than before, and returns how many it deleted.
	PruneDataClass(ctx context.Context, tenantID, class string, before time.Time, limit int) (int, error)
}

// RetentionRegistry is the set of data classes the retention job prunes.
// The store's classes are registered by StoreRetentionClasses; a package
// that keeps data of its own (the audit log, artifacts) registers its
// class with a Prune of its own.
type RetentionRegistry struct {
	mu      sync.RWMutex
	classes map[string]RetentionClass
}

// NewRetentionRegistry returns a registry holding classes (see Register).
func NewRetentionRegistry(classes ...RetentionClass) (*RetentionRegistry, error) {
	r := &RetentionRegistry{classes: map[string]RetentionClass{}}
	for _, c := range classes {
		if err := r.Register(c); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds a class: CodeInvalid when its name, default, bounds or
// Prune are missing or wrong, CodeConflict when the name is taken.
func (r *RetentionRegistry) Register(c RetentionClass) error {
	lo, hi := c.Bounds()
	switch {
	case !ValidEventType(c.Name):
		return Errorf(CodeInvalid, "retention class %q: use 1 to %d letters, digits, '_', '-', '.'", c.Name, MaxEventTypeLen)
	case c.Prune == nil:
		return Errorf(CodeInvalid, "retention class %s has no way to prune", c.Name)
	case lo > hi || c.Default < lo || c.Default > hi:
		return Errorf(CodeInvalid, "retention class %s: default %s outside [%s, %s]", c.Name, c.Default, lo, hi)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.classes[c.Name]; ok {
		return Errorf(CodeConflict, "retention class %s is registered already", c.Name)
	}
	r.classes[c.Name] = c
	return nil
}

// Class returns a registered class.
func (r *RetentionRegistry) Class(name string) (RetentionClass, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	c, ok := r.classes[name]
	return c, ok
}

// Classes returns the registered classes, by name.
func (r *RetentionRegistry) Classes() []RetentionClass {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]RetentionClass, 0, len(r.classes))
	for _, c := range r.classes {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b RetentionClass) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// CheckOverride checks an override against its class: CodeInvalid for an
// unknown class or a period outside the class's bounds.
func (r *RetentionRegistry) CheckOverride(o RetentionOverride) error {
	c, ok := r.Class(o.Class)
	if !ok {
		return Errorf(CodeInvalid, "unknown retention class %q", o.Class)
	}
	lo, hi := c.Bounds()
	if p := time.Duration(o.Period); p < lo || p > hi {
		return Errorf(CodeInvalid, "retention of %s: %s is outside [%s, %s]", o.Class, p, lo, hi)
	}
	return nil
}

// Period returns a class's period for a tenant with the given overrides:
// the override when there is one within the class's bounds (a class's
// bounds may have tightened since), else the default.
func (c RetentionClass) Period(overrides []RetentionOverride) time.Duration {
	lo, hi := c.Bounds()
	for _, o := range overrides {
		if o.Class == c.Name {
			return min(max(time.Duration(o.Period), lo), hi)
		}
	}
	return c.Default
}

// StoreRetentionClasses returns the classes a RetentionStore prunes, with
// their default periods: device and presence events 90 days, security
// events 1 year, lifecycle events 5 years (a device's history), delivered
// and failed notifications 30 days, resolved alerts 180 days.
func StoreRetentionClasses(s RetentionStore) []RetentionClass {
	day := 24 * time.Hour
	mk := func(name, desc string, def time.Duration) RetentionClass {
		return RetentionClass{Name: name, Description: desc, Default: def,
			Prune: func(ctx context.Context, tenantID string, before time.Time, limit int) (int, error) {
				return s.PruneDataClass(ctx, tenantID, name, before, limit)
			}}
	}
	return []RetentionClass{
		mk(RetentionDeviceEvents, "events devices reported, by the device's time", 90*day),
		mk(RetentionPresenceEvents, "device connects and disconnects", 90*day),
		mk(RetentionSecurityEvents, "security events (refused connections, bad certificates)", 365*day),
		mk(RetentionLifecycleEvents, "device state changes", 5*365*day),
		mk(RetentionDeliveries, "delivered and failed notifications, by creation time; pending ones are kept", 30*day),
		mk(RetentionClosedAlerts, "resolved alerts, by the time they resolved", 180*day),
	}
}
