package client

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
)

// ExportDevice returns everything the server holds about a device.
func (c *Client) ExportDevice(ctx context.Context, id string) (steward.DeviceExport, error) {
	var out steward.DeviceExport
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/export", nil, nil, &out)
	return out, err
}

// EraseDevice erases a device: its certificates are revoked and it and
// every row about it deleted; the tombstone comes back.
func (c *Client) EraseDevice(ctx context.Context, id string) (steward.DeviceTombstone, error) {
	var out steward.DeviceTombstone
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/erase", nil, nil, &out)
	return out, err
}

// DeviceConsent returns a device's consent.
func (c *Client) DeviceConsent(ctx context.Context, id string) (steward.DeviceConsent, error) {
	var out steward.DeviceConsent
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/consent", nil, nil, &out)
	return out, err
}

// SetDeviceConsent records whether a device belongs to a person and the
// data classes they consented to.
func (c *Client) SetDeviceConsent(ctx context.Context, id string, personal bool, granted []string) (steward.DeviceConsent, error) {
	var out steward.DeviceConsent
	if granted == nil {
		granted = []string{}
	}
	err := c.do(ctx, http.MethodPut, "/api/v1/devices/"+seg(id)+"/consent", nil,
		map[string]any{"personal": personal, "granted": granted}, &out)
	return out, err
}
