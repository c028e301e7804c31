package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
)

// AuditQuery searches the audit log. Empty fields match everything;
// Action may end in "*" to match a prefix.
type AuditQuery struct {
	// System reads the system log (failed authentications and other
	// tenant-less actions) instead of the caller's tenant's.
	System                         bool
	Actor, Action, Target, Outcome string
	From, To                       time.Time
	Asc                            bool   // oldest first; the default is newest first
	Cursor                         string // a previous page's next cursor
	Limit                          int
}

// AuditCheckpoint is the latest signed checkpoint of a log.
type AuditCheckpoint struct {
	Log         string    `json:"log"`
	Origin      string    `json:"origin"`
	Size        int64     `json:"size"`
	Root        string    `json:"root"`
	SignedAt    time.Time `json:"signed_at"`
	Note        string    `json:"note"`
	VerifierKey string    `json:"verifier_key"`
}

func auditLogQuery(system bool) url.Values {
	q := url.Values{}
	if system {
		q.Set("log", "system")
	}
	return q
}

// SearchAudit returns a page of audit records and the cursor of the next
// page ("" after the last).
func (c *Client) SearchAudit(ctx context.Context, aq AuditQuery) ([]steward.AuditRecord, string, error) {
	q := auditLogQuery(aq.System)
	for k, v := range map[string]string{"actor": aq.Actor, "action": aq.Action, "target": aq.Target, "outcome": aq.Outcome, "cursor": aq.Cursor} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if !aq.From.IsZero() {
		q.Set("from", aq.From.UTC().Format(time.RFC3339Nano))
	}
	if !aq.To.IsZero() {
		q.Set("to", aq.To.UTC().Format(time.RFC3339Nano))
	}
	if aq.Asc {
		q.Set("order", "asc")
	}
	if aq.Limit > 0 {
		q.Set("limit", strconv.Itoa(aq.Limit))
	}
	var out struct {
		Items      []steward.AuditRecord `json:"items"`
		NextCursor string                `json:"next_cursor"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/audit", q, nil, &out)
	return out.Items, out.NextCursor, err
}

// AuditCheckpoint returns the latest signed checkpoint of the caller's log
// (or the system log).
func (c *Client) AuditCheckpoint(ctx context.Context, system bool) (AuditCheckpoint, error) {
	var out AuditCheckpoint
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/checkpoint", auditLogQuery(system), nil, &out)
	return out, err
}

// AuditKey returns the verifier key of the audit log's checkpoints.
func (c *Client) AuditKey(ctx context.Context) (string, error) {
	var out struct {
		VerifierKey string `json:"verifier_key"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/key", nil, nil, &out)
	return out.VerifierKey, err
}

// AuditInclusionProof returns the proof that record index is in the log of
// size (0 for the latest signed size). Check it with audit.CheckInclusion.
func (c *Client) AuditInclusionProof(ctx context.Context, system bool, index, size int64) (audit.InclusionProof, error) {
	q := auditLogQuery(system)
	q.Set("index", strconv.FormatInt(index, 10))
	if size > 0 {
		q.Set("size", strconv.FormatInt(size, 10))
	}
	var out audit.InclusionProof
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/proof/inclusion", q, nil, &out)
	return out, err
}

// AuditConsistencyProof returns the proof that the log at size newSize (0
// for the latest signed size) extends the log at oldSize. Check it with
// audit.CheckConsistency against a checkpoint of oldSize you kept.
func (c *Client) AuditConsistencyProof(ctx context.Context, system bool, oldSize, newSize int64) (audit.ConsistencyProof, error) {
	q := auditLogQuery(system)
	q.Set("old", strconv.FormatInt(oldSize, 10))
	if newSize > 0 {
		q.Set("new", strconv.FormatInt(newSize, 10))
	}
	var out audit.ConsistencyProof
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/proof/consistency", q, nil, &out)
	return out, err
}

// VerifyAudit has the server verify its stored log.
func (c *Client) VerifyAudit(ctx context.Context, system bool) (audit.Report, error) {
	var out audit.Report
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/verify", auditLogQuery(system), nil, &out)
	return out, err
}

// ExportAudit streams the whole log to w, as JSON lines that
// audit.VerifyExport checks offline (it may be larger than any other
// answer, so it is not read into memory).
func (c *Client) ExportAudit(ctx context.Context, system bool, w io.Writer) error {
	const path = "/api/v1/audit/export"
	u := c.base + path
	if q := auditLogQuery(system); len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Accept", "application/jsonl, application/problem+json")
	req.Header.Set("User-Agent", "steward-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return problemError(resp, body)
	}
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("GET %s: read export: %w", path, err)
	}
	return nil
}

// AuditRetention returns the caller's tenant's audit log retention: its
// period (nil: for good), the minimum, and how many records were pruned.
func (c *Client) AuditRetention(ctx context.Context) (audit.RetentionPolicy, error) {
	var out audit.RetentionPolicy
	err := c.do(ctx, http.MethodGet, "/api/v1/audit/retention", nil, nil, &out)
	return out, err
}

// SetAuditRetention sets a tenant's audit log retention period in days (0:
// for good; otherwise at least 365); it needs the tenants:admin
// permission. When an approval policy covers the change, nothing changes
// and the approval request is returned: once others approve it, call
// again with its ID.
func (c *Client) SetAuditRetention(ctx context.Context, tenantID string, days int, approvalID string) (audit.RetentionPolicy, *steward.ApprovalRequest, error) {
	q := url.Values{}
	if approvalID != "" {
		q.Set("approval", approvalID)
	}
	path := "/api/v1/tenants/" + seg(tenantID) + "/audit-retention"
	body, err := c.send(ctx, http.MethodPut, path, q, map[string]int{"period_days": days}, "application/json")
	if err != nil {
		return audit.RetentionPolicy{}, nil, err
	}
	// 200 is the retention, 202 an approval request: only the latter has
	// a state.
	var probe struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal(body, &probe); err != nil {
		return audit.RetentionPolicy{}, nil, fmt.Errorf("PUT %s: decode answer: %w", path, err)
	}
	if probe.State != "" {
		var req steward.ApprovalRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return audit.RetentionPolicy{}, nil, fmt.Errorf("PUT %s: decode answer: %w", path, err)
		}
		return audit.RetentionPolicy{}, &req, nil
	}
	var out audit.RetentionPolicy
	if err := json.Unmarshal(body, &out); err != nil {
		return audit.RetentionPolicy{}, nil, fmt.Errorf("PUT %s: decode answer: %w", path, err)
	}
	return out, nil, nil
}
