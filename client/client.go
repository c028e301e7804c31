// Package client is the Go client of Steward's management plane REST API
// (/api/v1). Each method is one API operation and returns the root
// package's types; a refusal from the server is a *Error carrying the HTTP
// status and the problem document's code and detail.
//
// The package depends only on the root package, so that programs that talk
// to Steward do not link the server.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// maxResponseBytes bounds what the client reads of one answer, so that a
// broken or hostile server cannot exhaust its memory.
const maxResponseBytes = 64 << 20

// Client calls one Steward server with one API token. It is safe for
// concurrent use.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client of the server at baseURL (such as
// http://127.0.0.1:8080) authenticating with token. A nil httpClient means
// http.DefaultClient.
func New(baseURL, token string, httpClient *http.Client) *Client {
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: token, http: httpClient}
}

// Error is a request the server refused or failed, from its RFC 9457
// problem document. Unwrap gives the matching *steward.Error, so that
// steward.ErrorCode, steward.IsNotFound and the like work on it.
type Error struct {
	Status    int          // HTTP status
	Code      steward.Code // the problem's code; derived from the status when the body had none
	Title     string
	Detail    string
	RequestID string // quote it when asking the server's operator
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Detail
	if msg == "" {
		msg = e.Title
	}
	if msg == "" {
		msg = http.StatusText(e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d, %s)", msg, e.Status, e.Code)
}

// Unwrap returns the error as a *steward.Error.
func (e *Error) Unwrap() error { return &steward.Error{Code: e.Code, Message: e.Detail} }

// CreatedToken is a new API token with its secret, which the server shows
// only this once.
type CreatedToken struct {
	steward.APIToken
	Secret string `json:"secret"`
}

// CreatedTenant is a new tenant with its first admin token.
type CreatedTenant struct {
	Tenant steward.Tenant `json:"tenant"`
	Token  CreatedToken   `json:"token"`
}

// list is the envelope of every list answer.
type list[T any] struct {
	Items     []T    `json:"items"`
	NextAfter string `json:"next_after"`
}

// do sends one request and decodes a JSON answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	body, err := c.send(ctx, method, path, query, in, "application/json")
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send sends one request and returns the body of a successful answer.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, in any, accept string) ([]byte, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	var rd io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", accept+", application/problem+json")
	req.Header.Set("User-Agent", "steward-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err // a *url.Error, which names the method and URL
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("%s %s: answer larger than %d bytes", method, path, maxResponseBytes)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, problemError(resp, body)
	}
	return body, nil
}

// problemError reads a refusal: the problem document when there is one,
// else the status and the start of the body.
func problemError(resp *http.Response, body []byte) *Error {
	e := &Error{Status: resp.StatusCode, RequestID: resp.Header.Get("X-Request-ID")}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	var p struct {
		Title     string       `json:"title"`
		Detail    string       `json:"detail"`
		Code      steward.Code `json:"code"`
		RequestID string       `json:"request_id"`
	}
	if (mt == "application/problem+json" || mt == "application/json") && json.Unmarshal(body, &p) == nil {
		e.Title, e.Detail, e.Code = p.Title, p.Detail, p.Code
		if p.RequestID != "" {
			e.RequestID = p.RequestID
		}
	} else {
		e.Detail = strings.TrimSpace(string(body))
		if len(e.Detail) > 200 {
			e.Detail = e.Detail[:200] + "…"
		}
	}
	if e.Code == "" {
		e.Code = steward.CodeOfHTTPStatus(resp.StatusCode)
	}
	return e
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// --- health

// Health checks that the server is alive (GET /healthz).
func (c *Client) Health(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// Ready checks that the server can take traffic (GET /readyz).
func (c *Client) Ready(ctx context.Context) error {
	return c.do(ctx, http.MethodGet, "/readyz", nil, nil, nil)
}

// OpenAPI returns the server's OpenAPI document.
func (c *Client) OpenAPI(ctx context.Context) ([]byte, error) {
	return c.send(ctx, http.MethodGet, "/api/v1/openapi.json", nil, nil, "application/json")
}

// --- enrollment groups

// groupRequest is what an operator sets on a new enrollment group.
type groupRequest struct {
	Name     string              `json:"name"`
	CAPEM    string              `json:"ca_pem"`
	Models   []string            `json:"models,omitempty"`
	Firmware map[string][]string `json:"firmware,omitempty"`
	Labels   map[string]string   `json:"labels,omitempty"`
	Serials  []string            `json:"serials,omitempty"`
	Strict   bool                `json:"strict,omitempty"`
}

// CreateEnrollmentGroup registers a manufacturer CA with its policy. Of g,
// the server takes Name, CAPEM, Models, Firmware, Labels, Serials and
// Strict, and sets the rest.
func (c *Client) CreateEnrollmentGroup(ctx context.Context, g steward.EnrollmentGroup) (steward.EnrollmentGroup, error) {
	var out steward.EnrollmentGroup
	err := c.do(ctx, http.MethodPost, "/api/v1/enrollment-groups", nil, groupRequest{
		Name: g.Name, CAPEM: g.CAPEM, Models: g.Models, Firmware: g.Firmware,
		Labels: g.Labels, Serials: g.Serials, Strict: g.Strict,
	}, &out)
	return out, err
}

// ListEnrollmentGroups lists the tenant's enrollment groups.
func (c *Client) ListEnrollmentGroups(ctx context.Context) ([]steward.EnrollmentGroup, error) {
	var out list[steward.EnrollmentGroup]
	err := c.do(ctx, http.MethodGet, "/api/v1/enrollment-groups", nil, nil, &out)
	return out.Items, err
}

// GetEnrollmentGroup reads one enrollment group.
func (c *Client) GetEnrollmentGroup(ctx context.Context, id string) (steward.EnrollmentGroup, error) {
	var out steward.EnrollmentGroup
	err := c.do(ctx, http.MethodGet, "/api/v1/enrollment-groups/"+seg(id), nil, nil, &out)
	return out, err
}

// DeleteEnrollmentGroup deletes an enrollment group.
func (c *Client) DeleteEnrollmentGroup(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/enrollment-groups/"+seg(id), nil, nil, nil)
}

// --- devices

// ListDevices returns one page of the devices matching q, ordered by ID,
// and the After of the next page ("" on the last one).
func (c *Client) ListDevices(ctx context.Context, q steward.DeviceQuery) (devices []steward.Device, nextAfter string, err error) {
	v := url.Values{}
	if q.Query != "" {
		v.Set("q", q.Query)
	}
	if q.After != "" {
		v.Set("after", q.After)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out list[steward.Device]
	if err := c.do(ctx, http.MethodGet, "/api/v1/devices", v, nil, &out); err != nil {
		return nil, "", err
	}
	return out.Items, out.NextAfter, nil
}

// AllDevices returns every device matching query, following the pages.
func (c *Client) AllDevices(ctx context.Context, query string) ([]steward.Device, error) {
	var all []steward.Device
	q := steward.DeviceQuery{Query: query, Limit: 1000}
	for {
		page, next, err := c.ListDevices(ctx, q)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" || len(page) == 0 {
			return all, nil
		}
		q.After = next
	}
}

// GetDevice reads a device with its certificates and lifecycle history.
func (c *Client) GetDevice(ctx context.Context, id string) (steward.DeviceDetail, error) {
	var out steward.DeviceDetail
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id), nil, nil, &out)
	return out, err
}

// UpdateDevice sets what p holds on a device.
func (c *Client) UpdateDevice(ctx context.Context, id string, p steward.DevicePatch) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPatch, "/api/v1/devices/"+seg(id), nil, p, &out)
	return out, err
}

// Quarantine isolates a device.
func (c *Client) Quarantine(ctx context.Context, id, reason string) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/quarantine", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// Release returns a quarantined device to active.
func (c *Client) Release(ctx context.Context, id string) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/release", nil, nil, &out)
	return out, err
}

// StartMaintenance takes an active device into maintenance.
func (c *Client) StartMaintenance(ctx context.Context, id, reason string) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/maintenance", nil, map[string]string{"reason": reason}, &out)
	return out, err
}

// EndMaintenance returns a device in maintenance to active.
func (c *Client) EndMaintenance(ctx context.Context, id string) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/maintenance/end", nil, nil, &out)
	return out, err
}

// Revoke revokes every certificate of a device and closes its session.
func (c *Client) Revoke(ctx context.Context, id string) (steward.Device, error) {
	var out steward.Device
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/revoke", nil, nil, &out)
	return out, err
}

// SendCommand sends a command to a connected device and waits up to
// timeout (0: the server's default) for its answer.
func (c *Client) SendCommand(ctx context.Context, id, name string, args map[string]any, timeout time.Duration) (steward.CommandResult, error) {
	req := struct {
		Name           string         `json:"name"`
		Args           map[string]any `json:"args,omitempty"`
		TimeoutSeconds float64        `json:"timeout_seconds,omitempty"`
	}{Name: name, Args: args, TimeoutSeconds: timeout.Seconds()}
	var out steward.CommandResult
	err := c.do(ctx, http.MethodPost, "/api/v1/devices/"+seg(id)+"/commands", nil, req, &out)
	return out, err
}

// LatestTelemetry returns the latest value of each metric of a device.
func (c *Client) LatestTelemetry(ctx context.Context, id string) ([]steward.Sample, error) {
	var out list[steward.Sample]
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/telemetry/latest", nil, nil, &out)
	return out.Items, err
}

// SeriesQuery selects one metric of a device over time.
type SeriesQuery struct {
	Metric string
	// From and To bound the window [From, To); zero means one hour before
	// To and now.
	From, To time.Time
	// Resolution is raw, 1m, 1h or auto (also when empty): raw up to 6
	// hours, minute rollups up to 7 days, hour rollups beyond.
	Resolution string
	// Limit caps the points (0: the server's default, 1000; at most 5000).
	Limit int
}

// Series is one metric of a device over time, oldest first.
type Series struct {
	DeviceID   string        `json:"device_id"`
	Metric     string        `json:"metric"`
	Resolution string        `json:"resolution"` // raw, 1m or 1h
	From       time.Time     `json:"from"`
	To         time.Time     `json:"to"`
	Points     []SeriesPoint `json:"points"`
	// Truncated says the window holds more points than were returned.
	Truncated bool `json:"truncated"`
}

// SeriesPoint is a raw sample (At, Value) or a rollup bucket starting at
// At (Min, Max, Avg, Count); the fields of the other kind are nil.
type SeriesPoint struct {
	At    time.Time `json:"at"`
	Value *float64  `json:"value,omitempty"`
	Min   *float64  `json:"min,omitempty"`
	Max   *float64  `json:"max,omitempty"`
	Avg   *float64  `json:"avg,omitempty"`
	Count *int64    `json:"count,omitempty"`
}

// DeviceTelemetry returns one metric of a device over a window, as raw
// samples or rollups.
func (c *Client) DeviceTelemetry(ctx context.Context, id string, q SeriesQuery) (Series, error) {
	v := url.Values{"metric": {q.Metric}}
	if !q.From.IsZero() {
		v.Set("from", q.From.UTC().Format(time.RFC3339Nano))
	}
	if !q.To.IsZero() {
		v.Set("to", q.To.UTC().Format(time.RFC3339Nano))
	}
	if q.Resolution != "" {
		v.Set("resolution", q.Resolution)
	}
	if q.Limit != 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var out Series
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/telemetry", v, nil, &out)
	return out, err
}

// ListDeviceEvents lists the events a device reported that match f,
// newest first. f.Limit 0 means the server's default (100); at most 1000.
func (c *Client) ListDeviceEvents(ctx context.Context, id string, f steward.DeviceEventFilter) ([]steward.DeviceEvent, error) {
	v := url.Values{}
	if f.Type != "" {
		v.Set("type", f.Type)
	}
	if f.MinSeverity != "" {
		v.Set("severity", string(f.MinSeverity))
	}
	if !f.From.IsZero() {
		v.Set("from", f.From.UTC().Format(time.RFC3339Nano))
	}
	if !f.To.IsZero() {
		v.Set("to", f.To.UTC().Format(time.RFC3339Nano))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.DeviceEvent]
	err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/events", v, nil, &out)
	return out.Items, err
}

// DevicePresence returns a device's connects and disconnects in [from, to),
// newest first (at most limit; 0 means the server's default, 100), with a
// summary of its connection quality over the whole window. A zero to means
// now, a zero from 24 hours before to.
func (c *Client) DevicePresence(ctx context.Context, id string, from, to time.Time, limit int) ([]steward.PresenceEvent, steward.PresenceSummary, error) {
	v := url.Values{}
	if !from.IsZero() {
		v.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		v.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	if limit != 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out struct {
		Items   []steward.PresenceEvent `json:"items"`
		Summary steward.PresenceSummary `json:"summary"`
	}
	if err := c.do(ctx, http.MethodGet, "/api/v1/devices/"+seg(id)+"/presence", v, nil, &out); err != nil {
		return nil, steward.PresenceSummary{}, err
	}
	return out.Items, out.Summary, nil
}

// ListSecurityEvents lists the tenant's security events matching f.
func (c *Client) ListSecurityEvents(ctx context.Context, f steward.SecurityEventFilter) ([]steward.SecurityEvent, error) {
	v := url.Values{}
	if f.DeviceID != "" {
		v.Set("device", f.DeviceID)
	}
	if f.Kind != "" {
		v.Set("kind", string(f.Kind))
	}
	if f.Limit != 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.SecurityEvent]
	err := c.do(ctx, http.MethodGet, "/api/v1/security-events", v, nil, &out)
	return out.Items, err
}

// --- certificate authorities

// DeviceCA returns the tenant's device CA certificate, PEM.
func (c *Client) DeviceCA(ctx context.Context) ([]byte, error) {
	return c.pem(ctx, "/api/v1/ca/device")
}

// ServerCA returns the CA of the server's TLS certificates, PEM.
func (c *Client) ServerCA(ctx context.Context) ([]byte, error) {
	return c.pem(ctx, "/api/v1/ca/server")
}

// pem fetches a PEM answer and checks that it holds a certificate.
func (c *Client) pem(ctx context.Context, path string) ([]byte, error) {
	body, err := c.send(ctx, http.MethodGet, path, nil, nil, "application/x-pem-file")
	if err != nil {
		return nil, err
	}
	if b, _ := pem.Decode(body); b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("GET %s: answer is not a PEM certificate", path)
	}
	return body, nil
}

// --- tokens

// CreateToken creates an API token of the caller's tenant. role "" means
// admin.
func (c *Client) CreateToken(ctx context.Context, name string, role steward.Role) (CreatedToken, error) {
	req := struct {
		Name string       `json:"name"`
		Role steward.Role `json:"role,omitempty"`
	}{name, role}
	var out CreatedToken
	err := c.do(ctx, http.MethodPost, "/api/v1/tokens", nil, req, &out)
	return out, err
}

// ListTokens lists the tenant's API tokens (never their secrets).
func (c *Client) ListTokens(ctx context.Context) ([]steward.APIToken, error) {
	var out list[steward.APIToken]
	err := c.do(ctx, http.MethodGet, "/api/v1/tokens", nil, nil, &out)
	return out.Items, err
}

// DeleteToken revokes an API token.
func (c *Client) DeleteToken(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/tokens/"+seg(id), nil, nil, nil)
}

// --- tenants

// CreateTenant creates a tenant with its device CA and first admin token
// (system role only). name "" means the ID.
func (c *Client) CreateTenant(ctx context.Context, id, name string) (CreatedTenant, error) {
	req := struct {
		ID   string `json:"id"`
		Name string `json:"name,omitempty"`
	}{id, name}
	var out CreatedTenant
	err := c.do(ctx, http.MethodPost, "/api/v1/tenants", nil, req, &out)
	return out, err
}

// ListTenants lists every tenant (system role only).
func (c *Client) ListTenants(ctx context.Context) ([]steward.Tenant, error) {
	var out list[steward.Tenant]
	err := c.do(ctx, http.MethodGet, "/api/v1/tenants", nil, nil, &out)
	return out.Items, err
}

// IsStatus reports whether err is a *Error with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
