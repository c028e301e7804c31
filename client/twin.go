package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/steward-iot/steward"
)

// ConfigTemplateRequest creates a configuration template.
type ConfigTemplateRequest struct {
	Name        string              `json:"name"`
	Layer       steward.ConfigLayer `json:"layer"`
	Selector    string              `json:"selector,omitempty"`
	Description string              `json:"description,omitempty"`
}

// ConfigVersionRequest makes a new version of a template.
type ConfigVersionRequest struct {
	Document json.RawMessage `json:"document"`
	Schema   json.RawMessage `json:"schema,omitempty"`
	Message  string          `json:"message"`
}

// Drift is the tenant's drifted devices and how many there are.
type Drift struct {
	Items     []steward.Twin `json:"items"`
	Count     int            `json:"count"`
	NextAfter string         `json:"next_after,omitempty"`
}

// CreateConfigTemplate creates a template.
func (c *Client) CreateConfigTemplate(ctx context.Context, req ConfigTemplateRequest) (steward.ConfigTemplate, error) {
	var out steward.ConfigTemplate
	err := c.do(ctx, http.MethodPost, "/api/v1/config-templates", nil, req, &out)
	return out, err
}

// ListConfigTemplates returns the templates in the order their layers apply.
func (c *Client) ListConfigTemplates(ctx context.Context) ([]steward.ConfigTemplate, error) {
	var out list[steward.ConfigTemplate]
	err := c.do(ctx, http.MethodGet, "/api/v1/config-templates", nil, nil, &out)
	return out.Items, err
}

// GetConfigTemplate returns a template.
func (c *Client) GetConfigTemplate(ctx context.Context, id string) (steward.ConfigTemplate, error) {
	var out steward.ConfigTemplate
	err := c.do(ctx, http.MethodGet, "/api/v1/config-templates/"+seg(id), nil, nil, &out)
	return out, err
}

// UpdateConfigTemplate renames a template or changes its description; nil
// leaves a field as it is.
func (c *Client) UpdateConfigTemplate(ctx context.Context, id string, name, description *string) (steward.ConfigTemplate, error) {
	var out steward.ConfigTemplate
	body := map[string]*string{}
	if name != nil {
		body["name"] = name
	}
	if description != nil {
		body["description"] = description
	}
	err := c.do(ctx, http.MethodPatch, "/api/v1/config-templates/"+seg(id), nil, body, &out)
	return out, err
}

// DeleteConfigTemplate deletes a template without versions.
func (c *Client) DeleteConfigTemplate(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/config-templates/"+seg(id), nil, nil, nil)
}

// CreateConfigVersion makes a new immutable version of a template.
func (c *Client) CreateConfigVersion(ctx context.Context, templateID string, req ConfigVersionRequest) (steward.ConfigVersion, error) {
	var out steward.ConfigVersion
	err := c.do(ctx, http.MethodPost, "/api/v1/config-templates/"+seg(templateID)+"/versions", nil, req, &out)
	return out, err
}

// ListConfigVersions returns a template's versions, newest first.
func (c *Client) ListConfigVersions(ctx context.Context, templateID string) ([]steward.ConfigVersion, error) {
	var out list[steward.ConfigVersion]
	err := c.do(ctx, http.MethodGet, "/api/v1/config-templates/"+seg(templateID)+"/versions", nil, nil, &out)
	return out.Items, err
}

// GetConfigVersion returns a version.
func (c *Client) GetConfigVersion(ctx context.Context, id string) (steward.ConfigVersion, error) {
	var out steward.ConfigVersion
	err := c.do(ctx, http.MethodGet, "/api/v1/config-versions/"+seg(id), nil, nil, &out)
	return out, err
}

// DiffConfigVersion lists what changed to version id from version against
// (empty: the version before it in its template).
func (c *Client) DiffConfigVersion(ctx context.Context, id, against string) ([]steward.ConfigChange, error) {
	var q url.Values
	if against != "" {
		q = url.Values{"against": {against}}
	}
	var out list[steward.ConfigChange]
	err := c.do(ctx, http.MethodGet, "/api/v1/config-versions/"+seg(id)+"/diff", q, nil, &out)
	return out.Items, err
}

// GetTwin returns a device's twin.
func (c *Client) GetTwin(ctx context.Context, deviceID string) (steward.Twin, error) {
	var out steward.Twin
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(deviceID)+"/twin", nil, nil, &out)
	return out, err
}

// PatchTwin applies a JSON merge patch to one device's desired
// configuration. With ifMatch set, a twin no longer at that desired
// version is not changed (an *Error with HTTP 412, CodeFailedPrecondition).
func (c *Client) PatchTwin(ctx context.Context, deviceID string, patch json.RawMessage, ifMatch *int64) (steward.Twin, error) {
	var out steward.Twin
	path := "/api/v1/devices/" + seg(deviceID) + "/twin"
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, c.base+path, bytes.NewReader(patch))
	if err != nil {
		return out, fmt.Errorf("PATCH %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "steward-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if ifMatch != nil {
		req.Header.Set("If-Match", strconv.Quote(strconv.FormatInt(*ifMatch, 10)))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return out, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return out, fmt.Errorf("PATCH %s: read answer: %w", path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return out, problemError(resp, body)
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return out, fmt.Errorf("PATCH %s: decode answer: %w", path, err)
	}
	return out, nil
}

// ApplyConfigVersion makes a version part of one device's desired state.
func (c *Client) ApplyConfigVersion(ctx context.Context, deviceID, versionID string) (steward.Twin, error) {
	var out steward.Twin
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(deviceID)+"/twin/apply", nil, map[string]string{"version_id": versionID}, &out)
	return out, err
}

// Drift returns the devices flagged as drifted (a page after after, up to
// limit; 0 is the server's default) and how many there are.
func (c *Client) Drift(ctx context.Context, after string, limit int) (Drift, error) {
	q := url.Values{}
	if after != "" {
		q.Set("after", after)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	var out Drift
	err := c.do(ctx, http.MethodGet, "/api/v1/drift", q, nil, &out)
	if out.Items == nil {
		out.Items = []steward.Twin{}
	}
	return out, err
}
