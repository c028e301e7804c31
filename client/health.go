package client

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
)

// DeviceHealth evaluates a device's health now: ok, degraded or critical,
// with the reasons worst first.
func (c *Client) DeviceHealth(ctx context.Context, id string) (steward.DeviceHealth, error) {
	var out steward.DeviceHealth
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/health", nil, nil, &out)
	return out, err
}
