package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// CAStatus lists the tenant's device CA generations (GET /api/v1/ca/status).
func (c *Client) CAStatus(ctx context.Context) ([]steward.CAGenerationInfo, error) {
	var out struct {
		Items []steward.CAGenerationInfo `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/ca/status", nil, nil, &out)
	return out.Items, err
}

// RotateCA rotates the tenant's device CA with an overlap (POST
// /api/v1/ca/rotate). When an approval policy applies, the answer carries
// the approval request instead; call again with its ID once approved.
func (c *Client) RotateCA(ctx context.Context, overlap time.Duration, approvalID string) (steward.CARotation, error) {
	var out steward.CARotation
	err := c.do(ctx, http.MethodPost, "/api/v1/ca/rotate", nil,
		map[string]string{"overlap": overlap.String(), "approval_id": approvalID}, &out)
	return out, err
}

// MigrateCA sends rotate-credentials to every device still on an older
// device CA (POST /api/v1/ca/migrate).
func (c *Client) MigrateCA(ctx context.Context) (steward.CAMigration, error) {
	var out steward.CAMigration
	err := c.do(ctx, http.MethodPost, "/api/v1/ca/migrate", nil, nil, &out)
	return out, err
}

// RetireOldCA stops trusting the previous device CA (POST
// /api/v1/ca/retire-old).
func (c *Client) RetireOldCA(ctx context.Context) ([]steward.CAGenerationInfo, error) {
	var out struct {
		Items []steward.CAGenerationInfo `json:"items"`
	}
	err := c.do(ctx, http.MethodPost, "/api/v1/ca/retire-old", nil, nil, &out)
	return out.Items, err
}

// CRL returns the tenant's CRL, DER, of its active device CA or of the CA
// whose key ID is issuer (GET /api/v1/crl).
func (c *Client) CRL(ctx context.Context, issuer string) ([]byte, error) {
	var q url.Values
	if issuer != "" {
		q = url.Values{"issuer": {issuer}}
	}
	return c.send(ctx, http.MethodGet, "/api/v1/crl", q, nil, "application/pkix-crl")
}

// ExpiringCertificates lists the certificates that expire within days
// (GET /api/v1/certificates/expiring).
func (c *Client) ExpiringCertificates(ctx context.Context, days, limit int) ([]steward.Certificate, error) {
	q := url.Values{"days": {strconv.Itoa(days)}}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Items []steward.Certificate `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/certificates/expiring", q, nil, &out)
	return out.Items, err
}

// RevokeCertificate revokes one certificate (POST
// /api/v1/certificates/{serial}/revoke).
func (c *Client) RevokeCertificate(ctx context.Context, serial string, reason steward.RevocationReason) (steward.Certificate, error) {
	var out steward.Certificate
	err := c.do(ctx, http.MethodPost, "/api/v1/certificates/"+url.PathEscape(serial)+"/revoke", nil, map[string]string{"reason": string(reason)}, &out)
	return out, err
}

// RevokeGroup revokes every device of an enrollment group (POST
// /api/v1/enrollment-groups/{id}/revoke).
func (c *Client) RevokeGroup(ctx context.Context, groupID, reason string) (steward.GroupRevocation, error) {
	var out steward.GroupRevocation
	err := c.do(ctx, http.MethodPost, "/api/v1/enrollment-groups/"+url.PathEscape(groupID)+"/revoke", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// RevokeManufacturerCA refuses further enrollment with a group's
// manufacturer CA and, with devices, revokes its devices (POST
// /api/v1/enrollment-groups/{id}/revoke-ca).
func (c *Client) RevokeManufacturerCA(ctx context.Context, groupID, reason string, devices bool) (steward.GroupRevocation, error) {
	var out steward.GroupRevocation
	err := c.do(ctx, http.MethodPost, "/api/v1/enrollment-groups/"+url.PathEscape(groupID)+"/revoke-ca", nil,
		map[string]any{"reason": reason, "revoke_devices": devices}, &out)
	return out, err
}

// RotateCredentials rotates a connected device's key and certificate (POST
// /api/v1/devices/{id}/rotate-credentials).
func (c *Client) RotateCredentials(ctx context.Context, deviceID string) (steward.CredentialRotation, error) {
	var out steward.CredentialRotation
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(deviceID)+"/rotate-credentials", nil, nil, &out)
	return out, err
}

// Decommission decommissions a device (POST /api/v1/devices/{id}/decommission).
// When an approval policy applies, the answer carries the approval request;
// call again with its ID once approved.
func (c *Client) Decommission(ctx context.Context, deviceID string, r steward.DecommissionRequest) (steward.DecommissionResult, error) {
	var out steward.DecommissionResult
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(deviceID)+"/decommission", nil, r, &out)
	return out, err
}

// Transfer hands a device to another owner (POST /api/v1/devices/{id}/transfer).
func (c *Client) Transfer(ctx context.Context, deviceID string, r steward.TransferRequest) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+url.PathEscape(deviceID)+"/transfer", nil, r, &out)
	return out, err
}

// Decommissions lists decommissioning records, of one device when deviceID
// is set (GET /api/v1/decommissions).
func (c *Client) Decommissions(ctx context.Context, deviceID string) ([]steward.Decommission, error) {
	var q url.Values
	if deviceID != "" {
		q = url.Values{"device": {deviceID}}
	}
	var out struct {
		Items []steward.Decommission `json:"items"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/decommissions", q, nil, &out)
	return out.Items, err
}

// GetDecommission returns a decommissioning record (GET /api/v1/decommissions/{id}).
func (c *Client) GetDecommission(ctx context.Context, id string) (steward.Decommission, error) {
	var out steward.Decommission
	err := c.do(ctx, http.MethodGet, "/api/v1/decommissions/"+url.PathEscape(id), nil, nil, &out)
	return out, err
}

// DecommissionCertificate returns a decommissioning certificate, PEM (GET
// /api/v1/decommissions/{id}/certificate).
func (c *Client) DecommissionCertificate(ctx context.Context, id string) ([]byte, error) {
	return c.send(ctx, http.MethodGet, "/api/v1/decommissions/"+url.PathEscape(id)+"/certificate", nil, nil, "application/pkcs7-mime")
}
