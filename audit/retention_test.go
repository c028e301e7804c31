package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/teststores"
)

// pruneBase is the time of record 0 of fillDays; record i is i days later.
var pruneBase = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// fillDays appends n records to tenant's log, record i dated i days after
// pruneBase.
func fillDays(t *testing.T, l *Log, tenant string, n int) {
	t.Helper()
	for i := range n {
		r := rec(tenant, i)
		r.At = pruneBase.Add(time.Duration(i) * 24 * time.Hour)
		if err := l.Record(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPrune removes the bodies of the records past a cutoff, exactly
// those, and checks that the log still verifies online and offline, that
// the proofs of the kept records still check, and that a second pass
// prunes nothing.
func TestPrune(t *testing.T) {
	t.Parallel()
	for name, open := range teststores.Backends(t, "audittest_") {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := open(t)
			l := newLog(t, s)
			fillDays(t, l, "acme", 10)
			fillDays(t, l, "other", 10)
			// Record 5 is exactly at the cutoff: kept.
			cutoff := pruneBase.Add(5 * 24 * time.Hour)
			// A chunk smaller than what is due: two passes, two records.
			n, err := l.Prune(t.Context(), "acme", cutoff, 3)
			if err != nil || n != 3 {
				t.Fatalf("first pass pruned %d: %v", n, err)
			}
			if n, err = l.Prune(t.Context(), "acme", cutoff, 3); err != nil || n != 2 {
				t.Fatalf("second pass pruned %d: %v", n, err)
			}
			if n, err = l.Prune(t.Context(), "acme", cutoff, 3); err != nil || n != 0 {
				t.Fatalf("third pass pruned %d: %v", n, err)
			}
			es, err := s.AuditEntries(t.Context(), "acme", 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) != 12 {
				t.Fatalf("%d entries, want 10 and two pruning records", len(es))
			}
			for _, e := range es {
				pruned := len(e.Data) == 0
				if want := e.Record.Index < 5; pruned != want {
					t.Errorf("record %d at %s: pruned %v, want %v", e.Record.Index, e.Record.At, pruned, want)
				}
				if len(e.Hashes) < steward.AuditHashSize || pruned && (e.Record.Actor != "" || e.Record.At.IsZero()) {
					t.Errorf("record %d kept %+v, hashes %d bytes", e.Record.Index, e.Record, len(e.Hashes))
				}
			}
			rep := mustVerify(t, l, "acme")
			if rep.PrunedRecords != 5 || len(rep.Pruned) != 1 || rep.Pruned[0] != (PrunedRange{First: 0, Last: 4}) || rep.Records != 12 {
				t.Fatalf("report %+v", rep)
			}
			if rep := mustVerify(t, l, "other"); rep.PrunedRecords != 0 {
				t.Fatalf("the other log was pruned: %+v", rep)
			}

			// The pruning records say what they did; search skips the
			// pruned records.
			rs, err := l.Search(t.Context(), "acme", steward.AuditFilter{Cursor: steward.NoAuditCursor, Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 7 || rs[0].Index != 5 || rs[5].Action != PruneAction || !strings.Contains(string(rs[6].After), `"from":3,"to":5`) {
				t.Fatalf("search after pruning: %+v", rs)
			}
			if up, err := prunedUpTo(t.Context(), s, "acme"); err != nil || up != 5 {
				t.Fatalf("pruned up to %d: %v", up, err)
			}

			// Proofs of the kept records still check; a pruned one has none.
			for _, i := range []int64{5, 9, 11} {
				p, err := l.InclusionProof(t.Context(), "acme", i, -1)
				if err != nil {
					t.Fatal(err)
				}
				if err := CheckInclusion(p, l.keys.Verifier); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := l.InclusionProof(t.Context(), "acme", 2, -1); steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("proof of a pruned record: %v", err)
			}
			for _, old := range []int64{1, 5, 10} {
				p, err := l.ConsistencyProof(t.Context(), "acme", old, -1)
				if err != nil {
					t.Fatal(err)
				}
				kept, err := s.AuditCheckpoint(t.Context(), "acme", old)
				if err != nil {
					t.Fatal(err)
				}
				if err := CheckConsistency(p, l.keys.Verifier, kept.Note); err != nil {
					t.Fatalf("consistency from %d: %v", old, err)
				}
			}

			// An export carries the pruned records' leaf hashes and
			// verifies offline.
			var buf bytes.Buffer
			if err := l.Export(t.Context(), "acme", &buf); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(buf.String(), `{"pruned":{"index":0,"leaf_hash":`) {
				t.Fatalf("export:\n%s", buf.String())
			}
			off, err := VerifyExport(bytes.NewReader(buf.Bytes()), l.VerifierKey())
			if err != nil || !off.OK || off.PrunedRecords != 5 || off.Root != rep.Root {
				t.Fatalf("offline report %+v: %v", off, err)
			}
			// A pruned line whose hash was changed does not verify.
			lines := strings.Split(buf.String(), "\n")
			for i, line := range lines {
				var p ExportPruned
				if json.Unmarshal([]byte(line), &p) != nil || !strings.HasPrefix(line, `{"pruned":`) || p.Pruned.Index != 1 {
					continue
				}
				p.Pruned.LeafHash[0] ^= 1
				b, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				lines[i] = string(b)
			}
			bad := strings.Join(lines, "\n")
			if bad == buf.String() {
				t.Fatal("no pruned line of record 1 in the export")
			}
			off, err = VerifyExport(strings.NewReader(bad), l.VerifierKey())
			if err != nil || off.OK || off.FirstBad == nil || *off.FirstBad != 1 {
				t.Fatalf("an export with a changed pruned hash: %+v %v", off, err)
			}
		})
	}
}

func TestPruneInvalid(t *testing.T) {
	t.Parallel()
	s := teststores.SQLite(t)
	l := newLog(t, s)
	fillDays(t, l, "acme", 3)
	for _, tc := range []struct {
		name   string
		before time.Time
		limit  int
	}{
		{"no limit", pruneBase.Add(48 * time.Hour), 0},
		{"no time", time.Time{}, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := l.Prune(t.Context(), "acme", tc.before, tc.limit); steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("got %v, want CodeInvalid", err)
			}
			if n, _ := s.AuditSize(t.Context(), "acme"); n != 3 {
				t.Fatalf("size %d", n)
			}
			mustVerify(t, l, "acme")
		})
	}
	// The store refuses a range that is not one, or past the log.
	for _, r := range [][2]int64{{-1, 1}, {2, 1}, {0, 4}} {
		if _, err := s.PruneAudit(t.Context(), "acme", r[0], r[1]); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("PruneAudit(%d, %d) = %v, want CodeInvalid", r[0], r[1], err)
		}
	}
	if rep := mustVerify(t, l, "acme"); rep.PrunedRecords != 0 {
		t.Fatalf("a refused prune pruned: %+v", rep)
	}
}

// wantTampered fails unless tenant's log fails verification at firstBad
// with a problem that says says.
func wantTampered(t *testing.T, l *Log, tenant string, firstBad int64, says string) {
	t.Helper()
	rep, err := l.Verify(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.FirstBad == nil || *rep.FirstBad != firstBad {
		t.Fatalf("report %+v, want the first bad index %d", rep, firstBad)
	}
	if !strings.Contains(strings.Join(rep.Problems, "\n"), says) {
		t.Fatalf("no problem says %q: %q", says, rep.Problems)
	}
}

// TestArchive keeps the records a pruning removes in the archive
// directory, checks them against an export taken after it, and refuses to
// prune when the archive cannot be written.
func TestArchive(t *testing.T) {
	t.Parallel()
	s := teststores.SQLite(t)
	dir := t.TempDir()
	l := newLog(t, s)
	l.archiveDir = dir
	fillDays(t, l, "acme", 10)
	var before bytes.Buffer
	if err := l.Export(t.Context(), "acme", &before); err != nil {
		t.Fatal(err)
	}
	if n, err := l.Prune(t.Context(), "acme", pruneBase.Add(5*24*time.Hour), 100); err != nil || n != 5 {
		t.Fatalf("pruned %d: %v", n, err)
	}
	name := filepath.Join(dir, "audit-acme-000000000000-000000000004.jsonl")
	fi, err := os.Stat(name)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive mode %v", fi.Mode())
	}
	archive, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSuffix(string(archive), "\n"), "\n"); len(lines) != 6 || !strings.Contains(lines[0], ArchiveFormat) {
		t.Fatalf("archive:\n%s", archive)
	}
	var after bytes.Buffer
	if err := l.Export(t.Context(), "acme", &after); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyArchive(bytes.NewReader(archive), bytes.NewReader(after.Bytes()), l.VerifierKey())
	if err != nil || !rep.OK || rep.Archived != 5 || rep.PrunedRecords != 5 {
		t.Fatalf("archive report %+v: %v", rep, err)
	}
	// A changed archived record, or an export from before the pruning,
	// does not check.
	changed := bytes.Replace(archive, []byte(`"device:d-3"`), []byte(`"device:d-9"`), 1)
	rep, err = VerifyArchive(bytes.NewReader(changed), bytes.NewReader(after.Bytes()), l.VerifierKey())
	if err != nil || rep.OK || rep.FirstBad == nil || *rep.FirstBad != 3 {
		t.Fatalf("changed archive: %+v %v", rep, err)
	}
	rep, err = VerifyArchive(bytes.NewReader(archive), bytes.NewReader(before.Bytes()), l.VerifierKey())
	if err != nil || rep.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), "take the export after the pruning") {
		t.Fatalf("export from before the pruning: %+v %v", rep, err)
	}
	if _, err := VerifyArchive(strings.NewReader("{}\n"), bytes.NewReader(after.Bytes()), l.VerifierKey()); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("not an archive: %v", err)
	}

	// No archive, no pruning.
	l.archiveDir = filepath.Join(dir, "missing")
	size, _ := s.AuditSize(t.Context(), "acme")
	if _, err := l.Prune(t.Context(), "acme", pruneBase.Add(8*24*time.Hour), 100); err == nil {
		t.Fatal("pruned without writing the archive")
	}
	if n, _ := s.AuditSize(t.Context(), "acme"); n != size {
		t.Fatalf("a failed pruning appended: size %d, was %d", n, size)
	}
	if rep := mustVerify(t, l, "acme"); rep.PrunedRecords != 5 {
		t.Fatalf("a failed pruning pruned: %+v", rep)
	}
}
