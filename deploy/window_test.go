package deploy

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestWindowsAcrossZonesAndDST checks when windows open, read in UTC, on
// ordinary days and across the daylight-saving changes of 2026 in Berlin
// (29 March, 25 October) and New York (8 March, 1 November).
func TestWindowsAcrossZonesAndDST(t *testing.T) {
	t.Parallel()
	berlin := steward.MaintenanceWindow{Name: "berlin night", Cron: "0 2 * * *", Duration: steward.Duration(2 * time.Hour), TimeZone: "Europe/Berlin"}
	ny := steward.MaintenanceWindow{Name: "ny night", Cron: "30 1 * * *", Duration: steward.Duration(time.Hour), TimeZone: "America/New_York"}
	tokyo := steward.MaintenanceWindow{Name: "tokyo weekdays", Cron: "0 22 * * 1-5", Duration: steward.Duration(3 * time.Hour), TimeZone: "Asia/Tokyo"}
	for _, tc := range []struct {
		name     string
		w        steward.MaintenanceWindow
		at       string
		open     bool
		from, to string
	}{
		// Berlin, winter (CET, UTC+1): 02:00–04:00 is 01:00–03:00 UTC.
		{"berlin winter inside", berlin, "2026-03-28T01:30:00Z", true, "2026-03-28T01:00:00Z", "2026-03-28T03:00:00Z"},
		{"berlin winter before", berlin, "2026-03-28T00:59:00Z", false, "2026-03-28T01:00:00Z", "2026-03-28T03:00:00Z"},
		{"berlin winter end is exclusive", berlin, "2026-03-28T03:00:00Z", false, "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
		// 29 March: 02:00 does not exist (the clock jumps to 03:00 CEST);
		// the window opens at the jump and ends at 04:00 CEST.
		{"berlin spring forward", berlin, "2026-03-29T01:30:00Z", true, "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"},
		// Summer (CEST, UTC+2): the same wall clock is an hour earlier in UTC.
		{"berlin summer inside", berlin, "2026-03-30T00:30:00Z", true, "2026-03-30T00:00:00Z", "2026-03-30T02:00:00Z"},
		{"berlin summer after", berlin, "2026-03-30T02:00:00Z", false, "2026-03-31T00:00:00Z", "2026-03-31T02:00:00Z"},
		// 25 October: 02:00 CEST, then 03:00 CEST becomes 02:00 CET; the
		// window ends at 04:00 CET, three hours after it opened.
		{"berlin fall back", berlin, "2026-10-25T02:30:00Z", true, "2026-10-25T00:00:00Z", "2026-10-25T03:00:00Z"},
		{"berlin after fall back", berlin, "2026-10-26T01:30:00Z", true, "2026-10-26T01:00:00Z", "2026-10-26T03:00:00Z"},
		// New York, EST (UTC−5) then EDT (UTC−4) from 8 March.
		{"ny winter", ny, "2026-03-07T06:45:00Z", true, "2026-03-07T06:30:00Z", "2026-03-07T07:30:00Z"},
		// 8 March: 02:30 does not exist; the window ends at the jump
		// (02:00 EST is 03:00 EDT), half an hour after it opened.
		{"ny spring forward night", ny, "2026-03-08T06:45:00Z", true, "2026-03-08T06:30:00Z", "2026-03-08T07:00:00Z"},
		{"ny spring forward jump", ny, "2026-03-08T07:00:00Z", false, "2026-03-09T05:30:00Z", "2026-03-09T06:30:00Z"},
		{"ny summer before", ny, "2026-03-09T05:15:00Z", false, "2026-03-09T05:30:00Z", "2026-03-09T06:30:00Z"},
		{"ny summer inside", ny, "2026-03-09T05:45:00Z", true, "2026-03-09T05:30:00Z", "2026-03-09T06:30:00Z"},
		// 1 November: 01:30 comes twice (EDT, then EST); a device that
		// missed the first is told in the second.
		{"ny fall back first pass", ny, "2026-11-01T05:45:00Z", true, "2026-11-01T05:30:00Z", "2026-11-01T07:30:00Z"},
		{"ny fall back second pass", ny, "2026-11-01T06:45:00Z", true, "2026-11-01T05:30:00Z", "2026-11-01T07:30:00Z"},
		{"ny after fall back", ny, "2026-11-02T06:00:00Z", false, "2026-11-02T06:30:00Z", "2026-11-02T07:30:00Z"},
		// Tokyo (no DST, UTC+9), weekdays only: Friday 22:00 JST is 13:00 UTC;
		// the next one after it is Monday.
		{"tokyo friday", tokyo, "2026-11-27T14:00:00Z", true, "2026-11-27T13:00:00Z", "2026-11-27T16:00:00Z"},
		{"tokyo weekend", tokyo, "2026-11-28T14:00:00Z", false, "2026-11-30T13:00:00Z", "2026-11-30T16:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w, err := CompileWindow(tc.w)
			must(t, err)
			now := utc(tc.at)
			open, from, to := w.At(now)
			if open != tc.open || !from.Equal(utc(tc.from)) || !to.Equal(utc(tc.to)) {
				t.Fatalf("At(%s) = %v %s %s, want %v %s %s", tc.at, open, from.Format(time.RFC3339), to.Format(time.RFC3339), tc.open, tc.from, tc.to)
			}
			if !open && !from.After(now) {
				t.Fatalf("the next opening %s is not after %s", from, now)
			}
		})
	}
}

func TestWindowInvalid(t *testing.T) {
	t.Parallel()
	for _, w := range []steward.MaintenanceWindow{
		{Cron: "0 2 * *", Duration: steward.Duration(time.Hour), TimeZone: "UTC"},
		{Cron: "0 25 * * *", Duration: steward.Duration(time.Hour), TimeZone: "UTC"},
		{Cron: "0 2 * * *", Duration: steward.Duration(time.Hour), TimeZone: "Europe/Atlantis"},
		{Cron: "0 2 * * *", Duration: steward.Duration(time.Hour), TimeZone: "Local"},
		{Cron: "0 2 * * *", Duration: 0, TimeZone: "UTC"},
	} {
		if _, err := CompileWindow(w); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("%+v: err %v, want invalid", w, err)
		}
	}
}

// TestWindowsHoldDevicesBack: a device is told only inside its window (the
// job says until when it may install); an approved emergency skips windows.
func TestWindowsHoldDevicesBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 0)
	e.addDevice("d-berlin", "berlin", nil)
	e.addDevice("d-ny", "new-york", nil)
	e.addDevice("d-any", "lisbon", nil)
	e.clock.Set(utc("2026-11-27T12:00:00Z"))
	d := e.create(steward.DeploymentSpec{Windows: []steward.MaintenanceWindow{
		{Name: "berlin", Match: "site=berlin", Cron: "0 2 * * *", Duration: steward.Duration(2 * time.Hour), TimeZone: "Europe/Berlin"},
		{Name: "ny", Match: "site=new-york", Cron: "30 1 * * *", Duration: steward.Duration(time.Hour), TimeZone: "America/New_York"}}})
	e.tick(d.ID)
	d = e.tick(d.ID)
	row := func(id string) steward.DeploymentDevice {
		r, err := e.store.GetDeploymentDevice(t.Context(), tenant, d.ID, id)
		must(t, err)
		return r
	}
	if r := row("d-any"); r.State != steward.UpdateNotified { // no window applies
		t.Fatalf("d-any %+v", r)
	}
	if r := row("d-berlin"); r.State != steward.UpdatePending || !r.NotBefore.Equal(utc("2026-11-28T01:00:00Z")) {
		t.Fatalf("d-berlin %+v", r)
	}
	if r := row("d-ny"); r.State != steward.UpdatePending || !r.NotBefore.Equal(utc("2026-11-28T06:30:00Z")) {
		t.Fatalf("d-ny %+v", r)
	}
	e.clock.Set(utc("2026-11-28T01:10:00Z"))
	d = e.tick(d.ID)
	if r := row("d-berlin"); r.State != steward.UpdateNotified {
		t.Fatalf("d-berlin in its window: %+v", r)
	}
	if r := row("d-ny"); r.State != steward.UpdatePending {
		t.Fatalf("d-ny outside its window: %+v", r)
	}
	jobs := e.jobsOf("d-berlin")
	if len(jobs) != 1 || jobs[0].InstallWindow == nil || !jobs[0].InstallWindow.To.Equal(utc("2026-11-28T03:00:00Z")) {
		t.Fatalf("d-berlin jobs %+v", jobs)
	}
	if j := e.jobsOf("d-any"); len(j) != 1 || j[0].InstallWindow != nil {
		t.Fatalf("d-any jobs %+v", j)
	}

	// An approved emergency does not wait.
	em := newEnv(t, 0)
	em.addDevice("d-berlin", "berlin", nil)
	em.clock.Set(utc("2026-11-27T12:00:00Z"))
	d2 := em.create(steward.DeploymentSpec{Emergency: true, Windows: []steward.MaintenanceWindow{
		{Match: "site=berlin", Cron: "0 2 * * *", Duration: steward.Duration(2 * time.Hour), TimeZone: "Europe/Berlin"}}})
	em.wantState(d2, steward.DeploymentAwaitingApproval)
	_, err := em.engine.Approve(t.Context(), tenant, d2.ID, "user:bob", "CVE fix")
	must(t, err)
	em.tick(d2.ID)
	em.tick(d2.ID)
	if j := em.jobsOf("d-berlin"); len(j) != 1 || !j[0].Emergency || j[0].InstallWindow != nil {
		t.Fatalf("emergency jobs %+v", j)
	}
}
