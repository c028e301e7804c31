package audit

import (
	"context"
	"encoding/json"
	"fmt"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/steward-iot/steward"
)

// InclusionProof proves that a record is in a log of a signed size (RFC
// 6962's audit path).
type InclusionProof struct {
	Log   string `json:"log"`
	Index int64  `json:"index"`
	Size  int64  `json:"size"`
	// Data is the record's canonical bytes (base64), which the proof is
	// about; Record is the same, decoded, for reading.
	Data       []byte              `json:"data"`
	Record     steward.AuditRecord `json:"record"`
	LeafHash   tlog.Hash           `json:"leaf_hash"`
	Proof      []tlog.Hash         `json:"proof"`
	Checkpoint string              `json:"checkpoint"`
}

// ConsistencyProof proves that a log of size New holds, unchanged, the
// log it was at size Old (RFC 6962's consistency proof).
type ConsistencyProof struct {
	Log string `json:"log"`
	Old int64  `json:"old"`
	New int64  `json:"new"`
	// OldRoot is the server's tree hash at Old; check the proof against
	// a checkpoint of Old you kept yourself, not against this.
	OldRoot tlog.Hash `json:"old_root"`
	// OldCheckpoint is the server's signed checkpoint at Old, when Old is
	// a size the log had after an append.
	OldCheckpoint string      `json:"old_checkpoint,omitempty"`
	NewCheckpoint string      `json:"new_checkpoint"`
	Proof         []tlog.Hash `json:"proof"`
}

// signedCheckpoint returns the checkpoint of tenant's log at size (the
// latest when size is negative), or CodeInvalid naming the latest size
// when size was never signed.
func (l *Log) signedCheckpoint(ctx context.Context, tenant string, size int64) (steward.AuditCheckpoint, error) {
	c, err := l.store.AuditCheckpoint(ctx, tenant, size)
	if steward.IsNotFound(err) && size >= 0 {
		latest, lerr := l.store.AuditCheckpoint(ctx, tenant, -1)
		if lerr != nil {
			return c, steward.Errorf(steward.CodeInvalid, "the audit log has no signed checkpoint yet")
		}
		return c, steward.Errorf(steward.CodeInvalid,
			"the audit log has no signed checkpoint at size %d: it signs the size it has after each append (the latest is %d)", size, latest.Size)
	}
	if steward.IsNotFound(err) {
		return c, steward.Errorf(steward.CodeNotFound, "the audit log is empty")
	}
	return c, err
}

// InclusionProof proves record index of tenant's log in the log of size
// (the latest signed size when size is negative), which must be a signed
// size. The proof is checked before it is returned.
func (l *Log) InclusionProof(ctx context.Context, tenant string, index, size int64) (InclusionProof, error) {
	cp, err := l.signedCheckpoint(ctx, tenant, size)
	if err != nil {
		return InclusionProof{}, err
	}
	if index < 0 || index >= cp.Size {
		return InclusionProof{}, steward.Errorf(steward.CodeInvalid, "index %d is not in a log of size %d (0 to %d)", index, cp.Size, cp.Size-1)
	}
	es, err := l.store.AuditEntries(ctx, tenant, index, 1)
	if err != nil {
		return InclusionProof{}, err
	}
	if len(es) == 0 || es[0].Record.Index != index {
		return InclusionProof{}, steward.Errorf(steward.CodeInternal, "audit record %d is missing: run steward audit verify", index)
	}
	if len(es[0].Data) == 0 {
		return InclusionProof{}, steward.Errorf(steward.CodeInvalid,
			"audit record %d was pruned by the log's retention: its body is gone, only its leaf hash is kept", index)
	}
	reader := &storeHashReader{ctx: ctx, store: l.store, tenant: tenant}
	proof, err := tlog.ProveRecord(cp.Size, index, reader)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("prove audit record %d: %w", index, err)
	}
	p := InclusionProof{Log: tenant, Index: index, Size: cp.Size, Data: es[0].Data, LeafHash: tlog.RecordHash(es[0].Data),
		Proof: proof, Checkpoint: cp.Note}
	_ = json.Unmarshal(es[0].Data, &p.Record) // checked by CheckInclusion
	if err := CheckInclusion(p, l.keys.Verifier); err != nil {
		return InclusionProof{}, steward.WrapError(steward.CodeInternal, err, "the stored log does not prove record %d: run steward audit verify", index)
	}
	return p, nil
}

// CheckInclusion checks an inclusion proof with the verifier key: the
// checkpoint's signature and log, and the record's path to its root.
func CheckInclusion(p InclusionProof, v note.Verifier) error {
	c, err := OpenCheckpoint(p.Checkpoint, v)
	if err != nil {
		return err
	}
	if c.Origin != Origin(p.Log) || c.Size != p.Size {
		return fmt.Errorf("the checkpoint is of %s at size %d, not of %s at size %d", c.Origin, c.Size, Origin(p.Log), p.Size)
	}
	var r steward.AuditRecord
	if err := json.Unmarshal(p.Data, &r); err != nil {
		return fmt.Errorf("the proven data is not an audit record: %w", err)
	}
	if r.Index != p.Index || r.TenantID != p.Log {
		return fmt.Errorf("the proven data is record %d of %q, not record %d of %q", r.Index, r.TenantID, p.Index, p.Log)
	}
	if err := tlog.CheckRecord(p.Proof, c.Size, c.Root, p.Index, tlog.RecordHash(p.Data)); err != nil {
		return fmt.Errorf("record %d is not in the signed log of size %d: %w", p.Index, c.Size, err)
	}
	return nil
}

// ConsistencyProof proves that tenant's log at size newSize (the latest
// when negative; a signed size) extends the log it was at oldSize. The
// proof is checked before it is returned.
func (l *Log) ConsistencyProof(ctx context.Context, tenant string, oldSize, newSize int64) (ConsistencyProof, error) {
	cp, err := l.signedCheckpoint(ctx, tenant, newSize)
	if err != nil {
		return ConsistencyProof{}, err
	}
	if oldSize < 1 || oldSize > cp.Size {
		return ConsistencyProof{}, steward.Errorf(steward.CodeInvalid, "old size %d must be 1 to %d", oldSize, cp.Size)
	}
	reader := &storeHashReader{ctx: ctx, store: l.store, tenant: tenant}
	oldRoot, err := tlog.TreeHash(oldSize, reader)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("tree hash at size %d: %w", oldSize, err)
	}
	proof, err := tlog.ProveTree(cp.Size, oldSize, reader)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("prove audit log consistency: %w", err)
	}
	p := ConsistencyProof{Log: tenant, Old: oldSize, New: cp.Size, OldRoot: oldRoot, NewCheckpoint: cp.Note, Proof: proof}
	if old, err := l.store.AuditCheckpoint(ctx, tenant, oldSize); err == nil {
		p.OldCheckpoint = old.Note
	} else if !steward.IsNotFound(err) {
		return ConsistencyProof{}, err
	}
	if err := CheckConsistency(p, l.keys.Verifier, ""); err != nil {
		return ConsistencyProof{}, steward.WrapError(steward.CodeInternal, err, "the stored log does not prove its consistency from size %d: run steward audit verify", oldSize)
	}
	return p, nil
}

// CheckConsistency checks a consistency proof with the verifier key. kept
// is a signed checkpoint of size p.Old that the caller kept from earlier:
// that is what catches a log rewritten and signed again. Without it the
// server's own old checkpoint (or, for a size never signed, its old root)
// is used, which proves only that the server is consistent with itself.
func CheckConsistency(p ConsistencyProof, v note.Verifier, kept string) error {
	nc, err := OpenCheckpoint(p.NewCheckpoint, v)
	if err != nil {
		return fmt.Errorf("new checkpoint: %w", err)
	}
	if nc.Origin != Origin(p.Log) || nc.Size != p.New {
		return fmt.Errorf("the new checkpoint is of %s at size %d, not of %s at size %d", nc.Origin, nc.Size, Origin(p.Log), p.New)
	}
	oldRoot := p.OldRoot
	if old := kept; old != "" || p.OldCheckpoint != "" {
		if old == "" {
			old = p.OldCheckpoint
		}
		oc, err := OpenCheckpoint(old, v)
		if err != nil {
			return fmt.Errorf("old checkpoint: %w", err)
		}
		if oc.Origin != Origin(p.Log) || oc.Size != p.Old {
			return fmt.Errorf("the old checkpoint is of %s at size %d, not of %s at size %d", oc.Origin, oc.Size, Origin(p.Log), p.Old)
		}
		oldRoot = oc.Root
	}
	if err := tlog.CheckTree(p.Proof, p.New, nc.Root, p.Old, oldRoot); err != nil {
		return fmt.Errorf("the log of size %d does not extend the log of size %d: %w", p.New, p.Old, err)
	}
	return nil
}
