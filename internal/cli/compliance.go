package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/client"
)

func (e *env) complianceCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "compliance", Short: "The tenant's compliance report", Args: noArgs, RunE: groupRunE}
	cmd.AddCommand(e.complianceReportCommand())
	return cmd
}

func (e *env) complianceReportCommand() *cobra.Command {
	var (
		format, file                 string
		expiringWithin, offlineAfter time.Duration
	)
	cmd := &cobra.Command{
		Use:   "report [--format csv|html] [--file F]",
		Short: "Show the compliance report: unapproved firmware, expiring certificates, offline, quarantined, drift, critical alerts, administrators, audit log",
		Long: `Show the tenant's compliance report: devices on unapproved firmware,
certificates expiring soon, devices offline beyond a threshold, quarantined
devices and why, configuration drift, open critical alerts, the identities
with administrator rights, and whether the audit log verifies.

Without --format, a summary table (or the whole report as JSON with -o json).
--format csv (one row per finding) or html (a printable page) writes the
server's rendering to standard output, or to a new file with --file.`,
		Example: `  steward compliance report
  steward compliance report --offline-after 4h -o json
  steward compliance report --format html --file report.html`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if expiringWithin < 0 || offlineAfter < 0 {
				return usagef("--expiring-within and --offline-after must be positive")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			o := client.ComplianceOptions{ExpiringWithin: expiringWithin, OfflineAfter: offlineAfter}
			var w io.Writer = e.stdout
			if file != "" {
				f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			switch format {
			case "csv", "html":
				b, err := c.ComplianceReportAs(cmd.Context(), o, format)
				if err != nil {
					return err
				}
				_, err = w.Write(b)
				return err
			case "":
			default:
				return usagef("--format must be csv or html, not %q", format)
			}
			r, err := c.ComplianceReport(cmd.Context(), o)
			if err != nil {
				return err
			}
			if file != "" {
				return r.Write(w, "json")
			}
			return e.emit(r, func(w io.Writer) error {
				s := r.Summary
				t := newTable(w, "CHECK", "FINDINGS")
				t.row("devices in service", strconv.Itoa(s.Devices))
				t.row("unapproved firmware", strconv.Itoa(s.UnapprovedFirmware))
				t.row("certificates expiring within "+fmtHours(r.ExpiringWithinHours), strconv.Itoa(s.ExpiringCertificates))
				t.row("offline for more than "+fmtHours(r.OfflineAfterHours), strconv.Itoa(s.Offline))
				t.row("quarantined", strconv.Itoa(s.Quarantined))
				t.row("configuration drift", strconv.Itoa(s.Drift))
				t.row("open critical alerts", strconv.Itoa(s.CriticalAlerts))
				t.row("administrators", strconv.Itoa(s.Administrators))
				audit := "verified"
				if !s.AuditVerified {
					audit = "NOT VERIFIED"
				}
				t.row("audit log", audit)
				verdict := "compliant"
				if !s.Compliant {
					verdict = "findings to act on (-o json or --format html for the details)"
				}
				t.row("overall", verdict)
				return t.flush()
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&format, "format", "", "csv or html: the server's rendering instead of the summary")
	f.StringVar(&file, "file", "", "write to this new file")
	f.DurationVar(&expiringWithin, "expiring-within", 0, "list certificates expiring within this (default 720h)")
	f.DurationVar(&offlineAfter, "offline-after", 0, "list devices not seen for longer than this (default 24h)")
	return cmd
}

func fmtHours(h float64) string {
	if h >= 48 && h == float64(int(h/24))*24 {
		return fmt.Sprintf("%d days", int(h/24))
	}
	return strconv.FormatFloat(h, 'f', -1, 64) + " h"
}
