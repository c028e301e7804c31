package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/steward-iot/steward"
)

// ApprovalPolicyRequest creates an approval policy: which actions need
// approval (Action: "deployment.*"), when (Conditions on the action's
// attributes), by how many approvers, holding what, and how long a request
// waits (Expiry 0: 24 h).
type ApprovalPolicyRequest struct {
	Name               string                      `json:"name"`
	Action             string                      `json:"action"`
	Conditions         []steward.ApprovalCondition `json:"conditions,omitempty"`
	Approvals          int                         `json:"approvals"`
	ApproverPermission steward.Permission          `json:"approver_permission,omitempty"`
	ApproverRole       steward.Role                `json:"approver_role,omitempty"`
	Expiry             steward.Duration            `json:"expiry,omitempty"`
}

// CreateApprovalPolicy creates an approval policy.
func (c *Client) CreateApprovalPolicy(ctx context.Context, req ApprovalPolicyRequest) (steward.ApprovalPolicy, error) {
	var out steward.ApprovalPolicy
	err := c.do(ctx, http.MethodPost, "/api/v1/approval-policies", nil, req, &out)
	return out, err
}

// ListApprovalPolicies returns the tenant's approval policies, by name.
func (c *Client) ListApprovalPolicies(ctx context.Context) ([]steward.ApprovalPolicy, error) {
	var out list[steward.ApprovalPolicy]
	err := c.do(ctx, http.MethodGet, "/api/v1/approval-policies", nil, nil, &out)
	return out.Items, err
}

// GetApprovalPolicy returns an approval policy.
func (c *Client) GetApprovalPolicy(ctx context.Context, id string) (steward.ApprovalPolicy, error) {
	var out steward.ApprovalPolicy
	err := c.do(ctx, http.MethodGet, "/api/v1/approval-policies/"+seg(id), nil, nil, &out)
	return out, err
}

// DeleteApprovalPolicy deletes an approval policy.
func (c *Client) DeleteApprovalPolicy(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/approval-policies/"+seg(id), nil, nil, nil)
}

// ListApprovals returns the tenant's approval requests matching f, newest
// first.
func (c *Client) ListApprovals(ctx context.Context, f steward.ApprovalFilter) ([]steward.ApprovalRequest, error) {
	q := url.Values{}
	if f.State != "" {
		q.Set("state", f.State)
	}
	if f.Action != "" {
		q.Set("action", f.Action)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.ApprovalRequest]
	err := c.do(ctx, http.MethodGet, "/api/v1/approvals", q, nil, &out)
	return out.Items, err
}

// GetApproval returns an approval request with its decisions.
func (c *Client) GetApproval(ctx context.Context, id string) (steward.ApprovalRequest, error) {
	var out steward.ApprovalRequest
	err := c.do(ctx, http.MethodGet, "/api/v1/approvals/"+seg(id), nil, nil, &out)
	return out, err
}

// decisionBody is the body of an approve or reject.
type decisionBody struct {
	Comment string `json:"comment,omitempty"`
}

// Approve approves a request as the caller, with an optional comment.
func (c *Client) Approve(ctx context.Context, id, comment string) (steward.ApprovalRequest, error) {
	var out steward.ApprovalRequest
	err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+seg(id)+"/approve", nil, decisionBody{comment}, &out)
	return out, err
}

// Reject rejects a request as the caller, with an optional comment.
func (c *Client) Reject(ctx context.Context, id, comment string) (steward.ApprovalRequest, error) {
	var out steward.ApprovalRequest
	err := c.do(ctx, http.MethodPost, "/api/v1/approvals/"+seg(id)+"/reject", nil, decisionBody{comment}, &out)
	return out, err
}
