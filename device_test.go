package steward

import (
	"testing"
	"time"
)

func TestCanTransition(t *testing.T) {
	t.Parallel()
	allowed := map[[2]State]bool{
		{StateRegistered, StateProvisioned}:  true,
		{StateProvisioned, StateActive}:      true,
		{StateProvisioned, StateQuarantined}: true,
		{StateActive, StateQuarantined}:      true,
		{StateQuarantined, StateActive}:      true,
		{StateActive, StateMaintenance}:      true,
		{StateMaintenance, StateActive}:      true,
		// A transfer returns an enrolled device to registered.
		{StateProvisioned, StateRegistered}: true,
		{StateActive, StateRegistered}:      true,
		{StateQuarantined, StateRegistered}: true,
		{StateMaintenance, StateRegistered}: true,
	}
	for _, from := range States {
		for _, to := range States {
			want := allowed[[2]State{from, to}] || (to == StateDecommissioned && from != StateDecommissioned)
			t.Run(string(from)+"->"+string(to), func(t *testing.T) {
				t.Parallel()
				if got := CanTransition(from, to); got != want {
					t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
				}
			})
		}
	}
	if CanTransition(StateActive, "bogus") {
		t.Error("transition to an unknown state allowed")
	}
}

func TestTransition(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	d := &Device{ID: "d-1", TenantID: "t", State: StateProvisioned}
	ev, err := Transition(d, StateQuarantined, "firmware not approved", "system", at)
	if err != nil {
		t.Fatal(err)
	}
	if d.State != StateQuarantined || d.StateReason != "firmware not approved" || d.StateActor != "system" || !d.StateChangedAt.Equal(at) {
		t.Errorf("device after transition: %+v", d)
	}
	if ev.From != StateProvisioned || ev.To != StateQuarantined || ev.DeviceID != "d-1" || ev.TenantID != "t" {
		t.Errorf("event: %+v", ev)
	}
	before := *d
	if _, err := Transition(d, StateMaintenance, "x", "y", at); ErrorCode(err) != CodeFailedPrecondition {
		t.Fatalf("quarantined → maintenance: err %v, want failed_precondition", err)
	}
	if d.State != before.State || d.StateReason != before.StateReason {
		t.Error("a refused transition changed the device")
	}
}

func TestApplyAttributes(t *testing.T) {
	t.Parallel()
	d := &Device{Serial: "SN-FACTORY"}
	d.ApplyAttributes(map[string]any{"model": " gw-100 ", "serial": "SN-OTHER", "firmware": "1.2.0", "hardware": "revB", "os": "linux", "cores": 4.0})
	if d.Model != "gw-100" || d.Firmware != "1.2.0" || d.Hardware != "revB" {
		t.Errorf("well-known fields: %+v", d)
	}
	if d.Serial != "SN-FACTORY" {
		t.Errorf("a report changed the factory serial to %q", d.Serial)
	}
	if d.Attributes["os"] != "linux" || d.Attributes["cores"] != 4.0 {
		t.Errorf("unknown keys not kept: %v", d.Attributes)
	}
}

func TestValidDeviceID(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{
		"d-abc123": true, "": false, "a/b": false, "a+b": false, "a#": false, "é": false,
		"x234567890123456789012345678901234567890123456789012345678901234":  true,
		"x2345678901234567890123456789012345678901234567890123456789012345": false,
	} {
		if got := ValidDeviceID(id); got != want {
			t.Errorf("ValidDeviceID(%q) = %v, want %v", id, got, want)
		}
	}
}
