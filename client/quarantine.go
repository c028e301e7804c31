package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/steward-iot/steward"
)

// QuarantinePolicy returns the tenant's quarantine policy (the default
// when it never set one).
func (c *Client) QuarantinePolicy(ctx context.Context) (steward.QuarantinePolicy, error) {
	var out steward.QuarantinePolicy
	err := c.do(ctx, http.MethodGet, "/api/v1/quarantine-policy", nil, nil, &out)
	return out, err
}

// SetQuarantinePolicy replaces the tenant's quarantine policy with body, a
// JSON object of may_publish, may_subscribe, rules and webhook_channel in
// which a field left out takes its default. It is sent as given, so that
// what it leaves out stays left out.
func (c *Client) SetQuarantinePolicy(ctx context.Context, body json.RawMessage) (steward.QuarantinePolicy, error) {
	var out steward.QuarantinePolicy
	err := c.do(ctx, http.MethodPut, "/api/v1/quarantine-policy", nil, body, &out)
	return out, err
}
