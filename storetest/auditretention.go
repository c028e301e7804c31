package storetest

import (
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/retention"
)

// testAuditRetention runs the retention job over tenants' audit logs: a
// period under the minimum is refused and changes nothing; tenant A's
// records past its period lose their bodies, exactly those, and keep their
// leaf hashes, so the log still verifies; tenant B, on the default, keeps
// everything; the run is itself recorded with what it deleted per class,
// and a second run has nothing to do and records nothing.
func testAuditRetention(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	createDevices(t, s, device(tenantA, "d-auret-a"))
	now := time.Date(2029, 3, 4, 5, 6, 7, 0, time.UTC)
	keys, err := audit.KeysOf(ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)))
	must(t, err)
	l, err := audit.New(audit.Config{Store: s, Keys: keys, Clock: fixedClock{now}})
	must(t, err)
	reg, err := steward.NewRetentionRegistry(append(steward.StoreRetentionClasses(s), l.Class())...)
	must(t, err)

	period := 400 * 24 * time.Hour
	cutoff := now.Add(-period)
	// Records a day apart around the cutoff: 0 to 4 are older, 5 is at it.
	for _, tn := range []string{tenantA, tenantB} {
		for i := range 8 {
			must(t, l.Record(c, steward.AuditRecord{TenantID: tn, Actor: "user:u-1", Action: "device.quarantine", Target: "device:d-1",
				Outcome: steward.AuditSuccess, Remote: "192.0.2.9:4000", At: cutoff.Add(time.Duration(i-5) * 24 * time.Hour)}))
		}
	}
	// One device event past its period too, so the run deletes two classes.
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{{TenantID: tenantA, DeviceID: "d-auret-a", Type: "reboot", Severity: steward.SeverityInfo,
		At: now.Add(-100 * 24 * time.Hour), Received: now}}))

	// Under the minimum: refused, nothing changes.
	for _, p := range []time.Duration{audit.MinRetention - time.Second, time.Hour, -24 * time.Hour} {
		if _, _, err := l.SetRetention(c, audit.RetentionChange{Tenant: tenantA, Period: p, Actor: "user:u-1", Remote: "192.0.2.9:4000"}); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Fatalf("period %s: %v, want CodeInvalid", p, err)
		}
	}
	os, err := s.ListRetentionOverrides(c, tenantA)
	must(t, err)
	if n, _ := s.AuditSize(c, tenantA); len(os) != 0 || n != 8 {
		t.Fatalf("a refused period changed something: overrides %+v, log size %d", os, n)
	}
	pol, pending, err := l.SetRetention(c, audit.RetentionChange{Tenant: tenantA, Period: period, Actor: "user:u-1", Remote: "192.0.2.9:4000"})
	must(t, err)
	if pending != nil {
		t.Fatalf("an approval was asked for without approval policies: %+v", pending)
	}
	if pol.Period == nil || time.Duration(*pol.Period) != period || pol.Minimum != steward.Duration(audit.MinRetention) {
		t.Fatalf("policy %+v", pol)
	}
	rs, err := l.Search(c, tenantA, steward.AuditFilter{Action: audit.RetentionAction, Cursor: steward.NoAuditCursor})
	must(t, err)
	if len(rs) != 1 || rs[0].Actor != "user:u-1" || string(rs[0].Before) != `{"period":"forever"}` || string(rs[0].After) != `{"period":"9600h0m0s"}` {
		t.Fatalf("the change's record: %+v", rs)
	}

	job := retention.New(retention.Config{Store: s, Registry: reg, Clock: fixedClock{now}, Chunk: 2, Auditor: l})
	pruned, err := job.RunOnce(c)
	must(t, err)
	if pruned[audit.RetentionClass] != 5 || pruned[steward.RetentionDeviceEvents] != 1 {
		t.Fatalf("pruned %v", pruned)
	}
	for tn, want := range map[string]int64{tenantA: 5, tenantB: 0} {
		es, err := s.AuditEntries(c, tn, 0, 100)
		must(t, err)
		for _, e := range es[:8] {
			if got := len(e.Data) == 0; got != (e.Record.Index < want) {
				t.Errorf("tenant %s record %d at %s: pruned %v", tn, e.Record.Index, e.Record.At, got)
			}
		}
		rep, err := l.Verify(c, tn)
		must(t, err)
		if !rep.OK || rep.PrunedRecords != want {
			t.Fatalf("tenant %s: report %+v, want %d pruned", tn, rep, want)
		}
	}
	runs, err := l.Search(c, tenantA, steward.AuditFilter{Action: "retention.run", Cursor: steward.NoAuditCursor})
	must(t, err)
	if len(runs) != 1 || runs[0].Actor != "system:retention" || runs[0].Outcome != steward.AuditSuccess {
		t.Fatalf("run records %+v", runs)
	}
	var run struct {
		Deleted map[string]int       `json:"deleted"`
		Before  map[string]time.Time `json:"before"`
	}
	must(t, json.Unmarshal(runs[0].After, &run))
	if len(run.Deleted) != 2 || run.Deleted[audit.RetentionClass] != 5 || run.Deleted[steward.RetentionDeviceEvents] != 1 ||
		!run.Before[audit.RetentionClass].Equal(cutoff) {
		t.Fatalf("the run's record: %s", runs[0].After)
	}
	if rs, _ := l.Search(c, tenantB, steward.AuditFilter{Action: "retention.run", Cursor: steward.NoAuditCursor}); len(rs) != 0 {
		t.Fatalf("a run with nothing to do for tenant B was recorded: %+v", rs)
	}

	// Nothing is due any more: no deletion, no record.
	size, err := s.AuditSize(c, tenantA)
	must(t, err)
	pruned, err = job.RunOnce(c)
	must(t, err)
	if n, _ := s.AuditSize(c, tenantA); len(pruned) != 0 || n != size {
		t.Fatalf("second run pruned %v, log size %d → %d", pruned, size, n)
	}
	if pol, err = l.Retention(c, tenantA); err != nil || pol.PrunedUpTo != 5 {
		t.Fatalf("policy after the run %+v: %v", pol, err)
	}
}
