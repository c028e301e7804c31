package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// testDevicePrivacy checks consent, export and erasure: the export holds
// the device's rows of every kind and none of another device's; erasure
// revokes and deletes them all, the device too, keeps a tombstone with the
// certificates' serials, and leaves the other device alone; bad consent
// and erasure of an unknown device change nothing.
func testDevicePrivacy(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	mine, theirs := device(tenantA, "d-priv-1"), device(tenantA, "d-priv-2")
	theirs.FactoryID = "factory-priv-2"
	createDevices(t, s, mine, theirs, device(tenantB, "d-priv-b"))
	must(t, s.CreateAlertRule(c, alertRule(tenantA, "r-priv", "privacy")))
	for _, id := range []string{mine.ID, theirs.ID} {
		must(t, s.AddCertificate(c, cert(tenantA, id, "cafe"+id[len(id)-1:], t0)))
		must(t, s.AddLifecycleEvent(c, steward.LifecycleEvent{TenantID: tenantA, DeviceID: id, From: steward.StateProvisioned, To: steward.StateActive, Actor: "system", At: t0}))
		must(t, s.AddSecurityEvent(c, steward.SecurityEvent{TenantID: tenantA, DeviceID: id, Kind: steward.SecAuthFailed, Detail: "x", At: t0}))
		must(t, s.AddPresenceEvent(c, steward.PresenceEvent{TenantID: tenantA, DeviceID: id, Online: true, At: t0}))
		must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{{TenantID: tenantA, DeviceID: id, Type: "reboot", Severity: steward.SeverityInfo, At: t0, Received: t0}}))
		must(t, s.WriteSamples(c, []steward.Sample{{TenantID: tenantA, DeviceID: id, Metric: "cpu", Value: 2, At: h0.Add(time.Minute)}}))
		_, err := s.PutAlert(c, openAlert(tenantA, "al-"+id, "r-priv", id))
		must(t, err)
	}
	// Through the end of the day, so that the day is closed and has its
	// day rollup (RollupSamples does not recompute an open day).
	must(t, s.RollupSamples(c, h0, h0.Truncate(steward.RollupDay).Add(steward.RollupDay)))

	// Consent.
	wantCode(t, s.PutDeviceConsent(c, steward.DeviceConsent{TenantID: tenantA, DeviceID: mine.ID, Personal: true, Granted: []string{"dreams"}, UpdatedAt: t0}), steward.CodeInvalid)
	wantCode(t, s.PutDeviceConsent(c, steward.DeviceConsent{TenantID: tenantB, DeviceID: mine.ID, Personal: true, UpdatedAt: t0}), steward.CodeNotFound)
	_, err := s.GetDeviceConsent(c, tenantA, mine.ID)
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.PutDeviceConsent(c, steward.DeviceConsent{TenantID: tenantA, DeviceID: mine.ID, Personal: true, Granted: []string{steward.ConsentEvents}, UpdatedAt: t0}))
	must(t, s.PutDeviceConsent(c, steward.DeviceConsent{TenantID: tenantA, DeviceID: theirs.ID, Personal: true, Granted: []string{steward.ConsentTelemetry}, UpdatedAt: t0}))
	withheld, err := s.WithheldDevices(c, tenantA, steward.ConsentTelemetry)
	must(t, err)
	eqStrings(t, "withheld telemetry", withheld, []string{mine.ID})
	withheld, err = s.WithheldDevices(c, tenantB, steward.ConsentTelemetry)
	must(t, err)
	eqStrings(t, "withheld in tenant B", withheld, nil)

	// Export.
	x, err := s.ExportDevice(c, tenantA, mine.ID, t0)
	must(t, err)
	if x.Device.ID != mine.ID || x.Consent == nil || len(x.Certificates) != 1 || len(x.Lifecycle) != 1 || len(x.SecurityEvents) != 1 ||
		len(x.Presence) != 1 || len(x.Events) != 1 || len(x.Samples) != 1 || len(x.Latest) != 1 || len(x.Minutes) != 1 ||
		len(x.Hours) != 1 || len(x.Days) != 1 || len(x.Alerts) != 1 {
		t.Fatalf("export %+v", x)
	}
	for _, a := range x.Alerts {
		if a.DeviceID != mine.ID {
			t.Fatalf("export holds another device's alert %+v", a)
		}
	}
	_, err = s.ExportDevice(c, tenantB, mine.ID, t0)
	wantCode(t, err, steward.CodeNotFound)

	// Erasure.
	_, err = s.EraseDevice(c, steward.DeviceTombstone{TenantID: tenantB, DeviceID: mine.ID, ErasedAt: t0, ErasedBy: "token:x"})
	wantCode(t, err, steward.CodeNotFound)
	if _, err := s.GetDevice(c, tenantA, mine.ID); err != nil {
		t.Fatalf("a refused erasure changed the device: %v", err)
	}
	tomb, err := s.EraseDevice(c, steward.DeviceTombstone{TenantID: tenantA, DeviceID: mine.ID, ErasedAt: at(time.Hour), ErasedBy: "token:x"})
	must(t, err)
	for _, table := range []string{"devices", "certificates", "lifecycle_events", "security_events", "presence_events", "device_events",
		"samples", "metric_latest", "samples_1m", "samples_1h", "samples_1d", "alerts", "device_consent"} {
		if tomb.Erased[table] != 1 {
			t.Fatalf("erased %v: want one row of %s", tomb.Erased, table)
		}
	}
	eqStrings(t, "serials", tomb.Serials, []string{"cafe1"})
	got, err := s.GetDeviceTombstone(c, tenantA, mine.ID)
	must(t, err)
	if got.ErasedBy != "token:x" || !got.ErasedAt.Equal(stored(at(time.Hour))) || len(got.Serials) != 1 {
		t.Fatalf("tombstone %+v", got)
	}
	_, err = s.GetDevice(c, tenantA, mine.ID)
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.GetCertificate(c, tenantA, "cafe1")
	wantCode(t, err, steward.CodeNotFound)
	if sm, err := s.ListSamples(c, tenantA, mine.ID, "cpu", time.Time{}, time.Time{}, 0); err != nil || len(sm) != 0 {
		t.Fatalf("samples left: %v %v", sm, err)
	}
	// The other device keeps everything.
	x, err = s.ExportDevice(c, tenantA, theirs.ID, t0)
	must(t, err)
	if len(x.Certificates) != 1 || x.Certificates[0].Revoked() || len(x.Samples) != 1 || len(x.Events) != 1 || len(x.Alerts) != 1 || x.Consent == nil {
		t.Fatalf("the other device's export after the erasure: %+v", x)
	}
	_, err = s.GetDeviceTombstone(c, tenantA, theirs.ID)
	wantCode(t, err, steward.CodeNotFound)
}
