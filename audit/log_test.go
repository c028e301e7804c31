package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"github.com/steward-iot/steward/internal/teststores"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/sqlstore"
)

// fixedClock is a clock the test moves.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

// newLog returns a Log over store with a new key sealed under a new master
// key.
func newLog(t testing.TB, store steward.Store) *Log {
	t.Helper()
	kr, err := pki.NewKeyring(bytes.Repeat([]byte{7}, pki.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := LoadOrCreateKeys(context.Background(), store, kr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := New(Config{Store: store, Keys: keys, Clock: &fixedClock{t: time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)}})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// rec is the i-th record of a test log.
func rec(tenant string, i int) steward.AuditRecord {
	outcomes := []string{steward.AuditSuccess, steward.AuditFailure, steward.AuditDenied}
	return steward.AuditRecord{TenantID: tenant, Actor: fmt.Sprintf("token:t-%d", i%3), Action: "device.quarantine",
		Target: fmt.Sprintf("device:d-%d", i), Outcome: outcomes[i%3], Remote: "192.0.2.1:4000", RequestID: fmt.Sprintf("r-%d", i),
		Before: json.RawMessage(`{"state": "active"}`), After: json.RawMessage(`{"state":"quarantined"}`)}
}

// fill appends n records to tenant's log, one append each.
func fill(t testing.TB, l *Log, tenant string, n int) {
	t.Helper()
	for i := range n {
		if err := l.Record(context.Background(), rec(tenant, i)); err != nil {
			t.Fatal(err)
		}
	}
}

func mustVerify(t *testing.T, l *Log, tenant string) Report {
	t.Helper()
	rep, err := l.Verify(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("log %q does not verify: %v", tenant, rep.Problems)
	}
	return rep
}

func TestAppendAndVerify(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "audittest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLog(t, open(t))
			fill(t, l, "acme", 37)
			fill(t, l, steward.SystemAuditLog, 3)
			// One append of several records: one checkpoint.
			got, err := l.Append(t.Context(), l.store, rec("acme", 100), rec("acme", 101))
			if err != nil {
				t.Fatal(err)
			}
			if got[0].Index != 37 || got[1].Index != 38 {
				t.Fatalf("indexes %d, %d", got[0].Index, got[1].Index)
			}
			rep := mustVerify(t, l, "acme")
			if rep.Records != 39 || rep.Checkpoints != 38 || rep.LatestCheckpoint != 39 {
				t.Fatalf("report %+v", rep)
			}
			// The root is the tree hash of the records' canonical bytes.
			var datas [][]byte
			es, err := l.store.AuditEntries(t.Context(), "acme", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range es {
				datas = append(datas, e.Data)
			}
			root, err := rootOf(datas...)
			if err != nil {
				t.Fatal(err)
			}
			cp, err := l.Checkpoint(t.Context(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			c, err := OpenCheckpoint(cp.Note, l.keys.Verifier)
			if err != nil {
				t.Fatal(err)
			}
			if c.Root != root || c.Size != 39 || c.Origin != "steward-audit/acme" || rep.Root != root.String() {
				t.Fatalf("checkpoint %+v, want root %s", c, root)
			}
			if rep := mustVerify(t, l, steward.SystemAuditLog); rep.Records != 3 || rep.Origin != "steward-audit" {
				t.Fatalf("system log report %+v", rep)
			}
			// The records read back are the ones written, states compacted.
			rs, err := l.Search(t.Context(), "acme", steward.AuditFilter{Cursor: -1, Target: "device:d-5"})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 1 || rs[0].Index != 5 || string(rs[0].Before) != `{"state":"active"}` || rs[0].At.IsZero() {
				t.Fatalf("search = %+v", rs)
			}
		})
	}
}

func TestAppendConcurrent(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "audittest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := open(t)
			// Two Logs over one store stand for two nodes.
			a := newLog(t, store)
			b, err := New(Config{Store: store, Keys: a.keys})
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 40)
			for i := range 40 {
				l := a
				if i%2 == 1 {
					l = b
				}
				wg.Go(func() { errs <- l.Record(context.Background(), rec("acme", i)) })
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			// Records of calls made at once share appends: fewer
			// checkpoints than records, each of them matched.
			if rep := mustVerify(t, a, "acme"); rep.Records != 40 || rep.Checkpoints < 2 || rep.Checkpoints > 40 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestAppendInvalid(t *testing.T) {
	t.Parallel()
	store := teststores.Backends(t, "audittest_")["sqlite"](t)
	l := newLog(t, store)
	fill(t, l, "acme", 2)
	big := json.RawMessage(`"` + strings.Repeat("x", maxStateLen) + `"`)
	tests := []struct {
		name string
		edit func(r *steward.AuditRecord)
	}{
		{"no actor", func(r *steward.AuditRecord) { r.Actor = "" }},
		{"no action", func(r *steward.AuditRecord) { r.Action = "" }},
		{"unknown outcome", func(r *steward.AuditRecord) { r.Outcome = "maybe" }},
		{"no outcome", func(r *steward.AuditRecord) { r.Outcome = "" }},
		{"state not JSON", func(r *steward.AuditRecord) { r.After = json.RawMessage(`{"state":`) }},
		{"state too large", func(r *steward.AuditRecord) { r.Before = big }},
		{"detail too long", func(r *steward.AuditRecord) { r.Detail = strings.Repeat("x", maxDetailLen+1) }},
		{"actor too long", func(r *steward.AuditRecord) { r.Actor = strings.Repeat("x", maxFieldLen+1) }},
		{"target not UTF-8", func(r *steward.AuditRecord) { r.Target = "device:\xff" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rec("acme", 9)
			tc.edit(&r)
			err := l.Record(t.Context(), r)
			if steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("got %v, want CodeInvalid", err)
			}
			if n, _ := store.AuditSize(t.Context(), "acme"); n != 2 {
				t.Fatalf("a refused record changed the size to %d", n)
			}
		})
	}
	// Records of two logs in one append are refused whole.
	_, err := l.Append(t.Context(), store, rec("acme", 1), rec("other", 2))
	if steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("mixed append: %v", err)
	}
	if n, _ := store.AuditSize(t.Context(), "acme"); n != 2 {
		t.Fatalf("size %d", n)
	}
	mustVerify(t, l, "acme")
}

// TestRecordIn appends in the caller's transaction: the record lands with
// the transaction's writes, or not at all.
func TestRecordIn(t *testing.T) {
	t.Parallel()
	store := teststores.Backends(t, "audittest_")["sqlite"](t)
	l := newLog(t, store)
	err := store.InTx(t.Context(), func(tx steward.Store) error {
		if err := l.RecordIn(t.Context(), tx, rec("acme", 0)); err != nil {
			return err
		}
		return steward.Errorf(steward.CodeInvalid, "the action failed")
	})
	if steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatal(err)
	}
	if n, _ := store.AuditSize(t.Context(), "acme"); n != 0 {
		t.Fatalf("a rolled back record is in the log (size %d)", n)
	}
	if err := store.InTx(t.Context(), func(tx steward.Store) error { return l.RecordIn(t.Context(), tx, rec("acme", 0)) }); err != nil {
		t.Fatal(err)
	}
	mustVerify(t, l, "acme")
}

func TestProofs(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "audittest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			l := newLog(t, open(t))
			const n = 21
			fill(t, l, "acme", n)
			for size := int64(1); size <= n; size++ {
				for i := int64(0); i < size; i++ {
					p, err := l.InclusionProof(t.Context(), "acme", i, size)
					if err != nil {
						t.Fatalf("prove %d in %d: %v", i, size, err)
					}
					if err := CheckInclusion(p, l.keys.Verifier); err != nil {
						t.Fatalf("check %d in %d: %v", i, size, err)
					}
				}
				for old := int64(1); old <= size; old++ {
					p, err := l.ConsistencyProof(t.Context(), "acme", old, size)
					if err != nil {
						t.Fatalf("prove %d to %d: %v", old, size, err)
					}
					kept, err := l.store.AuditCheckpoint(t.Context(), "acme", old)
					if err != nil {
						t.Fatal(err)
					}
					if err := CheckConsistency(p, l.keys.Verifier, kept.Note); err != nil {
						t.Fatalf("check %d to %d: %v", old, size, err)
					}
				}
			}

			// A proof of the latest size by default.
			p, err := l.InclusionProof(t.Context(), "acme", 3, -1)
			if err != nil || p.Size != n || p.Record.Index != 3 || p.LeafHash != tlog.RecordHash(p.Data) {
				t.Fatalf("latest proof %+v: %v", p, err)
			}
			// A changed record, proof or checkpoint does not check.
			bad := p
			bad.Data = bytes.Replace(p.Data, []byte("token:t-0"), []byte("token:t-9"), 1)
			if CheckInclusion(bad, l.keys.Verifier) == nil {
				t.Fatal("a changed record checks")
			}
			bad = p
			bad.Proof = append([]tlog.Hash(nil), p.Proof...)
			bad.Proof[0][0] ^= 1
			if CheckInclusion(bad, l.keys.Verifier) == nil {
				t.Fatal("a changed proof checks")
			}
			bad = p
			bad.Index = 4
			if CheckInclusion(bad, l.keys.Verifier) == nil {
				t.Fatal("a proof checks for another index")
			}
			other := newLog(t, teststores.Backends(t, "audittest_")["sqlite"](t))
			if CheckInclusion(p, other.keys.Verifier) == nil {
				t.Fatal("a proof checks with another key")
			}

			// A kept checkpoint of a log that was later rewritten (here: a
			// fork signed by the same key) does not check against the
			// proof of the log as it is now.
			forked := newLogWithKeys(t, teststores.Backends(t, "audittest_")["sqlite"](t), l.keys)
			fill(t, forked, "acme", 5)
			if err := forked.Record(t.Context(), rec("acme", 99)); err != nil {
				t.Fatal(err)
			}
			kept, err := forked.Checkpoint(t.Context(), "acme")
			if err != nil {
				t.Fatal(err)
			}
			cp, err := l.ConsistencyProof(t.Context(), "acme", 6, -1)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConsistency(cp, l.keys.Verifier, kept.Note); err == nil {
				t.Fatal("a rewritten log passes the consistency check against a checkpoint kept before")
			}

			for _, tc := range []struct{ index, size int64 }{{-1, 5}, {5, 5}, {0, n + 1}, {0, 0}} {
				if _, err := l.InclusionProof(t.Context(), "acme", tc.index, tc.size); steward.ErrorCode(err) != steward.CodeInvalid {
					t.Errorf("inclusion %d in %d: %v, want CodeInvalid", tc.index, tc.size, err)
				}
			}
			for _, tc := range []struct{ old, new int64 }{{0, 5}, {6, 5}, {1, n + 1}} {
				if _, err := l.ConsistencyProof(t.Context(), "acme", tc.old, tc.new); steward.ErrorCode(err) != steward.CodeInvalid {
					t.Errorf("consistency %d to %d: %v, want CodeInvalid", tc.old, tc.new, err)
				}
			}
			if _, err := l.InclusionProof(t.Context(), "empty", 0, -1); !steward.IsNotFound(err) {
				t.Errorf("proof in an empty log: %v", err)
			}
		})
	}
}

func newLogWithKeys(t testing.TB, store steward.Store, keys Keys) *Log {
	t.Helper()
	l, err := New(Config{Store: store, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// exec runs a statement on the store's database behind the log's back.
func exec(t *testing.T, s *sqlstore.Store, q string, args ...any) {
	t.Helper()
	res, err := s.DB().ExecContext(t.Context(), s.Dialect().Rebind(q, 1), args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		t.Fatalf("%s changed nothing", q)
	}
}

// TestTamper edits the database behind the log's back and checks that
// Verify names what changed and where; the cases marked pruned run on a
// log whose first five records were pruned by retention (a kept record,
// a pruned record's leaf hash, a kept record's body erased as if pruned).
func TestTamper(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "audittest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tests := []struct {
				name     string
				tamper   func(t *testing.T, s *sqlstore.Store)
				firstBad int64
				says     string
				pruned   bool
			}{
				{"changed record", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `UPDATE audit_records SET data = ? WHERE tenant_id = 'acme' AND idx = 4`, dataOf(t, s, 4, "token:t-1", "token:t-0"))
				}, 4, "record 4 does not match the checkpoint", false},
				{"changed record and its hashes", func(t *testing.T, s *sqlstore.Store) {
					d := dataOf(t, s, 4, "token:t-1", "token:t-0")
					h := tlog.RecordHash(d)
					exec(t, s, `UPDATE audit_records SET data = ?, hashes = ? WHERE tenant_id = 'acme' AND idx = 4`, d, h[:])
				}, 4, "record 4 does not match the checkpoint", false},
				{"removed record", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `DELETE FROM audit_records WHERE tenant_id = 'acme' AND idx = 6`)
				}, 6, "record 6 is missing", false},
				{"removed record, later ones renumbered", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `DELETE FROM audit_records WHERE tenant_id = 'acme' AND idx = 6`)
					exec(t, s, `UPDATE audit_records SET idx = idx - 1 WHERE tenant_id = 'acme' AND idx > 6`)
				}, 6, "position 6 holds the record of index 7", false},
				{"swapped records", func(t *testing.T, s *sqlstore.Store) {
					d2, d5 := dataOf(t, s, 2, "", ""), dataOf(t, s, 5, "", "")
					exec(t, s, `UPDATE audit_records SET data = ? WHERE tenant_id = 'acme' AND idx = 2`, d5)
					exec(t, s, `UPDATE audit_records SET data = ? WHERE tenant_id = 'acme' AND idx = 5`, d2)
				}, 2, "position 2 holds the record of index 5", false},
				{"removed tail", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `DELETE FROM audit_records WHERE tenant_id = 'acme' AND idx >= 8`)
					exec(t, s, `UPDATE audit_logs SET size = 8 WHERE tenant_id = 'acme'`)
				}, 8, "records 8 to 9 were removed", false},
				{"search column changed", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `UPDATE audit_records SET actor = 'token:nobody' WHERE tenant_id = 'acme' AND idx = 3`)
				}, 3, "the stored actor column", false},
				{"checkpoint changed", func(t *testing.T, s *sqlstore.Store) {
					var n string
					if err := s.DB().QueryRowContext(t.Context(), `SELECT note FROM audit_checkpoints WHERE tenant_id = 'acme' AND size = 7`).Scan(&n); err != nil {
						t.Fatal(err)
					}
					exec(t, s, `UPDATE audit_checkpoints SET note = ? WHERE tenant_id = 'acme' AND size = 7`, strings.Replace(n, "\n7\n", "\n8\n", 1))
				}, 6, "the checkpoint at size 7 does not open", false},
				{"pruned log: kept record changed", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `UPDATE audit_records SET data = ? WHERE tenant_id = 'acme' AND idx = 7`, dataOf(t, s, 7, "token:t-1", "token:t-0"))
				}, 7, "record 7 does not match the checkpoint", true},
				{"pruned log: pruned leaf hash changed", func(t *testing.T, s *sqlstore.Store) {
					h := bytes.Repeat([]byte{0xab}, steward.AuditHashSize)
					exec(t, s, `UPDATE audit_records SET hashes = ? WHERE tenant_id = 'acme' AND idx = 2`, h)
				}, 2, "record 2 does not match the checkpoint", true},
				{"pruned log: kept body erased", func(t *testing.T, s *sqlstore.Store) {
					exec(t, s, `UPDATE audit_records SET data = ?, outcome = '' WHERE tenant_id = 'acme' AND idx = 8`, []byte{})
				}, 8, "records 8 to 8 have no body", true},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					s := open(t)
					l := newLog(t, s)
					if tc.pruned {
						fillDays(t, l, "acme", 10)
						if n, err := l.Prune(t.Context(), "acme", pruneBase.Add(5*24*time.Hour), 100); err != nil || n != 5 {
							t.Fatalf("pruned %d: %v", n, err)
						}
					} else {
						fill(t, l, "acme", 10)
					}
					mustVerify(t, l, "acme")
					tc.tamper(t, s)
					wantTampered(t, l, "acme", tc.firstBad, tc.says)
				})
			}
		})
	}
}

// dataOf returns record i's stored data with old replaced by new.
func dataOf(t *testing.T, s *sqlstore.Store, i int64, old, new string) []byte {
	t.Helper()
	var d []byte
	err := s.DB().QueryRowContext(t.Context(), s.Dialect().Rebind(`SELECT data FROM audit_records WHERE tenant_id = 'acme' AND idx = ?`, 1), i).Scan(&d)
	if err != nil {
		t.Fatal(err)
	}
	if old == "" {
		return d
	}
	out := bytes.Replace(d, []byte(old), []byte(new), 1)
	if bytes.Equal(out, d) {
		t.Fatalf("record %d has no %q: %s", i, old, d)
	}
	return out
}

func TestExport(t *testing.T) {
	t.Parallel()
	store := teststores.Backends(t, "audittest_")["sqlite"](t)
	l := newLog(t, store)
	fill(t, l, "acme", 12)
	var buf bytes.Buffer
	if err := l.Export(t.Context(), "acme", &buf); err != nil {
		t.Fatal(err)
	}
	export := buf.String()
	lines := strings.Split(strings.TrimSuffix(export, "\n"), "\n")
	if len(lines) != 1+12*2 {
		t.Fatalf("%d lines, want a header, 12 records and 12 checkpoints", len(lines))
	}
	rep, err := VerifyExport(strings.NewReader(export), l.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Records != 12 || rep.Checkpoints != 12 {
		t.Fatalf("export does not verify: %+v", rep)
	}
	// Line 1 is the header; record i is line 2+2i, its checkpoint 3+2i.
	edit := func(f func(ls []string) []string) string {
		ls := f(append([]string(nil), lines...))
		return strings.Join(ls, "\n") + "\n"
	}
	tests := []struct {
		name     string
		file     string
		firstBad int64
		says     string
	}{
		{"changed record", edit(func(ls []string) []string {
			ls[1+2*3] = strings.Replace(ls[1+2*3], `"outcome":"success"`, `"outcome":"failure"`, 1)
			return ls
		}), 3, "record 3 does not match"},
		{"removed record", edit(func(ls []string) []string { return append(ls[:1+2*5], ls[1+2*5+1:]...) }), 5, "position 5 holds the record of index 6"},
		{"removed record and checkpoint", edit(func(ls []string) []string { return append(ls[:1+2*5], ls[1+2*5+2:]...) }), 5, "position 5 holds the record of index 6"},
		{"swapped records", edit(func(ls []string) []string {
			ls[1+2*2], ls[1+2*7] = ls[1+2*7], ls[1+2*2]
			return ls
		}), 2, "position 2 holds the record of index 7"},
		{"truncated", edit(func(ls []string) []string {
			ls = ls[:1+2*9]
			return append(ls, lines[len(lines)-1])
		}), 9, "records 9 to 11 were removed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := VerifyExport(strings.NewReader(tc.file), l.VerifierKey())
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK || rep.FirstBad == nil || *rep.FirstBad != tc.firstBad || !strings.Contains(rep.Problems[0], tc.says) {
				t.Fatalf("report %+v, want first bad %d saying %q", rep, tc.firstBad, tc.says)
			}
		})
	}
	// Another key: every checkpoint fails to open.
	_, vkey, err := note.GenerateKey(nil, KeyName)
	if err != nil {
		t.Fatal(err)
	}
	rep, err = VerifyExport(strings.NewReader(export), vkey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "does not open") {
		t.Fatalf("export verifies with another key: %+v", rep)
	}
	for _, bad := range []string{"", "not json\n", `{"format":"other"}` + "\n"} {
		if _, err := VerifyExport(strings.NewReader(bad), l.VerifierKey()); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("VerifyExport(%q) = %v, want CodeInvalid", bad, err)
		}
	}
	if _, err := VerifyExport(strings.NewReader(export), "not a key"); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Errorf("bad key: %v", err)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	store := teststores.Backends(t, "audittest_")["sqlite"](t)
	kr, _ := pki.NewKeyring(bytes.Repeat([]byte{1}, pki.MasterKeySize))
	a, err := LoadOrCreateKeys(t.Context(), store, kr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateKeys(t.Context(), store, kr)
	if err != nil {
		t.Fatal(err)
	}
	if a.VerifierKey != b.VerifierKey || !strings.HasPrefix(a.VerifierKey, KeyName+"+") {
		t.Fatalf("keys differ between starts: %s, %s", a.VerifierKey, b.VerifierKey)
	}
	// The key is sealed: another master key does not open it.
	other, _ := pki.NewKeyring(bytes.Repeat([]byte{2}, pki.MasterKeySize))
	if _, err := LoadOrCreateKeys(t.Context(), store, other); err == nil {
		t.Fatal("the audit key opened with another master key")
	}
	sealed, err := store.GetSecret(t.Context(), secretName)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("PRIVATE+KEY")) || bytes.Contains(sealed, []byte(`"key"`)) {
		t.Fatal("the audit signing key is stored in the clear")
	}
	// The key record is pki's: JSON with the PKCS #8 key, sealed.
	plain, err := kr.Open(secretName, sealed)
	if err != nil {
		t.Fatal(err)
	}
	var rec keyRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		t.Fatal(err)
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := KeysOf(k.(ed25519.PrivateKey))
	if err != nil || again.VerifierKey != a.VerifierKey {
		t.Fatalf("keys of the stored key: %v %v", again.VerifierKey, err)
	}
	// Its signatures check with its verifier key.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, a.Signer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(a.Verifier)); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkAppend measures appends of one record each (a commit, a lock,
// the tree hashes and a signature each) on SQLite.
func BenchmarkAppend(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "steward.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := newLog(b, s)
	r := rec("acme", 1)
	b.ResetTimer()
	for b.Loop() {
		if err := l.Record(b.Context(), r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAppendConcurrent measures Record called from 64 goroutines at
// once, as concurrent API requests call it: their records share commits.
func BenchmarkAppendConcurrent(b *testing.B) {
	s, err := sqlite.Open(b.Context(), filepath.Join(b.TempDir(), "steward.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	l := newLog(b, s)
	r := rec("acme", 1)
	b.SetParallelism(32) // × GOMAXPROCS goroutines
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := l.Record(context.Background(), r); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
	b.StopTimer()
	rep, err := l.Verify(context.Background(), "acme")
	if err != nil || !rep.OK || rep.Records != int64(b.N) {
		b.Fatalf("after the benchmark: %+v %v", rep, err)
	}
}
