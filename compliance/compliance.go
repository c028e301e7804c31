// Package compliance builds a tenant's compliance report: the findings an
// auditor asks for first (devices on firmware nobody approved, certificates
// about to expire, devices silent for too long, quarantined devices and
// why, configuration drift, open critical alerts, who holds administrator
// rights, and whether the audit log verifies), as JSON, CSV or a printable
// HTML page.
//
// The report reads only; it is assembled from the store at the time of the
// request, so two reports taken at different times can differ.
package compliance

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
)

// Defaults of Options.
const (
	DefaultExpiringWithin = 30 * 24 * time.Hour
	DefaultOfflineAfter   = 24 * time.Hour
)

// maxFindings bounds each section, so that a report of a very large or
// very unhealthy fleet stays readable; Truncated says when it was reached.
const maxFindings = 10000

// Store is what the report reads.
type Store interface {
	ListDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) ([]steward.Device, error)
	ListEnrollmentGroups(ctx context.Context, tenantID string) ([]steward.EnrollmentGroup, error)
	ListArtifacts(ctx context.Context, tenantID string, f steward.ArtifactFilter) ([]steward.Artifact, error)
	ListExpiringCertificates(ctx context.Context, tenantID string, from, to time.Time, limit int) ([]steward.Certificate, error)
	ListAlerts(ctx context.Context, tenantID string, f steward.AlertFilter) ([]steward.Alert, error)
	ListTwins(ctx context.Context, tenantID string, f steward.TwinFilter) ([]steward.Twin, error)
	ListUsers(ctx context.Context, tenantID string) ([]steward.User, error)
	ListServiceAccounts(ctx context.Context, tenantID string) ([]steward.ServiceAccount, error)
	ListAccountTokens(ctx context.Context, tenantID string) ([]steward.AccountToken, error)
}

// AuditVerifier checks a tenant's audit log (audit.Log).
type AuditVerifier interface {
	Verify(ctx context.Context, tenantID string) (audit.Report, error)
}

// Service builds reports.
type Service struct {
	store Store
	audit AuditVerifier
	clock steward.Clock
	log   *slog.Logger
}

// New returns a Service; audit may be nil (the report then says the log
// was not checked).
func New(store Store, auditor AuditVerifier, clock steward.Clock, logger *slog.Logger) *Service {
	if clock == nil {
		clock = steward.SystemClock{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Service{store: store, audit: auditor, clock: clock, log: logger}
}

// Options tune a report; zero values take the defaults.
type Options struct {
	// ExpiringWithin: certificates ending within this are listed (30 days).
	ExpiringWithin time.Duration
	// OfflineAfter: devices not seen for longer are listed (24 hours).
	OfflineAfter time.Duration
}

// Report is a tenant's compliance report.
type Report struct {
	TenantID       string        `json:"tenant_id"`
	GeneratedAt    time.Time     `json:"generated_at"`
	ExpiringWithin time.Duration `json:"-"`
	OfflineAfter   time.Duration `json:"-"`
	// ExpiringWithinHours and OfflineAfterHours are the thresholds used.
	ExpiringWithinHours float64 `json:"expiring_within_hours"`
	OfflineAfterHours   float64 `json:"offline_after_hours"`
	Summary             Summary `json:"summary"`

	UnapprovedFirmware   []DeviceFinding `json:"unapproved_firmware"`
	ExpiringCertificates []CertFinding   `json:"expiring_certificates"`
	Offline              []DeviceFinding `json:"offline"`
	Quarantined          []DeviceFinding `json:"quarantined"`
	Drift                []DriftFinding  `json:"configuration_drift"`
	CriticalAlerts       []AlertFinding  `json:"open_critical_alerts"`
	Administrators       []AdminFinding  `json:"administrators"`
	Audit                AuditStatus     `json:"audit_log"`
	// Truncated names the sections that hit the report's limit.
	Truncated []string `json:"truncated,omitempty"`
}

// Summary counts each section.
type Summary struct {
	Devices              int  `json:"devices"` // not decommissioned
	UnapprovedFirmware   int  `json:"unapproved_firmware"`
	ExpiringCertificates int  `json:"expiring_certificates"`
	Offline              int  `json:"offline"`
	Quarantined          int  `json:"quarantined"`
	Drift                int  `json:"configuration_drift"`
	CriticalAlerts       int  `json:"open_critical_alerts"`
	Administrators       int  `json:"administrators"`
	AuditVerified        bool `json:"audit_log_verified"`
	// Compliant is true when no section has a finding (administrators
	// are listed, not counted against it) and the audit log verifies.
	Compliant bool `json:"compliant"`
}

// DeviceFinding is a device named by a section, and why.
type DeviceFinding struct {
	DeviceID string     `json:"device_id"`
	Serial   string     `json:"serial,omitempty"`
	Model    string     `json:"model,omitempty"`
	Firmware string     `json:"firmware,omitempty"`
	Detail   string     `json:"detail"`
	Since    *time.Time `json:"since,omitempty"`
}

// CertFinding is a certificate that ends soon.
type CertFinding struct {
	Serial   string    `json:"serial"`
	DeviceID string    `json:"device_id"`
	NotAfter time.Time `json:"not_after"`
}

// DriftFinding is a device whose reported configuration differs from its
// desired one beyond the grace period.
type DriftFinding struct {
	DeviceID        string     `json:"device_id"`
	DesiredVersion  int64      `json:"desired_version"`
	ReportedVersion int64      `json:"reported_version"`
	Since           *time.Time `json:"since,omitempty"`
}

// AlertFinding is an open critical alert.
type AlertFinding struct {
	AlertID  string    `json:"alert_id"`
	RuleID   string    `json:"rule_id"`
	DeviceID string    `json:"device_id,omitempty"`
	Summary  string    `json:"summary"`
	Since    time.Time `json:"since"`
	Acked    bool      `json:"acknowledged"`
}

// AdminFinding is an identity that holds administrator rights: a user or
// service account with the owner or admin role, or a token with the admin
// or system role.
type AdminFinding struct {
	Kind     string `json:"kind"` // "user", "service-account" or "token"
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	Disabled bool   `json:"disabled,omitempty"`
}

// AuditStatus is the result of verifying the tenant's audit log.
type AuditStatus struct {
	Checked  bool     `json:"checked"`
	OK       bool     `json:"ok"`
	Records  int64    `json:"records"`
	Problems []string `json:"problems,omitempty"`
	Error    string   `json:"error,omitempty"`
}

func adminRole(r steward.Role) bool {
	return r == steward.RoleOwner || r == steward.RoleAdmin || r == steward.RoleSystem
}

// Report builds the tenant's report.
func (s *Service) Report(ctx context.Context, tenantID string, o Options) (Report, error) {
	if o.ExpiringWithin <= 0 {
		o.ExpiringWithin = DefaultExpiringWithin
	}
	if o.OfflineAfter <= 0 {
		o.OfflineAfter = DefaultOfflineAfter
	}
	now := s.clock.Now().UTC()
	r := Report{TenantID: tenantID, GeneratedAt: now, ExpiringWithin: o.ExpiringWithin, OfflineAfter: o.OfflineAfter,
		ExpiringWithinHours: o.ExpiringWithin.Hours(), OfflineAfterHours: o.OfflineAfter.Hours()}
	if err := s.devices(ctx, &r, now); err != nil {
		return Report{}, err
	}
	certs, err := s.store.ListExpiringCertificates(ctx, tenantID, now, now.Add(o.ExpiringWithin), maxFindings)
	if err != nil {
		return Report{}, fmt.Errorf("expiring certificates: %w", err)
	}
	for _, c := range certs {
		r.ExpiringCertificates = append(r.ExpiringCertificates, CertFinding{Serial: c.Serial, DeviceID: c.DeviceID, NotAfter: c.NotAfter})
	}
	if len(certs) == maxFindings {
		r.Truncated = append(r.Truncated, "expiring_certificates")
	}
	if err := s.drift(ctx, &r); err != nil {
		return Report{}, err
	}
	alerts, err := s.store.ListAlerts(ctx, tenantID, steward.AlertFilter{Open: true, Severity: steward.AlertCritical, Limit: 1000})
	if err != nil {
		return Report{}, fmt.Errorf("open critical alerts: %w", err)
	}
	for _, a := range alerts {
		r.CriticalAlerts = append(r.CriticalAlerts, AlertFinding{AlertID: a.ID, RuleID: a.RuleID, DeviceID: a.DeviceID,
			Summary: a.Summary, Since: a.StartedAt, Acked: a.AcknowledgedAt != nil})
	}
	if len(alerts) == 1000 {
		r.Truncated = append(r.Truncated, "open_critical_alerts")
	}
	if err := s.admins(ctx, &r); err != nil {
		return Report{}, err
	}
	s.verifyAudit(ctx, &r)

	r.Summary = Summary{
		Devices: r.Summary.Devices, UnapprovedFirmware: len(r.UnapprovedFirmware), ExpiringCertificates: len(r.ExpiringCertificates),
		Offline: len(r.Offline), Quarantined: len(r.Quarantined), Drift: len(r.Drift), CriticalAlerts: len(r.CriticalAlerts),
		Administrators: len(r.Administrators), AuditVerified: r.Audit.Checked && r.Audit.OK,
	}
	r.Summary.Compliant = r.Summary.UnapprovedFirmware == 0 && r.Summary.ExpiringCertificates == 0 && r.Summary.Offline == 0 &&
		r.Summary.Quarantined == 0 && r.Summary.Drift == 0 && r.Summary.CriticalAlerts == 0 && r.Summary.AuditVerified
	return r, nil
}

// devices walks the fleet once for the three device sections.
func (s *Service) devices(ctx context.Context, r *Report, now time.Time) error {
	approved, err := s.approvedFirmware(ctx, r.TenantID)
	if err != nil {
		return err
	}
	after := ""
	for {
		page, err := s.store.ListDevices(ctx, r.TenantID, steward.DeviceQuery{After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("list devices: %w", err)
		}
		for i := range page {
			d := &page[i]
			if d.State == steward.StateDecommissioned {
				continue
			}
			r.Summary.Devices++
			base := DeviceFinding{DeviceID: d.ID, Serial: d.Serial, Model: d.Model, Firmware: d.Firmware}
			if why := approved.check(d); why != "" {
				f := base
				f.Detail = why
				add(r, &r.UnapprovedFirmware, f, "unapproved_firmware")
			}
			if d.State == steward.StateQuarantined {
				f := base
				f.Detail = d.StateReason
				if d.StateActor != "" {
					f.Detail = fmt.Sprintf("%s (by %s)", d.StateReason, d.StateActor)
				}
				since := d.StateChangedAt
				f.Since = &since
				add(r, &r.Quarantined, f, "quarantined")
			}
			if offline, since := silent(d, now, r.OfflineAfter); offline {
				f := base
				if since.IsZero() {
					f.Detail = "never connected"
				} else {
					f.Detail = fmt.Sprintf("last seen %s ago", now.Sub(since).Round(time.Minute))
					f.Since = &since
				}
				add(r, &r.Offline, f, "offline")
			}
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].ID
	}
}

// silent reports whether an in-service device has not been seen for longer
// than after, and since when. Devices that were never meant to be online
// (registered, maintenance) are not counted.
func silent(d *steward.Device, now time.Time, after time.Duration) (bool, time.Time) {
	if d.Presence.Online || (d.State != steward.StateActive && d.State != steward.StateProvisioned && d.State != steward.StateQuarantined) {
		return false, time.Time{}
	}
	last := d.Presence.LastSeen
	if last.IsZero() {
		return now.Sub(d.CreatedAt) > after, time.Time{}
	}
	return now.Sub(last) > after, last
}

func add[T any](r *Report, list *[]T, f T, section string) {
	if len(*list) == maxFindings {
		if !slices.Contains(r.Truncated, section) {
			r.Truncated = append(r.Truncated, section)
		}
		return
	}
	*list = append(*list, f)
}

// approvals says which firmware versions are approved for a device: the
// versions its enrollment group lists for its model; where the group does
// not restrict the model, the firmware artifacts released for the model.
type approvals struct {
	groups   map[string]steward.EnrollmentGroup
	released map[string][]string // model → firmware versions with an artifact, those for any model ("") included
}

func (s *Service) approvedFirmware(ctx context.Context, tenantID string) (approvals, error) {
	a := approvals{groups: map[string]steward.EnrollmentGroup{}, released: map[string][]string{}}
	groups, err := s.store.ListEnrollmentGroups(ctx, tenantID)
	if err != nil {
		return a, fmt.Errorf("list enrollment groups: %w", err)
	}
	for _, g := range groups {
		a.groups[g.ID] = g
	}
	after := ""
	for {
		page, err := s.store.ListArtifacts(ctx, tenantID, steward.ArtifactFilter{Type: steward.ArtifactFirmware, After: after, Limit: 1000})
		if err != nil {
			return a, fmt.Errorf("list firmware artifacts: %w", err)
		}
		for _, art := range page {
			models := art.CompatibleModels
			if len(models) == 0 {
				models = []string{""}
			}
			for _, m := range models {
				a.released[m] = append(a.released[m], art.Version)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	// Artifacts for any model count for every model: merged once here, not
	// per device.
	for m := range a.released {
		if m != "" {
			a.released[m] = append(a.released[m], a.released[""]...)
		}
	}
	return a, nil
}

// check returns why d's firmware is not approved, or "".
func (a approvals) check(d *steward.Device) string {
	if g, ok := a.groups[d.EnrollmentGroupID]; ok {
		if versions, restricted := g.Firmware[d.Model]; restricted {
			if slices.Contains(versions, d.Firmware) {
				return ""
			}
			return fmt.Sprintf("firmware %q is not approved for model %q by enrollment group %s", d.Firmware, d.Model, g.Name)
		}
	}
	released, ok := a.released[d.Model]
	if !ok {
		released = a.released[""]
	}
	if len(released) == 0 || d.Firmware == "" {
		return "" // nothing says what is approved for this model
	}
	if slices.Contains(released, d.Firmware) {
		return ""
	}
	return fmt.Sprintf("firmware %q is not a released firmware artifact for model %q", d.Firmware, d.Model)
}

func (s *Service) drift(ctx context.Context, r *Report) error {
	after := ""
	for {
		page, err := s.store.ListTwins(ctx, r.TenantID, steward.TwinFilter{Drifted: true, After: after, Limit: 1000})
		if err != nil {
			return fmt.Errorf("list drifted twins: %w", err)
		}
		for _, t := range page {
			add(r, &r.Drift, DriftFinding{DeviceID: t.DeviceID, DesiredVersion: t.DesiredVersion, ReportedVersion: t.ReportedVersion, Since: t.DriftSince}, "configuration_drift")
		}
		if len(page) < 1000 {
			return nil
		}
		after = page[len(page)-1].DeviceID
	}
}

func (s *Service) admins(ctx context.Context, r *Report) error {
	users, err := s.store.ListUsers(ctx, r.TenantID)
	if err != nil {
		return fmt.Errorf("list users: %w", err)
	}
	for _, u := range users {
		if adminRole(u.Role) {
			r.Administrators = append(r.Administrators, AdminFinding{Kind: "user", ID: u.ID, Name: u.Email, Role: string(u.Role), Disabled: u.Disabled})
		}
	}
	accounts, err := s.store.ListServiceAccounts(ctx, r.TenantID)
	if err != nil {
		return fmt.Errorf("list service accounts: %w", err)
	}
	for _, a := range accounts {
		if adminRole(a.Role) {
			r.Administrators = append(r.Administrators, AdminFinding{Kind: "service-account", ID: a.ID, Name: a.Name, Role: string(a.Role), Disabled: a.Disabled})
		}
	}
	tokens, err := s.store.ListAccountTokens(ctx, r.TenantID)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	now := s.clock.Now()
	for _, t := range tokens {
		// Owned tokens act with their owner's role, listed above.
		if t.UserID == "" && t.ServiceAccountID == "" && adminRole(t.Role) && !t.Expired(now) {
			r.Administrators = append(r.Administrators, AdminFinding{Kind: "token", ID: t.ID, Name: t.Name, Role: string(t.Role)})
		}
	}
	return nil
}

func (s *Service) verifyAudit(ctx context.Context, r *Report) {
	if s.audit == nil {
		r.Audit = AuditStatus{Error: "this node keeps no audit log"}
		return
	}
	rep, err := s.audit.Verify(ctx, r.TenantID)
	if err != nil {
		s.log.Error("verify audit log for the compliance report", "tenant", r.TenantID, "err", err)
		r.Audit = AuditStatus{Error: "the audit log could not be read: " + steward.ErrorMessage(err)}
		return
	}
	r.Audit = AuditStatus{Checked: true, OK: rep.OK, Records: rep.Records, Problems: rep.Problems}
}
