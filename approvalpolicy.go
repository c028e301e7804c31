package steward

import (
	"context"
	"math"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of approval policies and requests.
const (
	// MaxApprovers is the most approvals a policy may demand.
	MaxApprovers = 10
	// MinApprovalExpiry and MaxApprovalExpiry bound how long a request
	// waits for its approvers; DefaultApprovalExpiry is used when a policy
	// gives none.
	MinApprovalExpiry     = time.Minute
	MaxApprovalExpiry     = 30 * 24 * time.Hour
	DefaultApprovalExpiry = 24 * time.Hour
	// MaxApprovalConditions is the most conditions a policy may have.
	MaxApprovalConditions = 16
	// MaxApprovalPayload is the largest payload a request may carry.
	MaxApprovalPayload = 64 << 10
)

// ApprovalPolicy says which actions of a tenant need approval, when, and by
// whom. A policy applies to an action when its pattern matches the action's
// name and every one of its conditions holds on the action's attributes.
type ApprovalPolicy struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	Name     string `json:"name"`
	// Action is an action name ("device.decommission"), a prefix pattern
	// ending in ".*" ("deployment.*"), or "*" for every action.
	Action string `json:"action"`
	// Conditions must all hold for the policy to apply; none means always.
	Conditions []ApprovalCondition `json:"conditions"`
	// Approvals is how many distinct approvers a request needs, 1 to
	// MaxApprovers.
	Approvals int `json:"approvals"`
	// ApproverPermission is what an approver must hold besides
	// PermApprovalsDecide (empty: nothing more).
	ApproverPermission Permission `json:"approver_permission,omitempty"`
	// ApproverRole, when set, is the role an approver must have.
	ApproverRole Role `json:"approver_role,omitempty"`
	// Expiry is how long a request waits for its decisions (0: the default,
	// 24 h).
	Expiry    Duration  `json:"expiry"`
	CreatedBy string    `json:"created_by,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// ApprovalCondition is one test on an action's attributes: the attribute's
// value compared with Value. "=" and "!=" compare text; the ordering
// operators compare numbers, and do not hold when either side is not one.
// An attribute the action does not report makes every condition on it fail
// but "!=", so callers pass every attribute they know ("emergency":
// "false", not nothing).
type ApprovalCondition struct {
	// Attribute names what is tested: "device_count", "emergency",
	// "label.environment", ….
	Attribute string `json:"attribute"`
	Op        string `json:"op"` // =, !=, >, >=, <, <=
	Value     string `json:"value"`
}

// approvalActionPattern is an action name or prefix pattern.
var approvalActionPattern = regexp.MustCompile(`^(\*|[a-z][a-z0-9_-]*(\.[a-z][a-z0-9_-]*)*(\.\*)?)$`)

// approvalAttributePattern is an attribute name.
var approvalAttributePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.\-/]{0,127}$`)

// Validate checks a policy as the store keeps it.
func (p *ApprovalPolicy) Validate() error {
	switch {
	case p.ID == "" || p.TenantID == "":
		return Errorf(CodeInvalid, "an approval policy needs an ID and a tenant")
	case p.Name == "" || utf8.RuneCountInString(p.Name) > 128 || !utf8.ValidString(p.Name):
		return Errorf(CodeInvalid, "approval policy name must be 1 to 128 characters of UTF-8")
	case !approvalActionPattern.MatchString(p.Action):
		return Errorf(CodeInvalid, "approval policy action %q: want an action such as device.decommission, a pattern such as deployment.*, or *", p.Action)
	case p.Approvals < 1 || p.Approvals > MaxApprovers:
		return Errorf(CodeInvalid, "approvals must be 1 to %d, not %d", MaxApprovers, p.Approvals)
	case p.ApproverPermission != "" && !p.ApproverPermission.Valid():
		return Errorf(CodeInvalid, "approver permission %q is not a permission", p.ApproverPermission)
	case p.ApproverRole != "" && !p.ApproverRole.builtin():
		return Errorf(CodeInvalid, "approver role %q is not a role", p.ApproverRole)
	case p.Expiry != 0 && (p.Expiry.D() < MinApprovalExpiry || p.Expiry.D() > MaxApprovalExpiry):
		return Errorf(CodeInvalid, "expiry must be from %s to %s, not %s", MinApprovalExpiry, MaxApprovalExpiry, p.Expiry.D())
	case len(p.Conditions) > MaxApprovalConditions:
		return Errorf(CodeInvalid, "an approval policy has at most %d conditions", MaxApprovalConditions)
	}
	for i, c := range p.Conditions {
		if err := c.validate(); err != nil {
			return WrapError(CodeInvalid, err, "condition %d: %s", i+1, ErrorMessage(err))
		}
	}
	return nil
}

func (r Role) builtin() bool { _, ok := builtinRoles[r]; return ok }

func (c ApprovalCondition) validate() error {
	if !approvalAttributePattern.MatchString(c.Attribute) {
		return Errorf(CodeInvalid, "attribute %q: use 1 to 128 letters, digits, '_', '.', '-', '/'", c.Attribute)
	}
	switch c.Op {
	case "=", "!=":
	case ">", ">=", "<", "<=":
		if _, ok := approvalNumber(c.Value); !ok {
			return Errorf(CodeInvalid, "%s %s %q: an ordering needs a number", c.Attribute, c.Op, c.Value)
		}
	default:
		return Errorf(CodeInvalid, "operator %q: want =, !=, >, >=, < or <=", c.Op)
	}
	if len(c.Value) > 256 {
		return Errorf(CodeInvalid, "a condition's value is at most 256 bytes")
	}
	return nil
}

func approvalNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return f, err == nil && !math.IsNaN(f) && !math.IsInf(f, 0)
}

// Holds reports whether the condition holds on attrs.
func (c ApprovalCondition) Holds(attrs map[string]string) bool {
	v, ok := attrs[c.Attribute]
	if !ok {
		return c.Op == "!="
	}
	switch c.Op {
	case "=":
		return v == c.Value
	case "!=":
		return v != c.Value
	}
	a, ok1 := approvalNumber(v)
	b, ok2 := approvalNumber(c.Value)
	if !ok1 || !ok2 {
		return false
	}
	switch c.Op {
	case ">":
		return a > b
	case ">=":
		return a >= b
	case "<":
		return a < b
	case "<=":
		return a <= b
	}
	return false
}

// MatchesAction reports whether the policy's pattern matches action.
func (p *ApprovalPolicy) MatchesAction(action string) bool {
	switch {
	case p.Action == "*":
		return true
	case strings.HasSuffix(p.Action, ".*"):
		return strings.HasPrefix(action, strings.TrimSuffix(p.Action, "*"))
	}
	return p.Action == action
}

// Applies reports whether the policy applies to action with attrs.
func (p *ApprovalPolicy) Applies(action string, attrs map[string]string) bool {
	if !p.MatchesAction(action) {
		return false
	}
	for _, c := range p.Conditions {
		if !c.Holds(attrs) {
			return false
		}
	}
	return true
}

// ExpiryOrDefault returns the policy's expiry, or the default.
func (p *ApprovalPolicy) ExpiryOrDefault() time.Duration {
	if p.Expiry == 0 {
		return DefaultApprovalExpiry
	}
	return p.Expiry.D()
}

// ApprovalFilter narrows a list of approval requests.
type ApprovalFilter struct {
	State  string // pending, approved, rejected, expired; empty: all
	Action string // only this action
	Limit  int    // 0: the store's default (100); at most 1000
}

// ApprovalStore is the part of Store that keeps approval policies and
// requests.
type ApprovalStore interface {
	// CreateApprovalPolicy stores a policy (CodeInvalid when it does not
	// validate, CodeConflict when its name is taken in the tenant,
	// CodeNotFound for an unknown tenant).
	CreateApprovalPolicy(ctx context.Context, p ApprovalPolicy) error
	GetApprovalPolicy(ctx context.Context, tenantID, id string) (ApprovalPolicy, error)
	// ListApprovalPolicies returns the tenant's policies, by name.
	ListApprovalPolicies(ctx context.Context, tenantID string) ([]ApprovalPolicy, error)
	DeleteApprovalPolicy(ctx context.Context, tenantID, id string) error

	// CreateApprovalRequest stores a new request (CodeInvalid when it has no
	// ID, tenant, action, target or requester, or a state other than
	// pending; CodeNotFound for an unknown tenant).
	CreateApprovalRequest(ctx context.Context, r ApprovalRequest) error
	GetApprovalRequest(ctx context.Context, tenantID, id string) (ApprovalRequest, error)
	// ListApprovalRequests returns the tenant's requests matching f,
	// newest first.
	ListApprovalRequests(ctx context.Context, tenantID string, f ApprovalFilter) ([]ApprovalRequest, error)
	// UpdateApprovalRequest changes a request atomically: it locks the
	// row, reads it, calls fn, and writes back its state and decisions
	// when fn returns nil (nothing when fn fails, whose error it returns).
	// Two calls on one request never interleave, so that two approvers
	// deciding at once are both counted.
	UpdateApprovalRequest(ctx context.Context, tenantID, id string, fn func(r *ApprovalRequest) error) (ApprovalRequest, error)
	// ExpireApprovalRequests marks expired the pending requests whose
	// expiry is at or before now, of one tenant or, with tenantID "", of
	// all (a system job), and returns how many.
	ExpireApprovalRequests(ctx context.Context, tenantID string, now time.Time) (int, error)
}
