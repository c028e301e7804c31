package client

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
)

// PutTelemetrySchema creates or replaces the telemetry schema of a model:
// the metric names and prefixes ("biz.*") its devices may send. An empty
// allow list allows nothing.
func (c *Client) PutTelemetrySchema(ctx context.Context, model string, allow []string) (steward.TelemetrySchema, error) {
	if allow == nil {
		allow = []string{}
	}
	req := struct {
		Allow []string `json:"allow"`
	}{allow}
	var out steward.TelemetrySchema
	err := c.do(ctx, http.MethodPut, "/api/v1/telemetry-schemas/"+seg(model), nil, req, &out)
	return out, err
}

// GetTelemetrySchema returns the telemetry schema of a model.
func (c *Client) GetTelemetrySchema(ctx context.Context, model string) (steward.TelemetrySchema, error) {
	var out steward.TelemetrySchema
	err := c.do(ctx, http.MethodGet, "/api/v1/telemetry-schemas/"+seg(model), nil, nil, &out)
	return out, err
}

// ListTelemetrySchemas returns the tenant's telemetry schemas, by model.
func (c *Client) ListTelemetrySchemas(ctx context.Context) ([]steward.TelemetrySchema, error) {
	var out list[steward.TelemetrySchema]
	err := c.do(ctx, http.MethodGet, "/api/v1/telemetry-schemas", nil, nil, &out)
	return out.Items, err
}

// DeleteTelemetrySchema deletes the telemetry schema of a model: its
// devices may send any metric again.
func (c *Client) DeleteTelemetrySchema(ctx context.Context, model string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/telemetry-schemas/"+seg(model), nil, nil, nil)
}
