package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/steward-iot/steward"
)

// PolicyRequest creates or replaces a notification policy (see
// steward.NotificationPolicy); zero durations and an empty group_by take
// the defaults when the policy is used. It is also the JSON file the CLI
// reads.
type PolicyRequest struct {
	Name             string            `json:"name"`
	Order            int               `json:"order"`
	Matchers         []steward.Matcher `json:"matchers,omitempty"`
	Channels         []string          `json:"channels,omitempty"`
	GroupBy          []string          `json:"group_by,omitempty"`
	GroupWait        steward.Duration  `json:"group_wait,omitempty"`
	GroupInterval    steward.Duration  `json:"group_interval,omitempty"`
	RepeatInterval   steward.Duration  `json:"repeat_interval,omitempty"`
	Continue         bool              `json:"continue,omitempty"`
	EscalateAfter    steward.Duration  `json:"escalate_after,omitempty"`
	EscalateChannels []string          `json:"escalate_channels,omitempty"`
	Actions          []string          `json:"actions,omitempty"`
}

const policiesPath = "/api/v1/notification-policies"

// CreatePolicy creates a notification policy.
func (c *Client) CreatePolicy(ctx context.Context, req PolicyRequest) (steward.NotificationPolicy, error) {
	var out steward.NotificationPolicy
	err := c.do(ctx, http.MethodPost, policiesPath, nil, req, &out)
	return out, err
}

// ListPolicies returns the tenant's notification policies in the order
// they are tried.
func (c *Client) ListPolicies(ctx context.Context) ([]steward.NotificationPolicy, error) {
	var out list[steward.NotificationPolicy]
	err := c.do(ctx, http.MethodGet, policiesPath, nil, nil, &out)
	return out.Items, err
}

// GetPolicy returns a notification policy.
func (c *Client) GetPolicy(ctx context.Context, id string) (steward.NotificationPolicy, error) {
	var out steward.NotificationPolicy
	err := c.do(ctx, http.MethodGet, policiesPath+"/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// UpdatePolicy replaces a notification policy's fields.
func (c *Client) UpdatePolicy(ctx context.Context, id string, req PolicyRequest) (steward.NotificationPolicy, error) {
	var out steward.NotificationPolicy
	err := c.do(ctx, http.MethodPut, policiesPath+"/"+url.PathEscape(id), nil, req, &out)
	return out, err
}

// DeletePolicy deletes a notification policy, its groups and actions.
func (c *Client) DeletePolicy(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, policiesPath+"/"+url.PathEscape(id), nil, nil, nil)
}
