package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/steward-iot/steward"
)

// Report is the outcome of a verification of one log.
type Report struct {
	// Log is the tenant whose log was checked ("" for the system log).
	Log    string `json:"log"`
	Origin string `json:"origin"`
	// Records is how many records were read; Root their tree hash.
	Records int64  `json:"records"`
	Root    string `json:"root"`
	// Checkpoints is how many signed checkpoints matched the records;
	// LatestCheckpoint the largest size signed.
	Checkpoints      int64 `json:"checkpoints"`
	LatestCheckpoint int64 `json:"latest_checkpoint"`
	OK               bool  `json:"ok"`
	// FirstBad is the first index a problem was found at, when one was.
	FirstBad *int64 `json:"first_bad,omitempty"`
	// Problems says what is wrong, first problem first (at most
	// maxProblems; More counts the rest).
	Problems []string `json:"problems"`
	More     int      `json:"more_problems,omitempty"`
	// Pruned lists the records whose bodies the log's retention removed
	// (pruned, hash kept): their leaf hashes were checked against every
	// checkpoint like the other records, their contents can no longer be.
	// PrunedRecords counts them.
	Pruned        []PrunedRange `json:"pruned,omitempty"`
	PrunedRecords int64         `json:"pruned_records,omitempty"`
	// Archived counts the archived records (VerifyArchive) whose leaf
	// hashes matched the log's.
	Archived int64 `json:"archived,omitempty"`
}

// PrunedRange is a run of pruned records, First to Last.
type PrunedRange struct {
	First int64 `json:"first"`
	Last  int64 `json:"last"`
}

// maxProblems bounds a report: after a record is removed, every later
// checkpoint disagrees, and the first problems are the ones that matter.
const maxProblems = 50

// verifier checks a log's records and checkpoints, in index order, against
// each other: the same code checks the store (online, with the stored
// hashes and search columns too) and an export (offline).
type verifier struct {
	tenant    string
	v         note.Verifier
	t         *tree
	rep       Report
	lastGood  int64          // size of the last checkpoint that matched
	pending   []pendingCP    // checkpoints ahead of the records read, smallest first
	mismatch  int            // checkpoints that did not match
	checked   map[int64]bool // sizes already compared
	timeShown func(time.Time) string
	// prunedTo is the end of the pruned prefix that the signed pruning
	// records read so far state.
	prunedTo int64
	// archived holds the leaf hashes of archived records to compare with
	// the log's (VerifyArchive); nil otherwise.
	archived map[int64]tlog.Hash
}

type pendingCP struct {
	cp Checkpoint
}

func newVerifier(tenant string, v note.Verifier) *verifier {
	return &verifier{tenant: tenant, v: v, t: newTree(), checked: map[int64]bool{},
		rep: Report{Log: tenant, Origin: Origin(tenant), Problems: []string{}},
		timeShown: func(t time.Time) string {
			if t.IsZero() {
				return "at an unknown time"
			}
			return "at " + t.UTC().Format(time.RFC3339)
		}}
}

// problem notes a problem at index (-1 for none).
func (v *verifier) problem(index int64, format string, args ...any) {
	if index >= 0 && (v.rep.FirstBad == nil || index < *v.rep.FirstBad) {
		i := index
		v.rep.FirstBad = &i
	}
	if len(v.rep.Problems) >= maxProblems {
		v.rep.More++
		return
	}
	v.rep.Problems = append(v.rep.Problems, fmt.Sprintf(format, args...))
}

// record checks the next record: data as stored, at the stored index col
// (-1 offline), with the stored entry's columns and hashes (nil offline).
// A stored entry without data is a pruned record.
func (v *verifier) record(col int64, data []byte, e *steward.AuditEntry) {
	if e != nil && len(data) == 0 {
		var leaf tlog.Hash
		if len(e.Hashes) < tlog.HashSize {
			v.problem(v.t.n, "record %d has neither a body nor a leaf hash: it was changed", v.t.n)
		} else {
			copy(leaf[:], e.Hashes)
		}
		v.pruned(col, leaf, e.Hashes)
		return
	}
	want := v.t.n
	moved := false
	if col >= 0 && col != want {
		v.problem(want, "record %d is missing (the next stored record is %d): it was removed", want, col)
		moved = true
	}
	var r steward.AuditRecord
	if err := json.Unmarshal(data, &r); err != nil {
		v.problem(want, "record %d is not a valid audit record (%v): it was changed", want, err)
	} else {
		if r.Index != want && !moved {
			v.problem(want, "position %d holds the record of index %d: records were reordered, removed or inserted", want, r.Index)
		}
		if r.TenantID != v.tenant {
			v.problem(want, "record %d is a record of log %q, not of %q: it was moved between logs", want, r.TenantID, v.tenant)
		}
		var st pruneState
		if r.Action == PruneAction && r.Actor == pruneActor && json.Unmarshal(r.After, &st) == nil && st.To <= want {
			v.prunedTo = max(v.prunedTo, st.To)
		}
	}
	hs, err := v.t.add(data)
	if err != nil {
		v.problem(want, "record %d: %v", want, err)
		return
	}
	if e != nil && !bytes.Equal(joinHashes(hs), e.Hashes) {
		v.problem(want, "record %d: its stored tree hashes do not match its data: the record or its hashes were changed", want)
	}
	if e != nil && r.Action != "" {
		v.columns(want, e.Record, r)
	}
	v.rep.Records = v.t.n
	v.comparePending()
}

// pruned checks the next record, pruned by retention: its leaf hash
// (stored, or from an export line) takes the place of its body's hash in
// the tree, so a changed leaf hash no longer matches the checkpoints. The
// stored hashes are compared as for any record.
func (v *verifier) pruned(col int64, leaf tlog.Hash, stored []byte) {
	want := v.t.n
	if col >= 0 && col != want {
		v.problem(want, "record %d is missing (the next stored record is %d): it was removed", want, col)
	}
	if h, ok := v.archived[want]; ok {
		if h != leaf {
			v.problem(want, "archived record %d does not match the leaf hash the log keeps for it: the archive or the log was changed", want)
		} else {
			v.rep.Archived++
		}
		delete(v.archived, want)
	}
	hs, err := v.t.addLeaf(leaf)
	if err != nil {
		v.problem(want, "record %d: %v", want, err)
		return
	}
	if stored != nil && !bytes.Equal(joinHashes(hs), stored) {
		v.problem(want, "record %d (pruned): its stored tree hashes do not match its leaf hash: its hashes were changed", want)
	}
	if n := len(v.rep.Pruned); n > 0 && v.rep.Pruned[n-1].Last == want-1 {
		v.rep.Pruned[n-1].Last = want
	} else {
		v.rep.Pruned = append(v.rep.Pruned, PrunedRange{First: want, Last: want})
	}
	v.rep.PrunedRecords++
	v.rep.Records = v.t.n
	v.comparePending()
}

// columns compares the store's search columns of record i with the
// record the tree commits to, so that an edit that hides a record from
// search is caught too.
func (v *verifier) columns(i int64, col, signed steward.AuditRecord) {
	for _, c := range []struct{ name, got, want string }{
		{"actor", col.Actor, signed.Actor},
		{"action", col.Action, signed.Action},
		{"target", col.Target, signed.Target},
		{"outcome", col.Outcome, signed.Outcome},
		{"request_id", col.RequestID, signed.RequestID},
	} {
		if c.got != c.want {
			v.problem(i, "record %d: the stored %s column (%q) is not the record's (%q): one of them was changed", i, c.name, c.got, c.want)
		}
	}
	if !col.At.Equal(signed.At.UTC().Truncate(time.Microsecond)) {
		v.problem(i, "record %d: the stored time column (%s) is not the record's (%s): one of them was changed", i,
			col.At.UTC().Format(time.RFC3339Nano), signed.At.UTC().Format(time.RFC3339Nano))
	}
}

// checkpoint checks a signed checkpoint, stored at size col (-1 when the
// export line does not say), and compares it once the records reach it.
func (v *verifier) checkpoint(col int64, signed string) {
	c, err := OpenCheckpoint(signed, v.v)
	at := col - 1
	if err != nil {
		v.problem(at, "the checkpoint at size %d does not open: %v: it was changed or signed with another key", col, err)
		return
	}
	if c.Origin != Origin(v.tenant) {
		v.problem(c.Size-1, "the checkpoint at size %d is of log %q, not %q: it was moved between logs", c.Size, c.Origin, Origin(v.tenant))
		return
	}
	if col >= 0 && c.Size != col {
		v.problem(min(col, c.Size)-1, "the checkpoint stored at size %d signs size %d: it was moved", col, c.Size)
		return
	}
	v.rep.LatestCheckpoint = max(v.rep.LatestCheckpoint, c.Size)
	if c.Size < v.t.n || v.checked[c.Size] {
		// Only an export can be out of order: the store reads by size.
		v.problem(c.Size-1, "the checkpoint at size %d comes after record %d: the export was reordered", c.Size, v.t.n-1)
		return
	}
	i := len(v.pending)
	for i > 0 && v.pending[i-1].cp.Size > c.Size {
		i--
	}
	v.pending = append(v.pending[:i], append([]pendingCP{{c}}, v.pending[i:]...)...)
	v.comparePending()
}

// comparePending compares the checkpoints of the current size.
func (v *verifier) comparePending() {
	for len(v.pending) > 0 && v.pending[0].cp.Size == v.t.n {
		c := v.pending[0].cp
		v.pending = v.pending[1:]
		v.checked[c.Size] = true
		root, err := v.t.root()
		if err != nil {
			v.problem(c.Size-1, "tree hash at size %d: %v", c.Size, err)
			continue
		}
		if root == c.Root {
			v.rep.Checkpoints++
			v.lastGood = c.Size
			continue
		}
		v.mismatch++
		if v.mismatch > 1 {
			continue // counted at the end
		}
		if c.Size-v.lastGood == 1 {
			v.problem(c.Size-1, "record %d does not match the checkpoint signed %s at size %d: it was changed, removed or reordered",
				c.Size-1, v.timeShown(c.At), c.Size)
		} else {
			v.problem(v.lastGood, "records %d to %d do not match the checkpoint signed %s at size %d (the one at size %d matched): one of them was changed, removed or reordered",
				v.lastGood, c.Size-1, v.timeShown(c.At), c.Size, v.lastGood)
		}
	}
}

// finish checks what is left once every record was read: checkpoints of
// sizes the records never reached, records no checkpoint covers, and the
// log's size as stored (head, -1 when unknown).
func (v *verifier) finish(head int64) Report {
	if len(v.pending) > 0 {
		p := v.pending[len(v.pending)-1]
		v.problem(v.t.n, "the checkpoint signed %s at size %d covers %d records, but only %d are left: records %d to %d were removed",
			v.timeShown(p.cp.At), p.cp.Size, p.cp.Size, v.t.n, v.t.n, p.cp.Size-1)
	}
	if v.mismatch > 1 {
		v.problem(-1, "%d later checkpoints do not match the records either", v.mismatch-1)
	}
	if v.rep.LatestCheckpoint < v.t.n {
		v.problem(v.rep.LatestCheckpoint, "records %d to %d are not covered by any signed checkpoint: they were added behind the log's back",
			v.rep.LatestCheckpoint, v.t.n-1)
	}
	if head >= 0 && head != v.t.n {
		v.problem(min(head, v.t.n), "the log's size is %d, but it holds %d records", head, v.t.n)
	}
	if len(v.archived) > 0 {
		left := slices.Sorted(maps.Keys(v.archived))
		v.problem(left[0], "%d archived records, from record %d, are not pruned records of the export: take the export after the pruning",
			len(left), left[0])
	}
	// Retention prunes the log's first records, and says so in a signed
	// record: a body missing anywhere else was erased.
	for _, r := range v.rep.Pruned {
		if r.Last >= v.prunedTo {
			first := max(r.First, v.prunedTo)
			v.problem(first, "records %d to %d have no body, but the signed pruning records remove only records before %d: they were erased behind the log's back",
				first, r.Last, v.prunedTo)
		}
	}
	if root, err := v.t.root(); err == nil {
		v.rep.Root = root.String()
	}
	v.rep.OK = len(v.rep.Problems) == 0
	return v.rep
}

// pageSize is how many records and checkpoints Verify and Export read at
// a time.
const pageSize = 1000

// Verify recomputes tenant's tree from the stored records and checks it
// against every signed checkpoint, the stored tree hashes and the search
// columns. Tampering is a Report that is not OK, naming the first bad
// index; an error means the check could not run.
func (l *Log) Verify(ctx context.Context, tenant string) (Report, error) {
	v := newVerifier(tenant, l.keys.Verifier)
	head, err := l.store.AuditSize(ctx, tenant)
	if err != nil {
		return Report{}, err
	}
	cps := &cpStream{ctx: ctx, store: l.store, tenant: tenant}
	err = l.walk(ctx, tenant, cps, func(e steward.AuditEntry) error {
		v.record(e.Record.Index, e.Data, &e)
		return nil
	}, func(c steward.AuditCheckpoint) error {
		v.checkpoint(c.Size, c.Note)
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	return v.finish(head), nil
}

// cpStream reads a log's checkpoints a page at a time, smallest first.
type cpStream struct {
	ctx    context.Context
	store  steward.Store
	tenant string
	buf    []steward.AuditCheckpoint
	after  int64
	done   bool
}

// upTo returns the checkpoints of sizes up to size not returned yet (all
// that are left when size is negative).
func (s *cpStream) upTo(size int64) ([]steward.AuditCheckpoint, error) {
	var out []steward.AuditCheckpoint
	for {
		for len(s.buf) > 0 && (size < 0 || s.buf[0].Size <= size) {
			out = append(out, s.buf[0])
			s.buf = s.buf[1:]
		}
		if len(s.buf) > 0 || s.done {
			return out, nil
		}
		page, err := s.store.AuditCheckpoints(s.ctx, s.tenant, s.after, pageSize)
		if err != nil {
			return nil, err
		}
		if len(page) < pageSize {
			s.done = true
		}
		if len(page) > 0 {
			s.after = page[len(page)-1].Size
		}
		s.buf = page
	}
}

// walk reads tenant's records and checkpoints in order: each checkpoint
// right after the record that brought the log to its size, and any of a
// size no record reached at the end.
func (l *Log) walk(ctx context.Context, tenant string, cps *cpStream, rec func(steward.AuditEntry) error, cp func(steward.AuditCheckpoint) error) error {
	from := int64(0)
	for {
		page, err := l.store.AuditEntries(ctx, tenant, from, pageSize)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := rec(e); err != nil {
				return err
			}
			more, err := cps.upTo(e.Record.Index + 1)
			if err != nil {
				return err
			}
			for _, c := range more {
				if err := cp(c); err != nil {
					return err
				}
			}
		}
		if len(page) < pageSize {
			break
		}
		from = page[len(page)-1].Record.Index + 1
	}
	rest, err := cps.upTo(-1)
	if err != nil {
		return err
	}
	for _, c := range rest {
		if err := cp(c); err != nil {
			return err
		}
	}
	return nil
}

// ExportFormat names the export's format in its first line.
const ExportFormat = "steward-audit-export/v1"

// ExportHeader is the first line of an export.
type ExportHeader struct {
	Format      string    `json:"format"`
	Log         string    `json:"log"`
	Origin      string    `json:"origin"`
	Size        int64     `json:"size"`
	VerifierKey string    `json:"verifier_key"`
	ExportedAt  time.Time `json:"exported_at"`
}

// ExportCheckpoint is a checkpoint line of an export.
type ExportCheckpoint struct {
	Size       int64  `json:"size"`
	Checkpoint string `json:"checkpoint"`
}

// ExportPruned is the line of a pruned record in an export: its index and
// its leaf hash, which is all the log keeps of it.
type ExportPruned struct {
	Pruned struct {
		Index    int64     `json:"index"`
		LeafHash tlog.Hash `json:"leaf_hash"`
	} `json:"pruned"`
}

// Export writes tenant's whole log as JSON lines: a header (ExportHeader),
// then each record's canonical bytes, exactly as the tree hashes them, one
// per line (a pruned record as ExportPruned), each followed by the
// checkpoint of the size it brought the log to (ExportCheckpoint).
// VerifyExport checks it offline.
func (l *Log) Export(ctx context.Context, tenant string, w io.Writer) error {
	head, err := l.store.AuditSize(ctx, tenant)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	if err := enc.Encode(ExportHeader{Format: ExportFormat, Log: tenant, Origin: Origin(tenant), Size: head,
		VerifierKey: l.keys.VerifierKey, ExportedAt: l.clock.Now().UTC()}); err != nil {
		return err
	}
	cps := &cpStream{ctx: ctx, store: l.store, tenant: tenant}
	err = l.walk(ctx, tenant, cps, func(e steward.AuditEntry) error {
		if len(e.Data) == 0 {
			var p ExportPruned
			p.Pruned.Index = e.Record.Index
			copy(p.Pruned.LeafHash[:], e.Hashes)
			return enc.Encode(p)
		}
		// A line is one record: canonical JSON has no newline, but a
		// changed row might; refuse to write a line that would split.
		if bytes.ContainsAny(e.Data, "\r\n") {
			return steward.Errorf(steward.CodeInternal, "audit record %d of %q holds a line break: run steward audit verify", e.Record.Index, tenant)
		}
		bw.Write(e.Data)
		return bw.WriteByte('\n')
	}, func(c steward.AuditCheckpoint) error {
		return enc.Encode(ExportCheckpoint{Size: c.Size, Checkpoint: c.Note})
	})
	if err != nil {
		return err
	}
	return bw.Flush()
}

// maxLine is the longest line VerifyExport reads: a record's states are
// limited to 64 KiB each, and JSON escaping can grow them.
const maxLine = 1 << 20

// VerifyExport checks an export offline with the verifier key alone: the
// records against every checkpoint in it. Tampering is a Report that is
// not OK, naming the first bad index; an error means the file is not an
// export.
func VerifyExport(r io.Reader, verifierKey string) (Report, error) {
	return verifyExport(r, verifierKey, nil)
}

// VerifyArchive checks an archive (the records one pruning removed, see
// ArchiveHeader) against an export of the log taken after the pruning:
// the export as VerifyExport does, and each archived record's leaf hash
// against the one the export keeps for its index, which the checkpoints
// sign. A Report that is not OK names the first bad index; an error means
// a file is not what it should be.
func VerifyArchive(archive, export io.Reader, verifierKey string) (Report, error) {
	sc := bufio.NewScanner(archive)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	var h ArchiveHeader
	if !sc.Scan() || json.Unmarshal(sc.Bytes(), &h) != nil || h.Format != ArchiveFormat || h.Last < h.First {
		if err := sc.Err(); err != nil {
			return Report{}, fmt.Errorf("read archive: %w", err)
		}
		return Report{}, steward.Errorf(steward.CodeInvalid, "the archive's first line is not a %s header", ArchiveFormat)
	}
	leaves := map[int64]tlog.Hash{}
	for i := h.First; sc.Scan(); i++ {
		if i > h.Last {
			return Report{}, steward.Errorf(steward.CodeInvalid, "the archive holds more records than %d to %d", h.First, h.Last)
		}
		leaves[i] = tlog.RecordHash(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		return Report{}, fmt.Errorf("read archive: %w", err)
	}
	if int64(len(leaves)) != h.Last-h.First+1 {
		return Report{}, steward.Errorf(steward.CodeInvalid, "the archive holds %d records, not %d to %d", len(leaves), h.First, h.Last)
	}
	rep, err := verifyExport(export, verifierKey, leaves)
	if err == nil && rep.Log != h.Log {
		return Report{}, steward.Errorf(steward.CodeInvalid, "the archive is of log %q, the export of %q", h.Log, rep.Log)
	}
	return rep, err
}

// verifyExport is VerifyExport, comparing the archived leaf hashes given
// with the log's.
func verifyExport(r io.Reader, verifierKey string, archived map[int64]tlog.Hash) (Report, error) {
	nv, err := note.NewVerifier(verifierKey)
	if err != nil {
		return Report{}, steward.WrapError(steward.CodeInvalid, err, "verifier key %q does not parse", verifierKey)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return Report{}, fmt.Errorf("read export: %w", err)
		}
		return Report{}, steward.Errorf(steward.CodeInvalid, "the export is empty")
	}
	var h ExportHeader
	if err := json.Unmarshal(sc.Bytes(), &h); err != nil || h.Format != ExportFormat {
		return Report{}, steward.Errorf(steward.CodeInvalid, "the first line is not a %s header", ExportFormat)
	}
	v := newVerifier(h.Log, nv)
	v.archived = archived
	if h.VerifierKey != "" && h.VerifierKey != verifierKey {
		v.problem(-1, "the export names verifier key %s, not the key given; it was checked with the key given", h.VerifierKey)
	}
	line := 1
	for sc.Scan() {
		line++
		b := sc.Bytes()
		var probe struct {
			Checkpoint *string `json:"checkpoint"`
			Size       int64   `json:"size"`
			Pruned     *struct {
				Index    int64     `json:"index"`
				LeafHash tlog.Hash `json:"leaf_hash"`
			} `json:"pruned"`
		}
		if json.Unmarshal(b, &probe) == nil && probe.Checkpoint != nil {
			v.checkpoint(probe.Size, *probe.Checkpoint)
			continue
		}
		if json.Unmarshal(b, &probe) == nil && probe.Pruned != nil {
			if probe.Pruned.Index != v.t.n {
				v.problem(v.t.n, "position %d holds the pruned record of index %d: records were reordered, removed or inserted", v.t.n, probe.Pruned.Index)
			}
			v.pruned(-1, probe.Pruned.LeafHash, nil)
			continue
		}
		v.record(-1, bytes.Clone(b), nil)
	}
	if err := sc.Err(); err != nil {
		return Report{}, fmt.Errorf("read export line %d: %w", line+1, err)
	}
	return v.finish(h.Size), nil
}

// rootOf returns the tree hash of data, records in order (for tests and
// tools).
func rootOf(data ...[]byte) (tlog.Hash, error) {
	t := newTree()
	for _, d := range data {
		if _, err := t.add(d); err != nil {
			return tlog.Hash{}, err
		}
	}
	return t.root()
}
