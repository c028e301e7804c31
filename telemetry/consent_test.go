package telemetry

import (
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// TestIntakeConsent checks that the telemetry of a personal device without
// consent to telemetry is dropped and counted, that of a device with it (or
// not personal) kept, and that a change applies at once through
// ConsentChanged.
func TestIntakeConsent(t *testing.T) {
	t.Parallel()
	e := newSchemaEnv(t)
	c := t.Context()
	must(t, e.store.PutDeviceConsent(c, steward.DeviceConsent{TenantID: "t1", DeviceID: "d-free", Personal: true, Granted: []string{steward.ConsentEvents}, UpdatedAt: schemaT0}))
	must(t, e.store.PutDeviceConsent(c, steward.DeviceConsent{TenantID: "t1", DeviceID: "d-nomodel", Personal: true, Granted: []string{steward.ConsentTelemetry}, UpdatedAt: schemaT0}))
	payload := `{"ts":"2026-11-27T10:00:00Z","metrics":{"cpu":0.5,"memory":0.25}}`
	for _, d := range []string{"d-free", "d-nomodel", "d-gw"} {
		if err := e.send(t, "t1", d, payload); err != nil {
			t.Fatalf("%s: ack %v", d, err)
		}
	}
	if got := e.stored(t, "t1", "d-free"); len(got) != 0 {
		t.Fatalf("device without consent: stored %v", got)
	}
	for _, d := range []string{"d-nomodel", "d-gw"} {
		if got := e.stored(t, "t1", d); !slices.Equal(got, []string{"cpu", "memory"}) {
			t.Fatalf("%s: stored %v", d, got)
		}
	}
	if e.in.ConsentDropped() != 2 || e.drops.get(DropConsent) != 2 {
		t.Fatalf("consent drops %d / %d, want 2", e.in.ConsentDropped(), e.drops.get(DropConsent))
	}

	// Consent given: kept from the next message on.
	must(t, e.store.PutDeviceConsent(c, steward.DeviceConsent{TenantID: "t1", DeviceID: "d-free", Personal: true, Granted: []string{steward.ConsentTelemetry}, UpdatedAt: schemaT0.Add(time.Minute)}))
	e.in.ConsentChanged("t1")
	if err := e.send(t, "t1", "d-free", payload); err != nil {
		t.Fatal(err)
	}
	if got := e.stored(t, "t1", "d-free"); !slices.Equal(got, []string{"cpu", "memory"}) {
		t.Fatalf("after consent: stored %v", got)
	}
	if e.in.ConsentDropped() != 2 {
		t.Fatalf("consent drops %d after consent, want still 2", e.in.ConsentDropped())
	}
}
