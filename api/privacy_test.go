package api

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/privacy"
)

// TestDevicePrivacy walks a personal device through consent, export and
// erasure over the API: the export holds what was written about it, the
// erasure leaves nothing but the tombstone and the audit record, and bad
// requests change nothing.
func TestDevicePrivacy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := context.Background()
	var mu sync.Mutex
	var audited []steward.AuditRecord
	e.api.cfg.Privacy = privacy.New(privacy.Config{Store: e.store, Auditor: steward.AuditorFunc(func(_ context.Context, r steward.AuditRecord) error {
		mu.Lock()
		defer mu.Unlock()
		audited = append(audited, r)
		return nil
	})})
	d := e.addDevice(t, steward.DefaultTenant, deviceID("privacy"), "gw-1", nil)
	other := e.addDevice(t, steward.DefaultTenant, deviceID("privacy-other"), "gw-1", nil)
	now := time.Now().UTC().Truncate(time.Second)
	for _, id := range []string{d.ID, other.ID} {
		if err := e.store.WriteSamples(c, []steward.Sample{{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 1.5, At: now.Add(-time.Minute)}}); err != nil {
			t.Fatal(err)
		}
		if err := e.store.AddDeviceEvents(c, []steward.DeviceEvent{{TenantID: steward.DefaultTenant, DeviceID: id, Type: "reboot", Severity: steward.SeverityInfo, At: now, Received: now}}); err != nil {
			t.Fatal(err)
		}
	}
	base := "/api/v1/devices/" + d.ID

	// Consent: none yet (not personal), then set; a bad class changes nothing.
	var got steward.DeviceConsent
	e.must(t, http.StatusOK, "GET", base+"/consent", e.system, nil).decode(t, &got)
	if got.Personal || len(got.Granted) != 0 {
		t.Fatalf("consent of a new device: %+v", got)
	}
	e.must(t, http.StatusOK, "PUT", base+"/consent", e.system, ConsentRequest{Personal: true, Granted: []string{steward.ConsentEvents}}).decode(t, &got)
	for _, bad := range []ConsentRequest{{Personal: true, Granted: []string{"dreams"}}, {Personal: true, Granted: []string{"events", "events"}}} {
		if p := e.must(t, http.StatusBadRequest, "PUT", base+"/consent", e.system, bad).problem(t); p.Detail == "" {
			t.Fatalf("no detail in %+v", p)
		}
	}
	e.must(t, http.StatusOK, "GET", base+"/consent", e.system, nil).decode(t, &got)
	if !got.Personal || len(got.Granted) != 1 || got.Granted[0] != steward.ConsentEvents {
		t.Fatalf("consent after a refused change: %+v", got)
	}

	// Export: the device's own data, none of the other device's.
	var x steward.DeviceExport
	r := e.must(t, http.StatusOK, "GET", base+"/export", e.system, nil)
	r.decode(t, &x)
	if x.Device.ID != d.ID || x.Consent == nil || !x.Consent.Personal || len(x.Samples) != 1 || len(x.Latest) != 1 || len(x.Events) != 1 ||
		x.Samples[0].DeviceID != d.ID || x.Events[0].DeviceID != d.ID {
		t.Fatalf("export: %+v", x)
	}
	if cd := r.header.Get("Content-Disposition"); cd == "" {
		t.Fatalf("export without a file name")
	}

	// Erasure: the device and its rows are gone, the other device's stay,
	// the tombstone and the audit record remain.
	var tomb steward.DeviceTombstone
	e.must(t, http.StatusOK, "POST", base+"/erase", e.system, nil).decode(t, &tomb)
	if tomb.DeviceID != d.ID || tomb.Erased["samples"] != 1 || tomb.Erased["device_events"] != 1 || tomb.Erased["devices"] != 1 || tomb.Erased["device_consent"] != 1 {
		t.Fatalf("tombstone %+v", tomb)
	}
	e.must(t, http.StatusNotFound, "GET", "/api/v1/devices/"+d.ID, e.system, nil)
	e.must(t, http.StatusNotFound, "GET", base+"/export", e.system, nil)
	e.must(t, http.StatusNotFound, "POST", base+"/erase", e.system, nil)
	if s, err := e.store.ListSamples(c, steward.DefaultTenant, d.ID, "cpu", time.Time{}, time.Time{}, 0); err != nil || len(s) != 0 {
		t.Fatalf("samples after erasure: %v, %v", s, err)
	}
	if s, err := e.store.ListSamples(c, steward.DefaultTenant, other.ID, "cpu", time.Time{}, time.Time{}, 0); err != nil || len(s) != 1 {
		t.Fatalf("the other device's samples after erasure: %v, %v", s, err)
	}
	if _, err := e.store.GetDeviceTombstone(c, steward.DefaultTenant, d.ID); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	var erased, consent int
	for _, a := range audited {
		switch {
		case a.Action == "device.erase" && a.Outcome == steward.AuditSuccess && a.Target == "device:"+d.ID:
			erased++
		case a.Action == "device.consent":
			consent++
		}
	}
	if erased != 1 || consent != 1 {
		t.Fatalf("audit records %+v: want one erasure and one consent", audited)
	}
}
