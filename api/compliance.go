package api

import (
	"bytes"
	"context"
	"net/http"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/compliance"
)

// ComplianceReports builds a tenant's compliance report
// (compliance.Service implements it).
type ComplianceReports interface {
	Report(ctx context.Context, tenantID string, o compliance.Options) (compliance.Report, error)
}

// maxReportWindow bounds the report's thresholds: ten years.
const maxReportWindow = 10 * 365 * 24 * time.Hour

func (s *Server) registerCompliance() {
	s.handle("GET", "/api/v1/compliance/report", steward.PermComplianceRead, s.complianceReport)
}

// complianceReport answers GET /api/v1/compliance/report?format=json|csv|html
// &expiring_within=720h&offline_after=24h.
func (s *Server) complianceReport(w http.ResponseWriter, r *http.Request, p principal) error {
	if s.cfg.Compliance == nil {
		return steward.Errorf(steward.CodeUnavailable, "compliance reports are not enabled on this server")
	}
	q := r.URL.Query()
	format := q.Get("format")
	if format == "" {
		format = compliance.FormatJSON
	}
	if format != compliance.FormatJSON && format != compliance.FormatCSV && format != compliance.FormatHTML {
		return invalidf("format %q: use json, csv or html", format)
	}
	var o compliance.Options
	for _, d := range []struct {
		name string
		into *time.Duration
	}{{"expiring_within", &o.ExpiringWithin}, {"offline_after", &o.OfflineAfter}} {
		v := q.Get(d.name)
		if v == "" {
			continue
		}
		dur, err := time.ParseDuration(v)
		if err != nil || dur <= 0 || dur > maxReportWindow {
			return invalidf("%s %q: use a positive duration up to 87600h, e.g. 720h", d.name, v)
		}
		*d.into = dur
	}
	rep, err := s.cfg.Compliance.Report(r.Context(), p.tenantID, o)
	if err != nil {
		return err
	}
	// Rendered whole before the status is written, so that a failure is
	// still a problem document.
	var body bytes.Buffer
	if err := rep.Write(&body, format); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", compliance.ContentType(format))
	name := "compliance-" + p.tenantID + "-" + rep.GeneratedAt.Format("20060102T150405Z") + "." + format
	switch format {
	case compliance.FormatCSV:
		h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	case compliance.FormatHTML:
		// The page styles itself inline and loads nothing else.
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	}
	w.WriteHeader(http.StatusOK)
	_, err = w.Write(body.Bytes())
	return err
}
