package steward

import (
	"context"
	"encoding/json"
	"strings"
	"time"
)

// Defaults and limits of notification policies.
const (
	DefaultGroupWait      = 30 * time.Second
	DefaultGroupInterval  = 5 * time.Minute
	DefaultRepeatInterval = 4 * time.Hour
	MaxPolicyNameLen      = 128
	MaxPolicyMatchers     = 32
	MaxPolicyChannels     = 32
	MaxPolicyGroupBy      = 16
)

// PolicyActionQuarantine quarantines the alert's device when a firing
// alert matches the policy.
const PolicyActionQuarantine = "quarantine"

// NotificationPolicy routes the notifications whose labels (rule,
// severity, device and the rule's labels) all its matchers match to its
// channels, grouped: policies are tried by Order (then name), the first
// that matches takes the notification, and it goes on to later ones only
// when that policy says Continue. A notification no policy matches goes
// to every enabled channel on its own, as without policies.
type NotificationPolicy struct {
	ID       string    `json:"id"`
	TenantID string    `json:"tenant_id"`
	Name     string    `json:"name"`
	Order    int       `json:"order"`
	Matchers []Matcher `json:"matchers"`
	// Channels get the group messages.
	Channels []string `json:"channels"`
	// GroupBy names the labels whose values make a group (["rule"] when empty).
	GroupBy []string `json:"group_by"`
	// GroupWait is how long a new group waits for more alerts before its
	// first message; GroupInterval the least time between two messages
	// of a group that changed; RepeatInterval how often a group still
	// firing is sent again. Zero takes the default.
	GroupWait      Duration `json:"group_wait"`
	GroupInterval  Duration `json:"group_interval"`
	RepeatInterval Duration `json:"repeat_interval"`
	// Continue keeps trying later policies after this one matched.
	Continue bool `json:"continue"`
	// EscalateAfter, when set, sends a firing alert nobody acknowledged
	// within it to EscalateChannels, once.
	EscalateAfter    Duration `json:"escalate_after,omitempty"`
	EscalateChannels []string `json:"escalate_channels,omitempty"`
	// Actions run when a firing alert matches (only "quarantine").
	Actions   []string  `json:"actions,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WithDefaults returns p with the defaults of empty group_by and zero intervals.
func (p NotificationPolicy) WithDefaults() NotificationPolicy {
	if len(p.GroupBy) == 0 {
		p.GroupBy = []string{"rule"}
	}
	if p.GroupWait == 0 {
		p.GroupWait = Duration(DefaultGroupWait)
	}
	if p.GroupInterval == 0 {
		p.GroupInterval = Duration(DefaultGroupInterval)
	}
	if p.RepeatInterval == 0 {
		p.RepeatInterval = Duration(DefaultRepeatInterval)
	}
	return p
}

// Validate checks a policy before it is stored.
func (p *NotificationPolicy) Validate() error {
	switch {
	case p.ID == "" || p.TenantID == "":
		return Errorf(CodeInvalid, "a notification policy needs an ID and a tenant")
	case strings.TrimSpace(p.Name) == "" || len(p.Name) > MaxPolicyNameLen || strings.TrimSpace(p.Name) != p.Name:
		return Errorf(CodeInvalid, "policy name %q: use 1 to %d characters without surrounding spaces", p.Name, MaxPolicyNameLen)
	case p.Order < 0 || p.Order > 1_000_000:
		return Errorf(CodeInvalid, "policy order %d: want 0 to 1000000", p.Order)
	case len(p.Matchers) > MaxPolicyMatchers:
		return Errorf(CodeInvalid, "a policy has at most %d matchers", MaxPolicyMatchers)
	case len(p.Channels) > MaxPolicyChannels || len(p.EscalateChannels) > MaxPolicyChannels:
		return Errorf(CodeInvalid, "a policy names at most %d channels and %d escalation channels", MaxPolicyChannels, MaxPolicyChannels)
	case len(p.Channels) == 0 && len(p.Actions) == 0:
		return Errorf(CodeInvalid, "a policy needs channels, actions or both")
	case len(p.GroupBy) > MaxPolicyGroupBy:
		return Errorf(CodeInvalid, "a policy groups by at most %d labels", MaxPolicyGroupBy)
	case p.GroupWait < 0 || p.GroupInterval < 0 || p.RepeatInterval < 0 || p.EscalateAfter < 0:
		return Errorf(CodeInvalid, "policy durations must not be negative")
	case p.GroupInterval != 0 && p.GroupInterval.D() < time.Second, p.RepeatInterval != 0 && p.RepeatInterval.D() < time.Minute:
		return Errorf(CodeInvalid, "group_interval must be at least 1s and repeat_interval at least 1m")
	case (p.EscalateAfter > 0) != (len(p.EscalateChannels) > 0):
		return Errorf(CodeInvalid, "escalate_after and escalate_channels go together")
	case p.CreatedAt.IsZero() || p.UpdatedAt.IsZero():
		return Errorf(CodeInvalid, "a notification policy needs its creation and update times")
	}
	for _, m := range p.Matchers {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	for _, list := range [][]string{p.Channels, p.EscalateChannels} {
		if err := distinct("channel", list, func(s string) bool { return s != "" && len(s) <= 64 }); err != nil {
			return err
		}
	}
	if err := distinct("group_by label", p.GroupBy, ValidLabelName); err != nil {
		return err
	}
	return distinct("action", p.Actions, func(s string) bool { return s == PolicyActionQuarantine })
}

func distinct(what string, list []string, ok func(string) bool) error {
	seen := make(map[string]bool, len(list))
	for _, s := range list {
		if !ok(s) {
			if what == "action" {
				return Errorf(CodeInvalid, "action %q: the only action is %q", s, PolicyActionQuarantine)
			}
			return Errorf(CodeInvalid, "%s %q is not valid", what, s)
		}
		if seen[s] {
			return Errorf(CodeInvalid, "%s %q is listed twice", what, s)
		}
		seen[s] = true
	}
	return nil
}

// NotificationGroup is the durable state of one group of a policy: the
// latest notification of each of its alerts and when it is next due, so
// that grouping survives a restart. Version guards concurrent writers.
type NotificationGroup struct {
	TenantID string            `json:"tenant_id"`
	PolicyID string            `json:"policy_id"`
	GroupKey string            `json:"group_key"`
	Labels   map[string]string `json:"labels"`
	// Alerts holds the latest notification of each alert, by alert ID order.
	Alerts []Notification `json:"alerts"`
	// Changed says alerts changed since the last message.
	Changed     bool       `json:"changed"`
	NextFlushAt time.Time  `json:"next_flush_at"`
	LastSentAt  *time.Time `json:"last_sent_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	Version     int64      `json:"version"`
}

// Validate checks a group before it is stored.
func (g *NotificationGroup) Validate() error {
	switch {
	case g.TenantID == "" || g.PolicyID == "":
		return Errorf(CodeInvalid, "a notification group needs a tenant and a policy")
	case g.GroupKey == "" || len(g.GroupKey) > 1024:
		return Errorf(CodeInvalid, "a notification group needs a key of 1 to 1024 bytes")
	case g.NextFlushAt.IsZero() || g.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "a notification group needs next_flush_at and created_at")
	}
	return nil
}

// GroupMessage is the webhook body (and email content) of a policy's
// group: every alert of the group, firing ones and those resolved since
// the last message. Status is firing when any alert fires.
type GroupMessage struct {
	GroupKey string         `json:"group_key"`
	Policy   string         `json:"policy"`
	Status   string         `json:"status"`
	Alerts   []Notification `json:"alerts"`
}

// The kinds of alert actions.
const (
	AlertActionEscalate   = "escalate"
	AlertActionQuarantine = "quarantine"
)

// AlertAction is a durable once-per-alert task of a policy: an escalation
// due at DueAt, or a quarantine. DoneAt is set once it ran (or was found
// unnecessary); Result says how it went.
type AlertAction struct {
	TenantID     string          `json:"tenant_id"`
	AlertID      string          `json:"alert_id"`
	PolicyID     string          `json:"policy_id"`
	Kind         string          `json:"kind"`
	Notification json.RawMessage `json:"notification"`
	DueAt        time.Time       `json:"due_at"`
	DoneAt       *time.Time      `json:"done_at,omitempty"`
	Result       string          `json:"result,omitempty"`
	CreatedAt    time.Time       `json:"created_at"`
}

// Validate checks an action before it is stored.
func (a *AlertAction) Validate() error {
	switch {
	case a.TenantID == "" || a.AlertID == "" || a.PolicyID == "":
		return Errorf(CodeInvalid, "an alert action needs a tenant, an alert and a policy")
	case a.Kind != AlertActionEscalate && a.Kind != AlertActionQuarantine:
		return Errorf(CodeInvalid, "alert action kind %q: want escalate or quarantine", a.Kind)
	case !json.Valid(a.Notification):
		return Errorf(CodeInvalid, "an alert action's notification must be JSON")
	case a.DueAt.IsZero() || a.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "an alert action needs due_at and created_at")
	}
	return nil
}

// PolicyStore is the part of Store that keeps notification policies,
// groups and alert actions.
type PolicyStore interface {
	// CreateNotificationPolicy stores a policy (CodeInvalid when it does not
	// validate or names a channel not in its tenant, CodeConflict when its
	// name is taken in the tenant).
	CreateNotificationPolicy(ctx context.Context, p NotificationPolicy) error
	GetNotificationPolicy(ctx context.Context, tenantID, id string) (NotificationPolicy, error)
	// ListNotificationPolicies returns the tenant's policies by order, then name.
	ListNotificationPolicies(ctx context.Context, tenantID string) ([]NotificationPolicy, error)
	// UpdateNotificationPolicy replaces a policy's fields but its creation time.
	UpdateNotificationPolicy(ctx context.Context, p NotificationPolicy) error
	// DeleteNotificationPolicy deletes a policy, its groups and actions.
	DeleteNotificationPolicy(ctx context.Context, tenantID, id string) error

	// GetNotificationGroup returns one group.
	GetNotificationGroup(ctx context.Context, tenantID, policyID, groupKey string) (NotificationGroup, error)
	// PutNotificationGroup creates g (Version 0; CodeConflict when it
	// exists) or updates it when g.Version is the stored version
	// (CodeConflict otherwise); it returns g as stored, with its version.
	PutNotificationGroup(ctx context.Context, g NotificationGroup) (NotificationGroup, error)
	// DueNotificationGroups returns up to limit groups of all tenants due at now.
	DueNotificationGroups(ctx context.Context, now time.Time, limit int) ([]NotificationGroup, error)
	// DeleteNotificationGroup deletes a group at the given version
	// (CodeConflict when it changed, CodeNotFound when it is gone).
	DeleteNotificationGroup(ctx context.Context, tenantID, policyID, groupKey string, version int64) error

	// CreateAlertAction stores an action; CodeConflict when the alert
	// already has one of that kind for the policy.
	CreateAlertAction(ctx context.Context, a AlertAction) error
	// DueAlertActions returns up to limit unfinished actions of all tenants due at now.
	DueAlertActions(ctx context.Context, now time.Time, limit int) ([]AlertAction, error)
	// FinishAlertAction records that an action ran, with its result.
	FinishAlertAction(ctx context.Context, a AlertAction) error
}
