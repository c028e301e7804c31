package steward

import (
	"encoding/json"
	"math"
	"strings"
	"time"
)

// AlertSeverity ranks an alert, from info to critical (the ITU X.733
// perceived severities operators know from network management).
type AlertSeverity string

// The alert severities, least severe first.
const (
	AlertInfo     AlertSeverity = "info"
	AlertWarning  AlertSeverity = "warning"
	AlertMinor    AlertSeverity = "minor"
	AlertMajor    AlertSeverity = "major"
	AlertCritical AlertSeverity = "critical"
)

// AlertSeverities lists every alert severity, least severe first.
var AlertSeverities = []AlertSeverity{AlertInfo, AlertWarning, AlertMinor, AlertMajor, AlertCritical}

// Valid reports whether s is a known alert severity.
func (s AlertSeverity) Valid() bool {
	for _, v := range AlertSeverities {
		if s == v {
			return true
		}
	}
	return false
}

// AlertRuleKind says what an alert rule watches.
type AlertRuleKind string

// The alert rule kinds.
const (
	// RuleThreshold compares an aggregate of a metric over a window with a
	// value, and resolves at a separate value (hysteresis).
	RuleThreshold AlertRuleKind = "threshold"
	// RuleAbsence fires when a device sent no telemetry, or was offline,
	// for a duration.
	RuleAbsence AlertRuleKind = "absence"
	// RuleEvent fires when a device reported a matching event within a window.
	RuleEvent AlertRuleKind = "event"
	// RuleRate fires when a device reports events of a type faster than a
	// number per hour over a window.
	RuleRate AlertRuleKind = "rate"
	// RuleShare fires, once per rule, when the share of the scope's
	// devices whose condition holds reaches a threshold.
	RuleShare AlertRuleKind = "share"
	// RuleSiteConnectivity fires one alert per site when many of the
	// site's devices are offline at once (a network disruption); while it
	// fires, the site's devices' offline alerts are inhibited.
	RuleSiteConnectivity AlertRuleKind = "site_connectivity"
)

// BuiltinSiteRuleID and BuiltinSiteRuleName identify the site
// connectivity rule the evaluator creates for a tenant on demand (the
// first time one of its sites goes dark) when the tenant has none.
const (
	BuiltinSiteRuleID   = "ar-site-connectivity"
	BuiltinSiteRuleName = "site connectivity"
)

// Defaults of a site connectivity condition.
const (
	DefaultSiteMinShare      = 0.5
	DefaultSiteMinDevices    = 3
	DefaultSiteRecoveryGrace = 2 * time.Minute
)

// Duration is a time.Duration that reads and writes JSON as Go duration
// text ("90s", "5m", "1h30m"), which people can write in a rules file.
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return Errorf(CodeInvalid, "duration: want text such as \"5m\" or \"90s\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return Errorf(CodeInvalid, "duration %q: want text such as \"5m\" or \"90s\"", Truncate(s, 64))
	}
	*d = Duration(v)
	return nil
}

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// The aggregations of a threshold rule over its window.
const (
	AggAvg  = "avg"
	AggMin  = "min"
	AggMax  = "max"
	AggLast = "last"
)

// ThresholdCondition is a threshold rule's condition: Aggregation of
// Metric's samples over Window, compared with Value by Operator. The
// alert resolves only once the aggregate no longer compares so with
// ResolveValue (Value when nil): "> 80, resolve 70" fires above 80 and
// resolves at 70 or below, so that a value wandering around 80 does not
// fire and resolve every evaluation.
type ThresholdCondition struct {
	Metric       string   `json:"metric"`
	Aggregation  string   `json:"aggregation"`
	Window       Duration `json:"window"`
	Operator     string   `json:"operator"` // >, >=, <, <=
	Value        float64  `json:"value"`
	ResolveValue *float64 `json:"resolve_value,omitempty"`
}

// Compare reports whether v op than x holds for the condition's operator.
func (c *ThresholdCondition) Compare(v, x float64) bool {
	switch c.Operator {
	case ">":
		return v > x
	case ">=":
		return v >= x
	case "<":
		return v < x
	case "<=":
		return v <= x
	}
	return false
}

// Resolve returns the value at which the alert resolves.
func (c *ThresholdCondition) Resolve() float64 {
	if c.ResolveValue != nil {
		return *c.ResolveValue
	}
	return c.Value
}

// AbsenceCondition is an absence rule's condition: the device sent no
// telemetry (Signal "telemetry") or has been offline (Signal "offline")
// for at least Window. A device never heard from counts as absent.
type AbsenceCondition struct {
	Signal string   `json:"signal"`
	Window Duration `json:"window"`
}

// EventCondition is an event rule's condition: at least one event of Type,
// of MinSeverity or worse when set, whose Fields[Field] reads FieldValue
// when Field is set (compared as text), within Window.
type EventCondition struct {
	Type        string   `json:"type"`
	MinSeverity Severity `json:"min_severity,omitempty"`
	Field       string   `json:"field,omitempty"`
	FieldValue  string   `json:"field_value,omitempty"`
	Window      Duration `json:"window"`
}

// RateCondition is a rate rule's condition: a device's events of Type over
// Window, per hour, above PerHour. It resolves at ResolvePerHour or below
// (PerHour when nil).
type RateCondition struct {
	Type           string   `json:"type"`
	Window         Duration `json:"window"`
	PerHour        float64  `json:"per_hour"`
	ResolvePerHour *float64 `json:"resolve_per_hour,omitempty"`
}

// ShareCondition is a share rule's condition: the share of the scope's
// devices on which the per-device condition holds — offline for at least
// Window (Signal "offline"; devices in maintenance are left out), or
// Threshold's comparison of its aggregate (Signal "threshold"; devices
// without samples in the window are left out) — is at least Share (and
// at least MinDevices devices). It resolves once the share is below
// ResolveShare (Share when nil), so a share that hovers at the threshold
// does not flap.
type ShareCondition struct {
	Signal       string              `json:"signal"`
	Window       Duration            `json:"window,omitempty"`
	Threshold    *ThresholdCondition `json:"threshold,omitempty"`
	Share        float64             `json:"share"`
	ResolveShare *float64            `json:"resolve_share,omitempty"`
	MinDevices   int                 `json:"min_devices,omitempty"`
}

// Resolve returns the share below which the alert resolves.
func (c *ShareCondition) Resolve() float64 {
	if c.ResolveShare != nil {
		return *c.ResolveShare
	}
	return c.Share
}

// SiteCondition is a site connectivity rule's condition: at least
// MinShare of a site's devices and at least MinDevices of them are
// offline (devices in maintenance, registered or decommissioned do not
// count). Zero values take the defaults (50%, 3 devices).
type SiteCondition struct {
	MinShare   float64 `json:"min_share,omitempty"`
	MinDevices int     `json:"min_devices,omitempty"`
	// RecoveryGrace is how long after a site alert resolves its devices'
	// alerts stay inhibited: devices come back from an outage over
	// seconds to minutes, and the stragglers of a recovering site are not
	// device faults. A device still offline after it is notified on its own.
	RecoveryGrace Duration `json:"recovery_grace,omitempty"`
}

// Effective returns c with its defaults filled in.
func (c SiteCondition) Effective() SiteCondition {
	if c.MinShare == 0 {
		c.MinShare = DefaultSiteMinShare
	}
	if c.MinDevices == 0 {
		c.MinDevices = DefaultSiteMinDevices
	}
	if c.RecoveryGrace == 0 {
		c.RecoveryGrace = Duration(DefaultSiteRecoveryGrace)
	}
	return c
}

// Limits on an alert rule.
const (
	MaxAlertRuleNameLen = 128
	MaxAlertLabels      = 32
	MaxAlertWindow      = 7 * 24 * time.Hour
	MaxAlertFor         = 7 * 24 * time.Hour
)

// AlertRule is a tenant's rule that raises alerts: one alert per device
// of Scope (a fleet query; empty is every device) whose condition has
// held for For — one per rule for a share rule, one per site for a site
// connectivity rule. Exactly the condition of Kind is set.
type AlertRule struct {
	ID       string            `json:"id"`
	TenantID string            `json:"tenant_id"`
	Name     string            `json:"name"`
	Kind     AlertRuleKind     `json:"kind"`
	Severity AlertSeverity     `json:"severity"`
	Labels   map[string]string `json:"labels,omitempty"`
	Scope    string            `json:"scope,omitempty"`
	// For is how long the condition must hold before a pending alert fires;
	// zero fires at the first evaluation that finds it.
	For     Duration `json:"for"`
	Enabled bool     `json:"enabled"`

	Threshold *ThresholdCondition `json:"threshold,omitempty"`
	Absence   *AbsenceCondition   `json:"absence,omitempty"`
	Event     *EventCondition     `json:"event,omitempty"`
	Rate      *RateCondition      `json:"rate,omitempty"`
	Share     *ShareCondition     `json:"share,omitempty"`
	Site      *SiteCondition      `json:"site,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Window returns the window the rule's condition looks at.
func (r *AlertRule) Window() time.Duration {
	switch {
	case r.Threshold != nil:
		return r.Threshold.Window.D()
	case r.Absence != nil:
		return r.Absence.Window.D()
	case r.Event != nil:
		return r.Event.Window.D()
	case r.Rate != nil:
		return r.Rate.Window.D()
	case r.Share != nil && r.Share.Threshold != nil:
		return r.Share.Threshold.Window.D()
	case r.Share != nil:
		return r.Share.Window.D()
	}
	return 0
}

// Validate checks a rule before it is stored: the fields every rule
// needs, then the condition of its kind (and only that one). It does not
// parse the scope: the store does, as it compiles it.
func (r *AlertRule) Validate() error {
	switch {
	case r.TenantID == "" || r.ID == "":
		return Errorf(CodeInvalid, "an alert rule needs an id and a tenant")
	case r.Name == "" || len(r.Name) > MaxAlertRuleNameLen || strings.TrimSpace(r.Name) != r.Name || strings.ContainsAny(r.Name, "\x00\n\r\t"):
		return Errorf(CodeInvalid, "alert rule name %q: use 1 to %d characters without surrounding spaces or control characters", r.Name, MaxAlertRuleNameLen)
	case !r.Severity.Valid():
		return Errorf(CodeInvalid, "alert rule severity %q: want one of critical, major, minor, warning, info", r.Severity)
	case r.For < 0 || r.For.D() > MaxAlertFor:
		return Errorf(CodeInvalid, "alert rule for %s: want 0 to %s", r.For.D(), MaxAlertFor)
	case len(r.Labels) > MaxAlertLabels:
		return Errorf(CodeInvalid, "alert rule has %d labels, more than %d", len(r.Labels), MaxAlertLabels)
	case r.CreatedAt.IsZero() || r.UpdatedAt.IsZero():
		return Errorf(CodeInvalid, "an alert rule needs its times of creation and update")
	}
	for k := range r.Labels {
		if !ValidMetricName(k) {
			return Errorf(CodeInvalid, "alert rule label %q: use 1 to %d letters, digits, '_', '-', '.'", k, MaxMetricNameLen)
		}
	}
	set := 0
	for _, p := range []bool{r.Threshold != nil, r.Absence != nil, r.Event != nil, r.Rate != nil, r.Share != nil, r.Site != nil} {
		if p {
			set++
		}
	}
	if set != 1 {
		return Errorf(CodeInvalid, "alert rule of kind %q needs exactly its own condition (threshold, absence, event, rate, share or site), got %d", r.Kind, set)
	}
	window := r.Window()
	if r.Kind != RuleSiteConnectivity && (window <= 0 || window > MaxAlertWindow) {
		return Errorf(CodeInvalid, "alert rule window %s: want more than 0 and at most %s", window, MaxAlertWindow)
	}
	switch r.Kind {
	case RuleThreshold:
		c := r.Threshold
		if c == nil {
			return Errorf(CodeInvalid, "a threshold rule needs a threshold condition")
		}
		switch {
		case !ValidMetricName(c.Metric):
			return Errorf(CodeInvalid, "threshold metric %q: use 1 to %d letters, digits, '_', '-', '.'", c.Metric, MaxMetricNameLen)
		case c.Aggregation != AggAvg && c.Aggregation != AggMin && c.Aggregation != AggMax && c.Aggregation != AggLast:
			return Errorf(CodeInvalid, "threshold aggregation %q: want avg, min, max or last", c.Aggregation)
		case c.Operator != ">" && c.Operator != ">=" && c.Operator != "<" && c.Operator != "<=":
			return Errorf(CodeInvalid, "threshold operator %q: want >, >=, < or <=", c.Operator)
		case math.IsNaN(c.Value) || math.IsInf(c.Value, 0) || math.IsNaN(c.Resolve()) || math.IsInf(c.Resolve(), 0):
			return Errorf(CodeInvalid, "threshold values must be finite numbers")
		case strings.HasPrefix(c.Operator, ">") && c.Resolve() > c.Value,
			strings.HasPrefix(c.Operator, "<") && c.Resolve() < c.Value:
			return Errorf(CodeInvalid, "threshold resolve value %v must be on the clear side of %s %v (hysteresis)", c.Resolve(), c.Operator, c.Value)
		}
	case RuleAbsence:
		if r.Absence == nil {
			return Errorf(CodeInvalid, "an absence rule needs an absence condition")
		}
		if s := r.Absence.Signal; s != "telemetry" && s != "offline" {
			return Errorf(CodeInvalid, "absence signal %q: want telemetry or offline", s)
		}
	case RuleEvent:
		c := r.Event
		switch {
		case c == nil:
			return Errorf(CodeInvalid, "an event rule needs an event condition")
		case !ValidEventType(c.Type):
			return Errorf(CodeInvalid, "event type %q: use 1 to %d letters, digits, '_', '-', '.'", c.Type, MaxEventTypeLen)
		case c.MinSeverity != "" && !c.MinSeverity.Valid():
			return Errorf(CodeInvalid, "event min_severity %q: want one of debug, info, notice, warning, error, critical", c.MinSeverity)
		case c.Field == "" && c.FieldValue != "":
			return Errorf(CodeInvalid, "event field_value needs a field")
		case c.Field != "" && !ValidMetricName(c.Field):
			return Errorf(CodeInvalid, "event field %q: use 1 to %d letters, digits, '_', '-', '.'", c.Field, MaxMetricNameLen)
		}
	case RuleRate:
		c := r.Rate
		switch {
		case c == nil:
			return Errorf(CodeInvalid, "a rate rule needs a rate condition")
		case !ValidEventType(c.Type):
			return Errorf(CodeInvalid, "rate event type %q: use 1 to %d letters, digits, '_', '-', '.'", c.Type, MaxEventTypeLen)
		case !(c.PerHour > 0) || math.IsInf(c.PerHour, 0):
			return Errorf(CodeInvalid, "rate per_hour must be a positive number")
		case c.ResolvePerHour != nil && (!(*c.ResolvePerHour >= 0) || *c.ResolvePerHour > c.PerHour):
			return Errorf(CodeInvalid, "rate resolve_per_hour must be from 0 to per_hour (hysteresis)")
		}
	case RuleShare:
		c := r.Share
		switch {
		case c == nil:
			return Errorf(CodeInvalid, "a share rule needs a share condition")
		case c.Signal != "offline" && c.Signal != "threshold":
			return Errorf(CodeInvalid, "share signal %q: want offline or threshold", c.Signal)
		case c.Signal == "threshold" && c.Threshold == nil, c.Signal == "offline" && c.Threshold != nil:
			return Errorf(CodeInvalid, "a share rule has a threshold condition exactly when its signal is threshold")
		case !(c.Share > 0 && c.Share <= 1):
			return Errorf(CodeInvalid, "share %v: want more than 0 and at most 1", c.Share)
		case !(c.Resolve() > 0 && c.Resolve() <= c.Share):
			return Errorf(CodeInvalid, "resolve_share %v: want more than 0 and at most share (hysteresis)", c.Resolve())
		case c.MinDevices < 0 || c.MinDevices > 1_000_000:
			return Errorf(CodeInvalid, "share min_devices %d: want 0 to 1000000", c.MinDevices)
		}
		if t := c.Threshold; t != nil {
			switch {
			case !ValidMetricName(t.Metric):
				return Errorf(CodeInvalid, "share threshold metric %q: use 1 to %d letters, digits, '_', '-', '.'", t.Metric, MaxMetricNameLen)
			case t.Aggregation != AggAvg && t.Aggregation != AggMin && t.Aggregation != AggMax && t.Aggregation != AggLast:
				return Errorf(CodeInvalid, "share threshold aggregation %q: want avg, min, max or last", t.Aggregation)
			case t.Operator != ">" && t.Operator != ">=" && t.Operator != "<" && t.Operator != "<=":
				return Errorf(CodeInvalid, "share threshold operator %q: want >, >=, < or <=", t.Operator)
			case math.IsNaN(t.Value) || math.IsInf(t.Value, 0):
				return Errorf(CodeInvalid, "share threshold value must be a finite number")
			}
		}
	case RuleSiteConnectivity:
		c := r.Site
		switch {
		case c == nil:
			return Errorf(CodeInvalid, "a site_connectivity rule needs a site condition")
		case c.MinShare < 0 || c.MinShare > 1 || math.IsNaN(c.MinShare):
			return Errorf(CodeInvalid, "site min_share %v: want 0 (default 0.5) to 1", c.MinShare)
		case c.MinDevices < 0 || c.MinDevices > 1_000_000:
			return Errorf(CodeInvalid, "site min_devices %d: want 0 (default 3) to 1000000", c.MinDevices)
		case c.RecoveryGrace < 0 || c.RecoveryGrace.D() > MaxAlertFor:
			return Errorf(CodeInvalid, "site recovery_grace %s: want 0 (default 2m) to %s", c.RecoveryGrace.D(), MaxAlertFor)
		case r.Scope != "":
			return Errorf(CodeInvalid, "a site_connectivity rule looks at every site: leave its scope empty")
		}
	default:
		return Errorf(CodeInvalid, "alert rule kind %q: want threshold, absence, event, rate, share or site_connectivity", r.Kind)
	}
	return nil
}

// AlertState is where an alert is in its life.
type AlertState string

// The alert states. An alert is open while pending or firing; at most one
// alert per rule and device is open.
const (
	// AlertPending: the condition holds, for less than the rule's For.
	AlertPending AlertState = "pending"
	// AlertFiring: the condition has held for the rule's For.
	AlertFiring AlertState = "firing"
	// AlertResolved: the resolve condition held after the alert fired, or
	// the rule was disabled or deleted, or the device left its scope.
	AlertResolved AlertState = "resolved"
)

// AlertStates lists the alert states.
var AlertStates = []AlertState{AlertPending, AlertFiring, AlertResolved}

// Valid reports whether s is a known alert state.
func (s AlertState) Valid() bool { return s == AlertPending || s == AlertFiring || s == AlertResolved }

// Open reports whether s is pending or firing.
func (s AlertState) Open() bool { return s == AlertPending || s == AlertFiring }

// Alert is one occurrence of a rule's condition on one device.
type Alert struct {
	ID       string            `json:"id"`
	TenantID string            `json:"tenant_id"`
	RuleID   string            `json:"rule_id"`
	DeviceID string            `json:"device_id,omitempty"` // empty for a rule over a group
	State    AlertState        `json:"state"`
	Severity AlertSeverity     `json:"severity"`
	Labels   map[string]string `json:"labels,omitempty"`
	Summary  string            `json:"summary"`
	Value    float64           `json:"value"`
	// StartedAt is when the condition was first found (pending since).
	StartedAt       time.Time  `json:"started_at"`
	FiredAt         *time.Time `json:"fired_at,omitempty"`
	ResolvedAt      *time.Time `json:"resolved_at,omitempty"`
	LastEvaluatedAt time.Time  `json:"last_evaluated_at"`
	AcknowledgedBy  string     `json:"acknowledged_by,omitempty"`
	AcknowledgedAt  *time.Time `json:"acknowledged_at,omitempty"`
	Assignee        string     `json:"assignee,omitempty"`
	// Subject tells apart the open alerts of one rule that are not about
	// one device: the site of a site connectivity alert.
	Subject string `json:"subject,omitempty"`
	// InhibitedBy names the alert (a site connectivity alert) that kept
	// this one from being notified when it fired: the device is offline
	// because its site is. Cleared, and the alert notified, when the
	// inhibiting alert resolves while this one still fires.
	InhibitedBy string `json:"inhibited_by,omitempty"`
	// Suppressed says why this alert was recorded but not notified when
	// it fired (its device was in maintenance). Cleared, and the alert
	// notified, when the reason ends while it still fires.
	Suppressed string `json:"suppressed,omitempty"`
}

// Limits of the alert fields the evaluator sets.
const MaxAlertSubjectLen = 256

// Validate checks an alert before it is stored.
func (a *Alert) Validate() error {
	switch {
	case a.TenantID == "" || a.RuleID == "":
		return Errorf(CodeInvalid, "an alert needs a tenant and a rule")
	case !a.State.Valid():
		return Errorf(CodeInvalid, "alert state %q: want pending, firing or resolved", a.State)
	case !a.Severity.Valid():
		return Errorf(CodeInvalid, "alert severity %q: want one of critical, major, minor, warning, info", a.Severity)
	case math.IsNaN(a.Value) || math.IsInf(a.Value, 0):
		return Errorf(CodeInvalid, "alert value must be a finite number")
	case a.StartedAt.IsZero() || a.LastEvaluatedAt.IsZero():
		return Errorf(CodeInvalid, "an alert needs its start and evaluation times")
	case a.State == AlertFiring && a.FiredAt == nil:
		return Errorf(CodeInvalid, "a firing alert needs its firing time")
	case a.State == AlertResolved && a.ResolvedAt == nil:
		return Errorf(CodeInvalid, "a resolved alert needs its resolution time")
	case len(a.Subject) > MaxAlertSubjectLen || len(a.InhibitedBy) > MaxAlertSubjectLen || len(a.Suppressed) > MaxAlertSubjectLen:
		return Errorf(CodeInvalid, "alert subject, inhibited_by and suppressed: at most %d characters each", MaxAlertSubjectLen)
	}
	return nil
}

// AlertFilter narrows a list of alerts; empty fields match everything.
type AlertFilter struct {
	State    AlertState
	Open     bool // only pending and firing alerts
	Severity AlertSeverity
	RuleID   string
	DeviceID string
	Limit    int // 0 means the store's default (100); at most 1000
}

// AlertCount is how many alerts of a tenant are in a state at a severity.
type AlertCount struct {
	TenantID string        `json:"tenant_id"`
	State    AlertState    `json:"state"`
	Severity AlertSeverity `json:"severity"`
	Count    int           `json:"count"`
}

// AlertSignalQuery asks the store, for each device of a scope, what alert
// rules look at, in one grouped query: the Aggregation of Metric's samples
// in [From, To) when Metric is set, and the count of events of Event (of
// MinSeverity or worse, with Fields[Field] reading FieldValue as text when
// Field is set) in [From, To) when Event is set.
type AlertSignalQuery struct {
	Scope       string
	Metric      string
	Aggregation string
	Event       string
	MinSeverity Severity
	Field       string
	FieldValue  string
	From, To    time.Time
}

// AlertSignal is one device's answer to an AlertSignalQuery.
type AlertSignal struct {
	DeviceID string
	Site     string
	State    State
	Online   bool
	// LastSeen is the device's last contact; LastSample the time of its
	// newest sample of any metric. Zero when never.
	LastSeen   time.Time
	LastSample time.Time
	// Samples counts the metric's samples in the range; Value is their
	// aggregate (meaningless when Samples is 0).
	Samples int64
	Value   float64
	Events  int64
}

// SiteConnectivity is one site's devices, counted for the site
// connectivity check: Devices counts those expected to be connected
// (neither registered, in maintenance nor decommissioned), Offline those
// of them not connected now.
type SiteConnectivity struct {
	Site    string `json:"site"`
	Devices int    `json:"devices"`
	Offline int    `json:"offline"`
}
