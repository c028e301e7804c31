package steward

import (
	"context"
	"time"
)

// SystemAuditLog is the tenant ID of the system audit log, which keeps the
// actions no tenant can be named for (an authentication attempt with an
// unknown token). Tenant IDs are never empty, so it cannot collide.
const SystemAuditLog = ""

// AuditHashSize is the size of one hash of the audit log's Merkle tree
// (SHA-256).
const AuditHashSize = 32

// AuditEntry is one record as the audit log stores it. A record pruned by
// the audit log's retention (AuditStore.PruneAudit) has no Data and only
// its Index, TenantID and At in Record: its Hashes are kept, so the tree,
// its checkpoints and the proofs of the other records still hold.
type AuditEntry struct {
	// Record holds the record's searchable fields. Read back with
	// AuditEntries they come from the store's columns, which are a copy:
	// Data is what the tree commits to, and the verifier compares the two.
	Record AuditRecord
	// Data is the record's canonical JSON, the exact bytes the tree hashes.
	Data []byte
	// Hashes are the tree hashes that appending the record stored, in the
	// order of golang.org/x/mod/sumdb/tlog.StoredHashes: the record's leaf
	// hash, then the hash of each subtree it completed; AuditHashSize bytes
	// each, concatenated.
	Hashes []byte
}

// AuditCheckpoint is a signed statement of an audit log's size and tree
// hash: a golang.org/x/mod/sumdb/note signed note whose text is the log's
// origin, the size and the root hash.
type AuditCheckpoint struct {
	TenantID  string    `json:"tenant_id"`
	Size      int64     `json:"size"`
	Note      string    `json:"note"`
	CreatedAt time.Time `json:"created_at"`
}

// AuditFilter narrows a search of an audit log. Empty fields match
// everything; Action may end in "*" to match a prefix.
type AuditFilter struct {
	Actor   string
	Action  string
	Target  string
	Outcome string
	// From and To bound the record's time: at or after From, before To;
	// zero means no bound.
	From, To time.Time
	// Desc lists the newest first (by index).
	Desc bool
	// Cursor, when not negative, continues a listing: only indexes greater
	// than it (less than it with Desc). Use -1 (or NoAuditCursor) to start.
	Cursor int64
	Limit  int // 0 means the store's default (100); at most 1000
}

// NoAuditCursor starts a search at the beginning (or the end, with Desc).
const NoAuditCursor int64 = -1

// AuditLogSize is the size of one audit log.
type AuditLogSize struct {
	TenantID string `json:"tenant_id"`
	Size     int64  `json:"size"`
}

// AuditStore keeps the tamper-evident audit log: one append-only log per
// tenant (and the system log, SystemAuditLog), each the sequence of its
// records' canonical bytes with the Merkle tree hashes stored alongside so
// that proofs read a few rows, and the signed checkpoints of the sizes it
// had. The store knows nothing of hashing or signatures (the audit package
// does); it keeps appends in order and never rewrites a record.
//
// Audit logs are not tied to the tenants table: they outlive a tenant.
type AuditStore interface {
	// LockAuditLog returns the size of tenantID's log (0 when it has no
	// record yet). Inside InTx it takes the log's lock, held until the
	// transaction ends, so that two appends (on two nodes too) run one
	// after the other and never fork the tree.
	LockAuditLog(ctx context.Context, tenantID string) (int64, error)
	// AppendAudit writes entries at consecutive indexes starting at the
	// log's size, with the checkpoint of the new size, and moves the log's
	// size: all of it or nothing. CodeConflict when the log's size is not
	// the first entry's index (another append won; lock and retry),
	// CodeInvalid for entries out of sequence, of another tenant, without
	// data or hashes, or a checkpoint that is not of the new size.
	AppendAudit(ctx context.Context, tenantID string, entries []AuditEntry, cp AuditCheckpoint) error
	// AuditSize returns the size of tenantID's log without locking it.
	AuditSize(ctx context.Context, tenantID string) (int64, error)
	// AuditLogs lists every audit log and its size, ordered by tenant (a
	// system job: verification of every log).
	AuditLogs(ctx context.Context) ([]AuditLogSize, error)
	// AuditEntries returns up to limit (1 to 10000) entries of tenantID's
	// log with indexes from from on, in index order. It returns what is
	// stored: a removed record is a gap, a changed one is as changed.
	AuditEntries(ctx context.Context, tenantID string, from int64, limit int) ([]AuditEntry, error)
	// PruneAudit removes the bodies of records from to to-1 of
	// tenantID's log, the audit log's retention: their data and search
	// columns are cleared, their index, time and tree hashes kept. It
	// returns how many bodies it removed (a record pruned before is not
	// counted again). CodeInvalid when from is negative, from > to, or to
	// is past the log's size. Only the audit package calls it, in the
	// transaction that appends the signed record of the pruning.
	PruneAudit(ctx context.Context, tenantID string, from, to int64) (int, error)
	// AuditEntryHashes returns the stored hashes (AuditEntry.Hashes) of
	// the records with the given indexes, in the same order; CodeNotFound
	// naming the first index that has none.
	AuditEntryHashes(ctx context.Context, tenantID string, indexes []int64) ([][]byte, error)
	// SearchAudit returns the records of tenantID's log matching f, in
	// index order (newest first with f.Desc), decoded from their stored
	// bytes; pruned records are left out. A bad filter is CodeInvalid.
	SearchAudit(ctx context.Context, tenantID string, f AuditFilter) ([]AuditRecord, error)
	// AuditCheckpoints returns up to limit (1 to 10000) checkpoints of
	// tenantID's log with sizes greater than after, smallest first.
	AuditCheckpoints(ctx context.Context, tenantID string, after int64, limit int) ([]AuditCheckpoint, error)
	// AuditCheckpoint returns the checkpoint of tenantID's log at size
	// (CodeNotFound when that size was never checkpointed); a negative
	// size asks for the latest.
	AuditCheckpoint(ctx context.Context, tenantID string, size int64) (AuditCheckpoint, error)
}
