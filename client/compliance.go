package client

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/steward-iot/steward/compliance"
)

// ComplianceOptions are the report's thresholds; zero values take the
// server's defaults (30 days, 24 hours).
type ComplianceOptions struct {
	ExpiringWithin time.Duration
	OfflineAfter   time.Duration
}

func (o ComplianceOptions) query(format string) url.Values {
	q := url.Values{"format": {format}}
	if o.ExpiringWithin > 0 {
		q.Set("expiring_within", o.ExpiringWithin.String())
	}
	if o.OfflineAfter > 0 {
		q.Set("offline_after", o.OfflineAfter.String())
	}
	return q
}

// ComplianceReport returns the caller's tenant's compliance report.
func (c *Client) ComplianceReport(ctx context.Context, o ComplianceOptions) (compliance.Report, error) {
	var r compliance.Report
	err := c.do(ctx, http.MethodGet, "/api/v1/compliance/report", o.query(compliance.FormatJSON), nil, &r)
	return r, err
}

// ComplianceReportAs returns the report rendered by the server as csv or
// html, byte for byte.
func (c *Client) ComplianceReportAs(ctx context.Context, o ComplianceOptions, format string) ([]byte, error) {
	return c.send(ctx, http.MethodGet, "/api/v1/compliance/report", o.query(format), nil, compliance.ContentType(format))
}
