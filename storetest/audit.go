package storetest

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// The store keeps the audit log's rows in order; it does not hash or sign
// (the audit package does), so these tests use stand-in hashes and notes.

// auditRec returns record i of tenant's log.
func auditRec(tenant string, i int64, actor, action, target, outcome string) steward.AuditRecord {
	return steward.AuditRecord{Index: i, TenantID: tenant, Actor: actor, Action: action, Target: target, Outcome: outcome,
		Remote: "192.0.2.7:5555", RequestID: fmt.Sprintf("req-%d", i), At: at(time.Duration(i) * time.Minute),
		After: json.RawMessage(`{"state":"quarantined"}`)}
}

// auditEntry wraps r with its JSON and a stand-in hash per index.
func auditEntry(t *testing.T, r steward.AuditRecord) steward.AuditEntry {
	t.Helper()
	data, err := json.Marshal(r)
	must(t, err)
	h := sha256.Sum256(data)
	return steward.AuditEntry{Record: r, Data: data, Hashes: bytes.Repeat(h[:], 1+int(r.Index%3))}
}

// auditCP is a stand-in checkpoint of tenant's log at size.
func auditCP(tenant string, size int64) steward.AuditCheckpoint {
	return steward.AuditCheckpoint{TenantID: tenant, Size: size, Note: fmt.Sprintf("log %s\n%d\n\n— signer abc=\n", tenant, size), CreatedAt: at(time.Duration(size) * time.Minute)}
}

// appendAudit appends records to tenant's log under its lock, as the audit
// package does, starting at the size the lock returns.
func appendAudit(t *testing.T, s steward.Store, tenant string, recs ...steward.AuditRecord) {
	t.Helper()
	must(t, s.InTx(ctx(t), func(tx steward.Store) error {
		size, err := tx.LockAuditLog(ctx(t), tenant)
		if err != nil {
			return err
		}
		es := make([]steward.AuditEntry, len(recs))
		for i, r := range recs {
			r.Index = size + int64(i)
			es[i] = auditEntry(t, r)
		}
		return tx.AppendAudit(ctx(t), tenant, es, auditCP(tenant, size+int64(len(recs))))
	}))
}

// wantAuditSize fails unless tenant's log has size records and size is
// what the store says.
func wantAuditSize(t *testing.T, s steward.Store, tenant string, size int64) {
	t.Helper()
	n, err := s.AuditSize(ctx(t), tenant)
	must(t, err)
	es, err := s.AuditEntries(ctx(t), tenant, 0, 10000)
	must(t, err)
	if n != size || int64(len(es)) != size {
		t.Fatalf("audit log %q: size %d with %d entries, want %d", tenant, n, len(es), size)
	}
}

func testAuditAppend(t *testing.T, s steward.Store) {
	c := ctx(t)
	size, err := s.LockAuditLog(c, tenantA)
	must(t, err)
	if size != 0 {
		t.Fatalf("new log has size %d", size)
	}
	recs := []steward.AuditRecord{
		auditRec(tenantA, 0, "token:t-1", "device.quarantine", "device:d-1", steward.AuditSuccess),
		auditRec(tenantA, 1, "token:t-2", "device.release", "device:d-1", steward.AuditDenied),
	}
	appendAudit(t, s, tenantA, recs...)
	appendAudit(t, s, tenantA, auditRec(tenantA, 2, "system:lifecycle", "device.revoke", "device:d-2", steward.AuditFailure))
	appendAudit(t, s, tenantB, auditRec(tenantB, 0, "token:t-9", "group.create", "", steward.AuditSuccess))
	appendAudit(t, s, steward.SystemAuditLog, auditRec(steward.SystemAuditLog, 0, "unknown", "auth.token", "", steward.AuditDenied))
	wantAuditSize(t, s, tenantA, 3)
	wantAuditSize(t, s, tenantB, 1)
	wantAuditSize(t, s, steward.SystemAuditLog, 1)
	wantAuditSize(t, s, "tenant-none", 0)

	// Entries come back byte for byte, with the searchable columns.
	es, err := s.AuditEntries(c, tenantA, 1, 10)
	must(t, err)
	if len(es) != 2 {
		t.Fatalf("AuditEntries(from 1) = %d entries", len(es))
	}
	want := auditEntry(t, auditRec(tenantA, 1, "token:t-2", "device.release", "device:d-1", steward.AuditDenied))
	if !bytes.Equal(es[0].Data, want.Data) || !bytes.Equal(es[0].Hashes, want.Hashes) {
		t.Fatalf("entry 1 data or hashes differ:\n got %s\nwant %s", es[0].Data, want.Data)
	}
	g, w := es[0].Record, want.Record
	if g.Index != 1 || g.TenantID != w.TenantID || g.Actor != w.Actor || g.Action != w.Action || g.Target != w.Target ||
		g.Outcome != w.Outcome || g.RequestID != w.RequestID || !g.At.Equal(stored(w.At)) {
		t.Fatalf("entry 1 columns = %+v, want %+v", g, w)
	}
	hs, err := s.AuditEntryHashes(c, tenantA, []int64{2, 0})
	must(t, err)
	if len(hs) != 2 {
		t.Fatalf("AuditEntryHashes = %d hashes, want 2", len(hs))
	}
	all, err := s.AuditEntries(c, tenantA, 0, 10)
	must(t, err)
	if !bytes.Equal(hs[0], all[2].Hashes) || !bytes.Equal(hs[1], all[0].Hashes) {
		t.Fatal("AuditEntryHashes does not return the hashes of the indexes asked, in their order")
	}
	_, err = s.AuditEntryHashes(c, tenantA, []int64{0, 3})
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.AuditEntryHashes(c, tenantB, []int64{1})
	wantCode(t, err, steward.CodeNotFound)

	// Checkpoints: one per append, the latest on request.
	cps, err := s.AuditCheckpoints(c, tenantA, 0, 10)
	must(t, err)
	if len(cps) != 2 || cps[0].Size != 2 || cps[1].Size != 3 || cps[1].Note != auditCP(tenantA, 3).Note ||
		!cps[1].CreatedAt.Equal(stored(auditCP(tenantA, 3).CreatedAt)) {
		t.Fatalf("AuditCheckpoints = %+v", cps)
	}
	cps, err = s.AuditCheckpoints(c, tenantA, 2, 10)
	must(t, err)
	if len(cps) != 1 || cps[0].Size != 3 {
		t.Fatalf("AuditCheckpoints(after 2) = %+v", cps)
	}
	latest, err := s.AuditCheckpoint(c, tenantA, -1)
	must(t, err)
	if latest.Size != 3 || latest.TenantID != tenantA {
		t.Fatalf("latest checkpoint = %+v", latest)
	}
	two, err := s.AuditCheckpoint(c, tenantA, 2)
	must(t, err)
	if two.Size != 2 {
		t.Fatalf("checkpoint 2 = %+v", two)
	}
	_, err = s.AuditCheckpoint(c, tenantA, 1)
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.AuditCheckpoint(c, "tenant-none", -1)
	wantCode(t, err, steward.CodeNotFound)

	logs, err := s.AuditLogs(c)
	must(t, err)
	wantLogs := []steward.AuditLogSize{{TenantID: "", Size: 1}, {TenantID: tenantA, Size: 3}, {TenantID: tenantB, Size: 1}}
	if !reflect.DeepEqual(logs, wantLogs) {
		t.Fatalf("AuditLogs = %+v, want %+v", logs, wantLogs)
	}
	_, err = s.AuditEntries(c, tenantA, 0, 0)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.AuditCheckpoints(c, tenantA, 0, 10001)
	wantCode(t, err, steward.CodeInvalid)
}

func testAuditAppendInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	appendAudit(t, s, tenantA, auditRec(tenantA, 0, "token:t-1", "device.quarantine", "device:d-1", steward.AuditSuccess))
	good := func(i int64) steward.AuditEntry {
		return auditEntry(t, auditRec(tenantA, i, "token:t-1", "device.release", "device:d-1", steward.AuditSuccess))
	}
	tests := []struct {
		name    string
		entries func() []steward.AuditEntry
		cp      steward.AuditCheckpoint
		code    steward.Code
	}{
		{"no entries", func() []steward.AuditEntry { return nil }, auditCP(tenantA, 1), steward.CodeInvalid},
		{"gap", func() []steward.AuditEntry { return []steward.AuditEntry{good(1), good(3)} }, auditCP(tenantA, 3), steward.CodeInvalid},
		{"other tenant", func() []steward.AuditEntry {
			e := good(1)
			e.Record.TenantID = tenantB
			return []steward.AuditEntry{e}
		}, auditCP(tenantA, 2), steward.CodeInvalid},
		{"no data", func() []steward.AuditEntry { e := good(1); e.Data = nil; return []steward.AuditEntry{e} }, auditCP(tenantA, 2), steward.CodeInvalid},
		{"partial hash", func() []steward.AuditEntry { e := good(1); e.Hashes = e.Hashes[:31]; return []steward.AuditEntry{e} }, auditCP(tenantA, 2), steward.CodeInvalid},
		{"no actor", func() []steward.AuditEntry { e := good(1); e.Record.Actor = ""; return []steward.AuditEntry{e} }, auditCP(tenantA, 2), steward.CodeInvalid},
		{"no time", func() []steward.AuditEntry { e := good(1); e.Record.At = time.Time{}; return []steward.AuditEntry{e} }, auditCP(tenantA, 2), steward.CodeInvalid},
		{"negative index", func() []steward.AuditEntry { e := good(1); e.Record.Index = -1; return []steward.AuditEntry{e} }, auditCP(tenantA, 0), steward.CodeInvalid},
		{"checkpoint of another size", func() []steward.AuditEntry { return []steward.AuditEntry{good(1)} }, auditCP(tenantA, 3), steward.CodeInvalid},
		{"checkpoint of another log", func() []steward.AuditEntry { return []steward.AuditEntry{good(1)} }, auditCP(tenantB, 2), steward.CodeInvalid},
		{"unsigned checkpoint", func() []steward.AuditEntry { return []steward.AuditEntry{good(1)} },
			steward.AuditCheckpoint{TenantID: tenantA, Size: 2, CreatedAt: t0}, steward.CodeInvalid},
		// The log is at size 1: an append at 0 or 2 lost a race.
		{"index taken", func() []steward.AuditEntry { return []steward.AuditEntry{good(0)} }, auditCP(tenantA, 1), steward.CodeConflict},
		{"index ahead", func() []steward.AuditEntry { return []steward.AuditEntry{good(2)} }, auditCP(tenantA, 3), steward.CodeConflict},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantCode(t, s.AppendAudit(c, tenantA, tc.entries(), tc.cp), tc.code)
			wantAuditSize(t, s, tenantA, 1)
			cps, err := s.AuditCheckpoints(c, tenantA, 0, 10)
			must(t, err)
			if len(cps) != 1 {
				t.Fatalf("a refused append left checkpoints: %+v", cps)
			}
		})
	}
	// An append at index 1 of a log nobody created yet is a lost race too,
	// and creates nothing.
	e := auditEntry(t, auditRec(tenantB, 1, "token:t-1", "x.y", "", steward.AuditSuccess))
	wantCode(t, s.AppendAudit(c, tenantB, []steward.AuditEntry{e}, auditCP(tenantB, 2)), steward.CodeConflict)
	wantAuditSize(t, s, tenantB, 0)
}

// testAuditConcurrent appends from many goroutines at once: the lock makes
// them take turns, so that every append succeeds and the indexes have no
// gap and no duplicate.
func testAuditConcurrent(t *testing.T, s steward.Store) {
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.InTx(ctx(t), func(tx steward.Store) error {
				size, err := tx.LockAuditLog(ctx(t), tenantA)
				if err != nil {
					return err
				}
				r := auditRec(tenantA, size, fmt.Sprintf("token:t-%d", i), "device.quarantine", "device:d-1", steward.AuditSuccess)
				data, err := json.Marshal(r)
				if err != nil {
					return err
				}
				h := sha256.Sum256(data)
				return tx.AppendAudit(ctx(t), tenantA, []steward.AuditEntry{{Record: r, Data: data, Hashes: h[:]}}, auditCP(tenantA, size+1))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	wantAuditSize(t, s, tenantA, n)
	es, err := s.AuditEntries(ctx(t), tenantA, 0, 100)
	must(t, err)
	actors := map[string]bool{}
	for i, e := range es {
		if e.Record.Index != int64(i) {
			t.Fatalf("entry %d has index %d", i, e.Record.Index)
		}
		actors[e.Record.Actor] = true
	}
	if len(actors) != n {
		t.Fatalf("%d distinct appenders landed, want %d", len(actors), n)
	}
	cps, err := s.AuditCheckpoints(ctx(t), tenantA, 0, 100)
	must(t, err)
	if len(cps) != n {
		t.Fatalf("%d checkpoints, want %d", len(cps), n)
	}
}

func testAuditSearch(t *testing.T, s steward.Store) {
	c := ctx(t)
	appendAudit(t, s, tenantA,
		auditRec(tenantA, 0, "token:t-1", "device.quarantine", "device:d-1", steward.AuditSuccess),
		auditRec(tenantA, 1, "token:t-2", "device.release", "device:d-1", steward.AuditDenied),
		auditRec(tenantA, 2, "token:t-1", "device_x.release", "device:d-2", steward.AuditFailure),
		auditRec(tenantA, 3, "token:t-1", "group.create", "group:g-1", steward.AuditSuccess),
		auditRec(tenantA, 4, "token:t-3", "deviceXrelease", "device:d-3", steward.AuditSuccess),
	)
	appendAudit(t, s, tenantB, auditRec(tenantB, 0, "token:t-1", "device.quarantine", "device:d-1", steward.AuditSuccess))
	idx := func(rs []steward.AuditRecord) []int64 {
		out := []int64{}
		for _, r := range rs {
			out = append(out, r.Index)
		}
		return out
	}
	all := steward.AuditFilter{Cursor: steward.NoAuditCursor}
	tests := []struct {
		name string
		f    func(f steward.AuditFilter) steward.AuditFilter
		want []int64
	}{
		{"all", func(f steward.AuditFilter) steward.AuditFilter { return f }, []int64{0, 1, 2, 3, 4}},
		{"actor", func(f steward.AuditFilter) steward.AuditFilter { f.Actor = "token:t-1"; return f }, []int64{0, 2, 3}},
		{"action", func(f steward.AuditFilter) steward.AuditFilter { f.Action = "device.release"; return f }, []int64{1}},
		{"action prefix", func(f steward.AuditFilter) steward.AuditFilter { f.Action = "device.*"; return f }, []int64{0, 1}},
		{"action prefix with underscore", func(f steward.AuditFilter) steward.AuditFilter { f.Action = "device_*"; return f }, []int64{2}},
		{"target", func(f steward.AuditFilter) steward.AuditFilter { f.Target = "device:d-1"; return f }, []int64{0, 1}},
		{"outcome", func(f steward.AuditFilter) steward.AuditFilter { f.Outcome = steward.AuditSuccess; return f }, []int64{0, 3, 4}},
		{"time range", func(f steward.AuditFilter) steward.AuditFilter {
			f.From, f.To = at(time.Minute), at(3*time.Minute)
			return f
		}, []int64{1, 2}},
		{"newest first", func(f steward.AuditFilter) steward.AuditFilter { f.Desc = true; f.Limit = 2; return f }, []int64{4, 3}},
		{"newest first after a cursor", func(f steward.AuditFilter) steward.AuditFilter { f.Desc = true; f.Cursor = 3; return f }, []int64{2, 1, 0}},
		{"after a cursor", func(f steward.AuditFilter) steward.AuditFilter { f.Cursor = 1; f.Limit = 2; return f }, []int64{2, 3}},
		{"combined", func(f steward.AuditFilter) steward.AuditFilter {
			f.Actor, f.Outcome, f.Action = "token:t-1", steward.AuditSuccess, "group.*"
			return f
		}, []int64{3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := s.SearchAudit(c, tenantA, tc.f(all))
			must(t, err)
			if got := idx(rs); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for _, r := range rs {
				if r.TenantID != tenantA || r.RequestID != fmt.Sprintf("req-%d", r.Index) || string(r.After) != `{"state":"quarantined"}` {
					t.Fatalf("record not decoded whole: %+v", r)
				}
			}
		})
	}
	rs, err := s.SearchAudit(c, tenantB, all)
	must(t, err)
	if got := idx(rs); !reflect.DeepEqual(got, []int64{0}) || rs[0].TenantID != tenantB {
		t.Fatalf("tenant B sees %v", got)
	}
	for name, f := range map[string]steward.AuditFilter{
		"limit":   {Cursor: -1, Limit: 1001},
		"outcome": {Cursor: -1, Outcome: "maybe"},
		"range":   {Cursor: -1, From: at(time.Hour), To: at(time.Minute)},
		"cursor":  {Cursor: -2},
	} {
		t.Run("invalid "+name, func(t *testing.T) {
			_, err := s.SearchAudit(c, tenantA, f)
			wantCode(t, err, steward.CodeInvalid)
		})
	}
}
