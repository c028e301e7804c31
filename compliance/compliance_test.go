package compliance

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"github.com/steward-iot/steward/internal/teststores"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/sqlstore"
)

const tenant = "acme"

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

type clock struct{ t time.Time }

func (c clock) Now() time.Time { return c.t }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fleet seeds a tenant with one device of each kind of finding, and one
// that is in order, and returns the audit log.
func fleet(t *testing.T, s *sqlstore.Store) *audit.Log {
	t.Helper()
	ctx := t.Context()
	must(t, s.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "Acme", CreatedAt: now.Add(-90 * 24 * time.Hour)}))
	must(t, s.CreateTenant(ctx, steward.Tenant{ID: "other", Name: "Other", CreatedAt: now}))
	must(t, s.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{ID: "g-1", TenantID: tenant, Name: "line-1",
		CAPEM: "-----BEGIN CERTIFICATE-----\nMIIBg1\n-----END CERTIFICATE-----\n", CAFingerprint: "fp-1", CASubjectHash: "subj-1",
		Firmware: map[string][]string{"gw-100": {"1.4.0", "1.4.1"}}, CreatedAt: now.Add(-60 * 24 * time.Hour)}))
	must(t, s.CreateArtifact(ctx, steward.Artifact{ID: "a-1", TenantID: tenant, Name: "sensor-fw", Version: "2.0.0",
		Type: steward.ArtifactFirmware, SHA256: strings.Repeat("ab", 32), Size: 10, CompatibleModels: []string{"sensor-20"},
		CreatedBy: "token:t", CreatedAt: now.Add(-30 * 24 * time.Hour)}))
	dev := func(tenantID, id, model, firmware string, state steward.State, online bool, lastSeen time.Time) steward.Device {
		return steward.Device{ID: id, TenantID: tenantID, EnrollmentGroupID: "g-1", FactoryID: "f-" + id, FactoryKeyID: "k-" + id,
			Model: model, Serial: "SN-" + id, Firmware: firmware, Labels: map[string]string{}, Attributes: map[string]any{},
			State: state, StateReason: "enrolled", StateActor: "device", StateChangedAt: now.Add(-48 * time.Hour),
			Presence:  steward.Presence{Online: online, LastSeen: lastSeen},
			CreatedAt: now.Add(-50 * 24 * time.Hour), UpdatedAt: now.Add(-48 * time.Hour)}
	}
	fresh := now.Add(-time.Minute)
	quarantined := dev(tenant, "d-quar", "gw-100", "1.4.1", steward.StateQuarantined, true, fresh)
	quarantined.StateReason, quarantined.StateActor = "repeated refused ACL checks", "system"
	for _, d := range []steward.Device{
		dev(tenant, "d-good", "gw-100", "1.4.1", steward.StateActive, true, fresh),
		dev(tenant, "d-unapproved", "gw-100", "1.3.9", steward.StateActive, true, fresh),
		dev(tenant, "d-sensor-old", "sensor-20", "1.0.0", steward.StateActive, true, fresh),
		dev(tenant, "d-sensor-ok", "sensor-20", "2.0.0", steward.StateActive, true, fresh),
		dev(tenant, "d-free", "other-model", "9.9", steward.StateActive, true, fresh),
		dev(tenant, "d-silent", "gw-100", "1.4.0", steward.StateActive, false, now.Add(-72*time.Hour)),
		dev(tenant, "d-recent", "gw-100", "1.4.0", steward.StateActive, false, now.Add(-time.Hour)),
		dev(tenant, "d-gone", "gw-100", "0.1", steward.StateDecommissioned, false, now.Add(-400*time.Hour)),
		quarantined,
		dev("other", "d-other", "gw-100", "0.0.1", steward.StateQuarantined, false, time.Time{}),
	} {
		must(t, s.CreateDevice(ctx, d))
	}
	for _, c := range []steward.Certificate{
		{Serial: "0a", TenantID: tenant, DeviceID: "d-good", KeyID: "k1", NotBefore: now.Add(-300 * 24 * time.Hour), NotAfter: now.Add(10 * 24 * time.Hour), PEM: "x", CreatedAt: now},
		{Serial: "0b", TenantID: tenant, DeviceID: "d-unapproved", KeyID: "k2", NotBefore: now, NotAfter: now.Add(300 * 24 * time.Hour), PEM: "x", CreatedAt: now},
	} {
		must(t, s.AddCertificate(ctx, c))
	}
	must(t, s.CreateAlertRule(ctx, steward.AlertRule{ID: "r-1", TenantID: tenant, Name: "offline", Kind: steward.RuleAbsence,
		Severity: steward.AlertCritical, Enabled: true, Absence: &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(10 * time.Minute)},
		CreatedAt: now, UpdatedAt: now}))
	fired := now.Add(-69 * time.Hour)
	_, err := s.PutAlert(ctx, steward.Alert{ID: "al-1", TenantID: tenant, RuleID: "r-1", DeviceID: "d-silent", State: steward.AlertFiring,
		Severity: steward.AlertCritical, Summary: "d-silent is offline", StartedAt: now.Add(-70 * time.Hour), FiredAt: &fired, LastEvaluatedAt: now})
	must(t, err)
	since := now.Add(-3 * time.Hour)
	tw := steward.Twin{TenantID: tenant, DeviceID: "d-good", Desired: json.RawMessage(`{"interval":30}`), DesiredVersion: 2,
		Sources:   []steward.ConfigSource{{TemplateID: "ct-1", VersionID: "cv-1", Version: 1, Layer: steward.LayerBase}},
		DesiredBy: "token:t", DesiredAt: now, CreatedAt: now, UpdatedAt: now}
	tw, err = s.PutTwin(ctx, tw)
	must(t, err)
	tw.Reported, tw.ReportedVersion, tw.ReportedAt, tw.DriftSince, tw.Drifted = json.RawMessage(`{"interval":60}`), 1, now, &since, true
	_, err = s.PutTwin(ctx, tw)
	must(t, err)
	for _, u := range []steward.User{
		{ID: "u-1", TenantID: tenant, Email: "owner@acme.example", Role: steward.RoleOwner, CreatedAt: now, UpdatedAt: now},
		{ID: "u-2", TenantID: tenant, Email: "viewer@acme.example", Role: steward.RoleViewer, CreatedAt: now, UpdatedAt: now},
	} {
		must(t, s.CreateUser(ctx, u))
	}
	must(t, s.CreateToken(ctx, steward.APIToken{ID: "t-admin", TenantID: tenant, Name: "admin", Role: steward.RoleAdmin, Hash: "h1", CreatedAt: now}))
	kr, err := pki.NewKeyring(bytes.Repeat([]byte{9}, pki.MasterKeySize))
	must(t, err)
	keys, err := audit.LoadOrCreateKeys(ctx, s, kr)
	must(t, err)
	log, err := audit.New(audit.Config{Store: s, Keys: keys, Clock: clock{now}})
	must(t, err)
	for _, action := range []string{"device.quarantine", "token.create"} {
		must(t, log.Record(ctx, steward.AuditRecord{TenantID: tenant, Actor: "token:t-admin", Action: action, Outcome: steward.AuditSuccess, At: now}))
	}
	return log
}

func ids[T any](list []T, id func(T) string) []string {
	var out []string
	for _, x := range list {
		out = append(out, id(x))
	}
	slices.Sort(out)
	return out
}

func TestReport(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "compliance_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			log := fleet(t, s)
			svc := New(s, log, clock{now}, nil)
			r, err := svc.Report(t.Context(), tenant, Options{})
			must(t, err)
			dev := func(f DeviceFinding) string { return f.DeviceID }
			checks := []struct {
				what      string
				got, want []string
			}{
				{"unapproved firmware", ids(r.UnapprovedFirmware, dev), []string{"d-sensor-old", "d-unapproved"}},
				{"quarantined", ids(r.Quarantined, dev), []string{"d-quar"}},
				{"offline", ids(r.Offline, dev), []string{"d-silent"}},
				{"expiring certificates", ids(r.ExpiringCertificates, func(c CertFinding) string { return c.Serial }), []string{"0a"}},
				{"drift", ids(r.Drift, func(d DriftFinding) string { return d.DeviceID }), []string{"d-good"}},
				{"critical alerts", ids(r.CriticalAlerts, func(a AlertFinding) string { return a.AlertID }), []string{"al-1"}},
				{"administrators", ids(r.Administrators, func(a AdminFinding) string { return a.Kind + ":" + a.ID }), []string{"token:t-admin", "user:u-1"}},
			}
			for _, c := range checks {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
				}
			}
			if r.Summary.Devices != 8 || r.Summary.Compliant || !r.Summary.AuditVerified || r.Audit.Records != 2 {
				t.Errorf("summary %+v, audit %+v", r.Summary, r.Audit)
			}
			if q := r.Quarantined[0]; !strings.Contains(q.Detail, "repeated refused ACL checks") || !strings.Contains(q.Detail, "system") {
				t.Errorf("quarantine finding %+v does not say why", q)
			}
			for _, f := range r.UnapprovedFirmware {
				if f.DeviceID == "d-unapproved" && !strings.Contains(f.Detail, "enrollment group line-1") {
					t.Errorf("finding %+v does not name the group's policy", f)
				}
				if f.DeviceID == "d-sensor-old" && !strings.Contains(f.Detail, "released firmware artifact") {
					t.Errorf("finding %+v does not name the released artifacts", f)
				}
			}
		})
	}
}

func TestReportFormats(t *testing.T) {
	t.Parallel()
	s := teststores.Backends(t, "compliance_")["sqlite"](t)
	log := fleet(t, s)
	r, err := New(s, log, clock{now}, nil).Report(t.Context(), tenant, Options{OfflineAfter: 30 * time.Minute})
	must(t, err)
	if got := ids(r.Offline, func(f DeviceFinding) string { return f.DeviceID }); !slices.Equal(got, []string{"d-recent", "d-silent"}) {
		t.Fatalf("offline with a 30 min threshold: %v", got)
	}

	var js bytes.Buffer
	must(t, r.Write(&js, FormatJSON))
	var back Report
	must(t, json.Unmarshal(js.Bytes(), &back))
	if back.Summary != r.Summary || len(back.Offline) != 2 || back.OfflineAfterHours != 0.5 {
		t.Fatalf("JSON round trip: %+v", back.Summary)
	}

	var cs bytes.Buffer
	must(t, r.Write(&cs, FormatCSV))
	rows, err := csv.NewReader(&cs).ReadAll()
	must(t, err)
	if !slices.Equal(rows[0], CSVHeader) {
		t.Fatalf("CSV header %v", rows[0])
	}
	sections := map[string]int{}
	for _, row := range rows[1:] {
		sections[row[0]]++
	}
	want := map[string]int{"report": 1, "unapproved_firmware": 2, "expiring_certificate": 1, "offline": 2, "quarantined": 1,
		"configuration_drift": 1, "open_critical_alert": 1, "administrator": 2, "audit_log": 1}
	for k, n := range want {
		if sections[k] != n {
			t.Errorf("CSV section %s: %d rows, want %d (%v)", k, sections[k], n, sections)
		}
	}

	var html bytes.Buffer
	must(t, r.Write(&html, FormatHTML))
	for _, want := range []string{"<!DOCTYPE html>", "Compliance report: acme", "d-unapproved", "repeated refused ACL checks", "@media print", "Verified: 2 records"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	if err := r.Write(&html, "pdf"); err == nil {
		t.Error("an unknown format was accepted")
	}
}

// TestReportShowsAuditTampering: an audit record changed behind the
// server's back makes the report say the log does not verify.
func TestReportShowsAuditTampering(t *testing.T) {
	t.Parallel()
	s := teststores.Backends(t, "compliance_")["sqlite"](t)
	log := fleet(t, s)
	if _, err := s.DB().ExecContext(t.Context(), `UPDATE audit_records SET data = CAST(replace(CAST(data AS TEXT), 'token.create', 'token.delete') AS BLOB) WHERE tenant_id = ?`, tenant); err != nil {
		t.Fatal(err)
	}
	r, err := New(s, log, clock{now}, nil).Report(context.Background(), tenant, Options{})
	must(t, err)
	if r.Summary.AuditVerified || r.Audit.OK || len(r.Audit.Problems) == 0 {
		t.Fatalf("tampered log reported as %+v", r.Audit)
	}
}
