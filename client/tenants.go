package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/steward-iot/steward"
)

// GetTenant returns a tenant with its status (system tokens only).
func (c *Client) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	var out steward.Tenant
	err := c.do(ctx, http.MethodGet, "/api/v1/tenants/"+seg(id), nil, nil, &out)
	return out, err
}

// tenantStatusBody is the body of a suspension.
type tenantStatusBody struct {
	Reason string `json:"reason,omitempty"`
}

// SuspendTenant suspends a tenant: its tokens, sessions and devices are
// refused and its devices' live sessions closed; its data is kept.
func (c *Client) SuspendTenant(ctx context.Context, id, reason string) (steward.Tenant, error) {
	var out steward.Tenant
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants/"+seg(id)+"/suspend", nil, tenantStatusBody{reason}, &out)
	return out, err
}

// ResumeTenant makes a suspended tenant active again.
func (c *Client) ResumeTenant(ctx context.Context, id string) (steward.Tenant, error) {
	var out steward.Tenant
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants/"+seg(id)+"/resume", nil, nil, &out)
	return out, err
}

// DeleteTenant deletes a tenant and all its data. When an approval policy
// covers the deletion it deletes nothing and returns the approval request
// opened (deleted false); once others approve it, call again with its ID
// as approvalID.
func (c *Client) DeleteTenant(ctx context.Context, id, approvalID, reason string) (deleted bool, approval *steward.ApprovalRequest, err error) {
	q := url.Values{}
	if approvalID != "" {
		q.Set("approval", approvalID)
	}
	if reason != "" {
		q.Set("reason", reason)
	}
	path := "/api/v1/tenants/" + seg(id)
	body, err := c.send(ctx, http.MethodDelete, path, q, nil, "application/json")
	if err != nil {
		return false, nil, err
	}
	if len(body) == 0 { // 204: deleted
		return true, nil, nil
	}
	var r steward.ApprovalRequest
	if err := json.Unmarshal(body, &r); err != nil {
		return false, nil, fmt.Errorf("DELETE %s: decode answer: %w", path, err)
	}
	return false, &r, nil
}
