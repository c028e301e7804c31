package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// ChannelRequest creates a notification channel; Enabled nil means true.
type ChannelRequest struct {
	Name    string                 `json:"name"`
	Kind    steward.ChannelKind    `json:"kind"`
	Webhook *steward.WebhookConfig `json:"webhook,omitempty"`
	Email   *steward.EmailConfig   `json:"email,omitempty"`
	Enabled *bool                  `json:"enabled,omitempty"`
}

// Channel is a notification channel as the API shows it: without the
// webhook secret, the header values and the SMTP password.
type Channel struct {
	ID       string              `json:"id"`
	TenantID string              `json:"tenant_id"`
	Name     string              `json:"name"`
	Kind     steward.ChannelKind `json:"kind"`
	Webhook  *struct {
		URL         string   `json:"url"`
		SecretSet   bool     `json:"secret_set"`
		HeaderNames []string `json:"header_names"`
	} `json:"webhook,omitempty"`
	Email *struct {
		To          []string `json:"to"`
		From        string   `json:"from"`
		SMTPAddr    string   `json:"smtp_addr"`
		Username    string   `json:"username,omitempty"`
		PasswordSet bool     `json:"password_set"`
	} `json:"email,omitempty"`
	Enabled   bool      `json:"enabled"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateChannel creates a notification channel.
func (c *Client) CreateChannel(ctx context.Context, req ChannelRequest) (Channel, error) {
	var out Channel
	err := c.do(ctx, http.MethodPost, "/api/v1/notification-channels", nil, req, &out)
	return out, err
}

// ListChannels returns the tenant's notification channels, by name.
func (c *Client) ListChannels(ctx context.Context) ([]Channel, error) {
	var out list[Channel]
	err := c.do(ctx, http.MethodGet, "/api/v1/notification-channels", nil, nil, &out)
	return out.Items, err
}

// GetChannel returns a notification channel.
func (c *Client) GetChannel(ctx context.Context, id string) (Channel, error) {
	var out Channel
	err := c.do(ctx, http.MethodGet, "/api/v1/notification-channels/"+seg(id), nil, nil, &out)
	return out, err
}

// DeleteChannel deletes a notification channel and its delivery log.
func (c *Client) DeleteChannel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/notification-channels/"+seg(id), nil, nil, nil)
}

// TestChannel sends a test notification to a channel now and returns the
// delivery after its first attempt.
func (c *Client) TestChannel(ctx context.Context, id string) (steward.Delivery, error) {
	var out steward.Delivery
	err := c.do(ctx, http.MethodPost, "/api/v1/notification-channels/"+seg(id)+"/test", nil, nil, &out)
	return out, err
}

// ListDeliveries returns the delivery log, newest first.
func (c *Client) ListDeliveries(ctx context.Context, f steward.DeliveryFilter) ([]steward.Delivery, error) {
	v := url.Values{}
	if f.ChannelID != "" {
		v.Set("channel", f.ChannelID)
	}
	if f.Status != "" {
		v.Set("status", string(f.Status))
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.Delivery]
	err := c.do(ctx, http.MethodGet, "/api/v1/deliveries", v, nil, &out)
	return out.Items, err
}

// SilenceRequest creates a silence; a nil StartsAt means now.
type SilenceRequest struct {
	Matchers []steward.Matcher `json:"matchers"`
	StartsAt *time.Time        `json:"starts_at,omitempty"`
	EndsAt   time.Time         `json:"ends_at"`
	Comment  string            `json:"comment,omitempty"`
}

// CreateSilence creates a silence.
func (c *Client) CreateSilence(ctx context.Context, req SilenceRequest) (steward.Silence, error) {
	var out steward.Silence
	err := c.do(ctx, http.MethodPost, "/api/v1/silences", nil, req, &out)
	return out, err
}

// ListSilences returns the tenant's silences (only those active now when
// active is set), newest first.
func (c *Client) ListSilences(ctx context.Context, active bool) ([]steward.Silence, error) {
	var v url.Values
	if active {
		v = url.Values{"active": {"true"}}
	}
	var out list[steward.Silence]
	err := c.do(ctx, http.MethodGet, "/api/v1/silences", v, nil, &out)
	return out.Items, err
}

// ExpireSilence ends a silence now.
func (c *Client) ExpireSilence(ctx context.Context, id string) (steward.Silence, error) {
	var out steward.Silence
	err := c.do(ctx, http.MethodDelete, "/api/v1/silences/"+seg(id), nil, nil, &out)
	return out, err
}
