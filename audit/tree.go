package audit

import (
	"context"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/steward-iot/steward"
)

// Origin names a tenant's log in its checkpoints, so that a checkpoint of
// one log is never taken for another's: "steward-audit/TENANT", and
// "steward-audit" for the system log.
func Origin(tenant string) string {
	if tenant == steward.SystemAuditLog {
		return KeyName
	}
	return KeyName + "/" + tenant
}

// formatCheckpoint is the text a checkpoint signs, in the C2SP
// tlog-checkpoint form: the origin, the size, the root hash (base64), and
// one extension line with the time it was signed.
func formatCheckpoint(tenant string, size int64, root tlog.Hash, at time.Time) string {
	return fmt.Sprintf("%s\n%d\n%s\n%s\n", Origin(tenant), size, root, at.UTC().Format(time.RFC3339Nano))
}

// Checkpoint is a checkpoint whose signature has been checked.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	At     time.Time
}

// OpenCheckpoint checks a signed checkpoint with the verifier and parses
// it. It does not check which log it is of (compare Origin).
func OpenCheckpoint(signed string, v note.Verifier) (Checkpoint, error) {
	n, err := note.Open([]byte(signed), note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("signature does not verify with key %s: %w", v.Name(), err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 {
		return Checkpoint{}, fmt.Errorf("checkpoint text is malformed")
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Size, err = strconv.ParseInt(lines[1], 10, 64); err != nil || c.Size < 0 || lines[1] != strconv.FormatInt(c.Size, 10) {
		return Checkpoint{}, fmt.Errorf("checkpoint size %q is malformed", lines[1])
	}
	if c.Root, err = tlog.ParseHash(lines[2]); err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint hash is malformed: %w", err)
	}
	if len(lines) > 4 && lines[3] != "" {
		if c.At, err = time.Parse(time.RFC3339Nano, lines[3]); err != nil {
			return Checkpoint{}, fmt.Errorf("checkpoint time %q is malformed", lines[3])
		}
	}
	return c, nil
}

// joinHashes concatenates hashes as the store keeps them.
func joinHashes(hs []tlog.Hash) []byte {
	b := make([]byte, 0, len(hs)*tlog.HashSize)
	for _, h := range hs {
		b = append(b, h[:]...)
	}
	return b
}

// recordOfStoredHash returns the record whose append stored the hash with
// stored index i, and the hash's place among that record's hashes: the
// hash of level L, node N was stored by the record that completed it,
// ((N+1) << L) - 1, as its L-th hash (see tlog.StoredHashes).
func recordOfStoredHash(i int64) (record int64, pos int) {
	level, n := tlog.SplitStoredHashIndex(i)
	return (n+1)<<uint(level) - 1, level
}

// storeHashReader reads stored hashes from the store's records, and from
// records of the append in progress (pending).
type storeHashReader struct {
	ctx     context.Context
	store   steward.Store
	tenant  string
	pending map[int64][]byte
}

// ReadHashes implements tlog.HashReader.
func (r *storeHashReader) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	var need []int64
	for _, i := range indexes {
		rec, _ := recordOfStoredHash(i)
		if _, ok := r.pending[rec]; !ok {
			need = append(need, rec)
		}
	}
	got := map[int64][]byte{}
	if len(need) > 0 {
		blobs, err := r.store.AuditEntryHashes(r.ctx, r.tenant, need)
		if err != nil {
			return nil, err
		}
		for k, rec := range need {
			got[rec] = blobs[k]
		}
	}
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		rec, pos := recordOfStoredHash(i)
		blob, ok := r.pending[rec]
		if !ok {
			blob = got[rec]
		}
		if len(blob) < (pos+1)*tlog.HashSize {
			return nil, steward.Errorf(steward.CodeInternal, "audit record %d of %q holds %d bytes of tree hashes, too few: run steward audit verify", rec, r.tenant, len(blob))
		}
		copy(out[k][:], blob[pos*tlog.HashSize:])
	}
	return out, nil
}

// tree recomputes a log's tree from its records, in order, keeping only
// the hashes the next record and the root need (at most 2 log₂ n): a log
// of any size is checked in constant memory.
type tree struct {
	n      int64
	hashes map[int64]tlog.Hash
}

func newTree() *tree { return &tree{hashes: map[int64]tlog.Hash{}} }

// ReadHashes implements tlog.HashReader.
func (t *tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		h, ok := t.hashes[i]
		if !ok {
			return nil, fmt.Errorf("audit tree: hash %d was not kept", i)
		}
		out[k] = h
	}
	return out, nil
}

// add appends a record and returns the hashes its append stores.
func (t *tree) add(data []byte) ([]tlog.Hash, error) {
	return t.addLeaf(tlog.RecordHash(data))
}

// addLeaf appends a record by its leaf hash alone (a pruned record's) and
// returns the hashes its append stores.
func (t *tree) addLeaf(leaf tlog.Hash) ([]tlog.Hash, error) {
	hs, err := tlog.StoredHashesForRecordHash(t.n, leaf, t)
	if err != nil {
		return nil, err
	}
	base := tlog.StoredHashIndex(0, t.n)
	for k, h := range hs {
		t.hashes[base+int64(k)] = h
	}
	t.n++
	// Keep the roots of the perfect subtrees that make up the tree: the
	// next append and the root read nothing else.
	keep := map[int64]tlog.Hash{}
	for lo := int64(0); lo < t.n; {
		level := bits.Len64(uint64(t.n-lo)) - 1
		i := tlog.StoredHashIndex(level, lo>>uint(level))
		keep[i] = t.hashes[i]
		lo += 1 << uint(level)
	}
	t.hashes = keep
	return hs, nil
}

// root returns the tree hash of the records added so far.
func (t *tree) root() (tlog.Hash, error) { return tlog.TreeHash(t.n, t) }
