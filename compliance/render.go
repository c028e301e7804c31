package compliance

import (
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strconv"
	"time"
)

// Formats a report renders to.
const (
	FormatJSON = "json"
	FormatCSV  = "csv"
	FormatHTML = "html"
)

// ContentType returns the media type of a format.
func ContentType(format string) string {
	switch format {
	case FormatCSV:
		return "text/csv; charset=utf-8"
	case FormatHTML:
		return "text/html; charset=utf-8"
	default:
		return "application/json"
	}
}

// Write renders r in format (json, csv or html) to w.
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case FormatJSON, "":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case FormatCSV:
		return r.writeCSV(w)
	case FormatHTML:
		return page.Execute(w, r)
	default:
		return fmt.Errorf("unknown report format %q: use json, csv or html", format)
	}
}

// CSVHeader is the first row of the CSV form: one row per finding, the
// section first, so that a spreadsheet can filter by it.
var CSVHeader = []string{"section", "subject", "device_id", "detail", "since"}

func (r *Report) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	row := func(section, subject, device, detail string, since *time.Time) {
		s := ""
		if since != nil && !since.IsZero() {
			s = since.UTC().Format(time.RFC3339)
		}
		_ = cw.Write([]string{section, subject, device, detail, s})
	}
	_ = cw.Write(CSVHeader)
	row("report", r.TenantID, "", fmt.Sprintf("generated; compliant=%t", r.Summary.Compliant), &r.GeneratedAt)
	for _, f := range r.UnapprovedFirmware {
		row("unapproved_firmware", f.Firmware, f.DeviceID, f.Detail, f.Since)
	}
	for _, c := range r.ExpiringCertificates {
		na := c.NotAfter
		row("expiring_certificate", c.Serial, c.DeviceID, "expires "+c.NotAfter.UTC().Format(time.RFC3339), &na)
	}
	for _, f := range r.Offline {
		row("offline", f.Serial, f.DeviceID, f.Detail, f.Since)
	}
	for _, f := range r.Quarantined {
		row("quarantined", f.Serial, f.DeviceID, f.Detail, f.Since)
	}
	for _, d := range r.Drift {
		row("configuration_drift", "", d.DeviceID, fmt.Sprintf("desired version %d, reported version %d", d.DesiredVersion, d.ReportedVersion), d.Since)
	}
	for _, a := range r.CriticalAlerts {
		since := a.Since
		row("open_critical_alert", a.AlertID, a.DeviceID, a.Summary+" (acknowledged="+strconv.FormatBool(a.Acked)+")", &since)
	}
	for _, a := range r.Administrators {
		row("administrator", a.Kind+":"+a.ID, "", a.Name+" ("+a.Role+")", nil)
	}
	audit := "verified"
	switch {
	case !r.Audit.Checked:
		audit = "not checked: " + r.Audit.Error
	case !r.Audit.OK:
		audit = fmt.Sprintf("FAILED: %v", r.Audit.Problems)
	}
	row("audit_log", strconv.FormatInt(r.Audit.Records, 10)+" records", "", audit, nil)
	cw.Flush()
	return cw.Error()
}

//go:embed report.html.tmpl
var templates embed.FS

var page = template.Must(template.New("report.html.tmpl").Funcs(template.FuncMap{
	"when": func(t any) string {
		switch v := t.(type) {
		case time.Time:
			return v.UTC().Format("2006-01-02 15:04 UTC")
		case *time.Time:
			if v == nil {
				return ""
			}
			return v.UTC().Format("2006-01-02 15:04 UTC")
		}
		return ""
	},
}).ParseFS(templates, "report.html.tmpl"))
