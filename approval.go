package steward

import (
	"context"
	"encoding/json"
	"time"
)

// Approval request states.
const (
	ApprovalPending  = "pending"
	ApprovalApproved = "approved"
	ApprovalRejected = "rejected"
	ApprovalExpired  = "expired"
)

// ApprovalRequest is an action waiting for a second person (the two-person
// rule). Deployments, policy changes, role grants, bulk quarantine and
// decommissioning all go through the one mechanism.
type ApprovalRequest struct {
	ID       string `json:"id"`
	TenantID string `json:"tenant_id"`
	// Action is what needs approval, in the audit log's "resource.verb"
	// form: "deployment.start", "device.decommission", "role.grant".
	Action string `json:"action"`
	// Target is what it applies to: "deployment:ID", "device:ID".
	Target string `json:"target"`
	// Payload is what the action will do once approved, as the requesting
	// service needs it back.
	Payload   json.RawMessage `json:"payload,omitempty"`
	Reason    string          `json:"reason,omitempty"`
	Requester string          `json:"requester"` // an actor, as in AuditRecord
	// Attributes are what the action was judged on ("device_count",
	// "emergency", "label.environment"): Request matches the tenant's
	// policies on them again, and approvers see them.
	Attributes map[string]string `json:"attributes,omitempty"`
	// Approvals is how many distinct approvers it needs (at least 1):
	// Request raises it to what the strictest matching policy demands.
	Approvals int `json:"approvals"`
	// PolicyID is the policy that set the requirement, if one did, and
	// ApproverPermission and ApproverRole are what that policy asks of an
	// approver besides PermApprovalsDecide.
	PolicyID           string     `json:"policy_id,omitempty"`
	ApproverPermission Permission `json:"approver_permission,omitempty"`
	ApproverRole       Role       `json:"approver_role,omitempty"`
	State              string     `json:"state"`
	Decisions          []Decision `json:"decisions"`
	CreatedAt          time.Time  `json:"created_at"`
	ExpiresAt          time.Time  `json:"expires_at"`
}

// Decision is one approver's answer to an ApprovalRequest.
type Decision struct {
	Approver string    `json:"approver"`
	Approve  bool      `json:"approve"`
	Comment  string    `json:"comment,omitempty"`
	At       time.Time `json:"at"`
}

// Approvals is the two-person rule. The requester may never decide their
// own request, and a request that is not decided before it expires is
// expired, never approved.
type Approvals interface {
	// Required reports how many approvals the tenant's policies demand for
	// action on target (0: none), and why.
	Required(ctx context.Context, tenantID, action, target string, attrs map[string]string) (n int, why string, err error)
	// Request opens a request; the caller acts once it is approved.
	Request(ctx context.Context, r ApprovalRequest) (ApprovalRequest, error)
	// Decide records an approver's decision; CodePermissionDenied when the
	// approver is the requester or has already decided, CodeConflict when
	// the request is no longer pending.
	Decide(ctx context.Context, tenantID, id string, d Decision) (ApprovalRequest, error)
	Get(ctx context.Context, tenantID, id string) (ApprovalRequest, error)
}
