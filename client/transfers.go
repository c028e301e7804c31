package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/steward-iot/steward"
)

// TransferToTenant starts the transfer of a device to another tenant
// (POST /api/v1/devices/{id}/tenant-transfer). The result carries the
// one-time code for the target tenant, or the approval the transfer waits
// for.
func (c *Client) TransferToTenant(ctx context.Context, deviceID string, r steward.TenantTransferRequest) (steward.TenantTransferResult, error) {
	var out steward.TenantTransferResult
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(deviceID)+"/tenant-transfer", nil, r, &out)
	return out, err
}

// AcceptTransfer takes a device into the caller's tenant with the code
// the source tenant gave (POST /api/v1/transfer-acceptances).
func (c *Client) AcceptTransfer(ctx context.Context, code string) (steward.TransferAcceptance, error) {
	var out steward.TransferAcceptance
	err := c.do(ctx, http.MethodPost, "/api/v1/transfer-acceptances", nil, map[string]string{"code": code}, &out)
	return out, err
}

// CancelTransfer cancels a pending transfer (POST
// /api/v1/device-transfers/{id}/cancel).
func (c *Client) CancelTransfer(ctx context.Context, id string) (steward.DeviceTransfer, error) {
	var out steward.DeviceTransfer
	err := c.do(ctx, http.MethodPost, "/api/v1/device-transfers/"+url.PathEscape(id)+"/cancel", nil, nil, &out)
	return out, err
}

// GetTransfer returns one of the tenant's outgoing transfers (GET
// /api/v1/device-transfers/{id}).
func (c *Client) GetTransfer(ctx context.Context, id string) (steward.DeviceTransfer, error) {
	var out steward.DeviceTransfer
	err := c.do(ctx, http.MethodGet, "/api/v1/device-transfers/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// Transfers lists the tenant's outgoing transfers, of one device when
// deviceID is set, or with incoming those it accepted (GET
// /api/v1/device-transfers).
func (c *Client) Transfers(ctx context.Context, deviceID string, incoming bool) ([]steward.DeviceTransfer, error) {
	q := url.Values{}
	if incoming {
		q.Set("direction", "incoming")
	}
	if deviceID != "" {
		q.Set("device", deviceID)
	}
	var out struct {
		Items []steward.DeviceTransfer `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/device-transfers", q, nil, &out)
	return out.Items, err
}
