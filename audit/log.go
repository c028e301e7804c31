// Package audit is Steward's tamper-evident audit log: every operator, API
// and system action, appended to one Merkle tree log per tenant
// (golang.org/x/mod/sumdb/tlog, the design of Certificate Transparency)
// whose every size is committed to by a checkpoint signed with the
// cluster's audit key (golang.org/x/mod/sumdb/note).
//
// What it proves: a record changed, removed, reordered or inserted after
// the fact no longer matches the signed checkpoints, and Verify names the
// first bad index; an exported copy is checked the same way offline with
// the verifier key alone. What it does not: someone holding the signing
// key (the server itself, or whoever has its master key) can rewrite the
// whole log and sign it again. Only a checkpoint kept outside the server
// catches that, through a consistency proof (docs/security.md).
package audit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/steward-iot/steward"
)

// KeyName names the audit signing key in signatures and verifier keys.
const KeyName = "steward-audit"

// secretName is the server secret holding the sealed signing key.
const secretName = "audit-signing-key"

// Limits on a record, so that one caller cannot bloat the log.
const (
	maxFieldLen  = 1024     // actor, action, target, remote, request ID
	maxDetailLen = 4096     // bytes
	maxStateLen  = 64 << 10 // bytes of Before and of After
)

// appendRetries bounds the retries of an append that lost a race on a
// store without the log lock (it never should with it).
const appendRetries = 5

// Sealer seals and opens server-held secrets (pki.Keyring does).
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}

// Keys are the audit signing key and its verifier key.
type Keys struct {
	Signer   note.Signer
	Verifier note.Verifier
	// VerifierKey is the verifier key as text, "steward-audit+HASH+KEY",
	// which is public: anyone checking an export needs it.
	VerifierKey string
}

// LoadOrCreateKeys reads the cluster's audit signing key from the store,
// or creates it on the first start: one Ed25519 key per cluster, sealed
// under the master key as the other server-held keys are (a JSON record
// with the PKCS #8 key). Two nodes starting at once agree on one
// (CreateSecret refuses the second).
func LoadOrCreateKeys(ctx context.Context, store steward.Store, sealer Sealer) (Keys, error) {
	sealed, err := store.GetSecret(ctx, secretName)
	if steward.IsNotFound(err) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return Keys{}, fmt.Errorf("generate audit key: %w", gerr)
		}
		der, merr := x509.MarshalPKCS8PrivateKey(priv)
		if merr != nil {
			return Keys{}, fmt.Errorf("encode audit key: %w", merr)
		}
		rec, merr := json.Marshal(keyRecord{Key: der})
		if merr != nil {
			return Keys{}, fmt.Errorf("encode audit key: %w", merr)
		}
		if sealed, err = sealer.Seal(secretName, rec); err != nil {
			return Keys{}, fmt.Errorf("seal audit key: %w", err)
		}
		err = store.CreateSecret(ctx, secretName, sealed)
		if steward.IsConflict(err) {
			sealed, err = store.GetSecret(ctx, secretName) // another node won
		}
	}
	if err != nil {
		return Keys{}, fmt.Errorf("audit key: %w", err)
	}
	plain, err := sealer.Open(secretName, sealed)
	if err != nil {
		return Keys{}, fmt.Errorf("open audit key: %w", err)
	}
	var rec keyRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		return Keys{}, steward.WrapError(steward.CodeInternal, err, "the stored audit key is malformed")
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Key)
	priv, ok := k.(ed25519.PrivateKey)
	if err != nil || !ok {
		return Keys{}, steward.Errorf(steward.CodeInternal, "the stored audit key is not an Ed25519 key")
	}
	return KeysOf(priv)
}

// keyRecord is how the signing key is sealed, as pki seals its keys.
type keyRecord struct {
	Key []byte `json:"key"` // PKCS #8
}

// KeysOf returns the note signer and verifier of an Ed25519 key, named
// KeyName.
func KeysOf(priv ed25519.PrivateKey) (Keys, error) {
	vkey, err := note.NewEd25519VerifierKey(KeyName, priv.Public().(ed25519.PublicKey))
	if err != nil {
		return Keys{}, fmt.Errorf("audit verifier key: %w", err)
	}
	// A note signer key is the verifier key's name and hash with the
	// private seed: "PRIVATE+KEY+NAME+HASH+base64(1 || seed)".
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...))
	return NewKeys(skey, vkey)
}

// NewKeys makes Keys from a note signer key and its verifier key.
func NewKeys(skey, vkey string) (Keys, error) {
	s, err := note.NewSigner(skey)
	if err != nil {
		return Keys{}, fmt.Errorf("audit signer key: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Keys{}, fmt.Errorf("audit verifier key: %w", err)
	}
	if s.Name() != v.Name() || s.KeyHash() != v.KeyHash() {
		return Keys{}, steward.Errorf(steward.CodeInvalid, "the audit verifier key is not the signer key's")
	}
	return Keys{Signer: s, Verifier: v, VerifierKey: vkey}, nil
}

// Config is what a Log runs on.
type Config struct {
	Store  steward.Store
	Keys   Keys
	Clock  steward.Clock
	Logger *slog.Logger
	// ArchiveDir, when set, is where Prune writes the records whose bodies
	// it is about to remove (archive.go); empty: they are not kept.
	ArchiveDir string
}

// Log is the audit log service. It implements steward.Auditor.
type Log struct {
	store steward.Store
	keys  Keys
	clock steward.Clock
	log   *slog.Logger
	// approvals, when set, gates changes of a retention period
	// (SetApprovals).
	approvals  steward.Approvals
	archiveDir string

	// Records of concurrent Record calls wait here, per tenant, to be
	// appended together: one transaction, one fsync and one signature for
	// all of them (group commit), while each call still returns only once
	// its record is committed.
	mu       sync.Mutex
	pending  map[string][]*waiter
	flushing map[string]bool
}

// waiter is a Record call waiting for its record's commit.
type waiter struct {
	rec  steward.AuditRecord
	done chan error
}

// Group commit limits.
const (
	maxBatch     = 256              // records in one append
	flushTimeout = 30 * time.Second // for the append of a batch, which serves many callers
)

var _ steward.Auditor = (*Log)(nil)

// New returns the Log. Clock and Logger default to the system clock and a
// discarding logger.
func New(cfg Config) (*Log, error) {
	if cfg.Store == nil || cfg.Keys.Signer == nil || cfg.Keys.Verifier == nil {
		return nil, steward.Errorf(steward.CodeInvalid, "the audit log needs a store and its keys")
	}
	l := &Log{store: cfg.Store, keys: cfg.Keys, clock: cfg.Clock, log: cfg.Logger, archiveDir: cfg.ArchiveDir,
		pending: map[string][]*waiter{}, flushing: map[string]bool{}}
	if l.clock == nil {
		l.clock = steward.SystemClock{}
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

// VerifierKey returns the public key that checks the log's checkpoints.
func (l *Log) VerifierKey() string { return l.keys.VerifierKey }

// Record appends r to its tenant's log (the system log when r.TenantID is
// empty) and returns once it is committed. Records of calls made at the
// same time are committed together. It must not be called inside a store
// transaction (use RecordIn there).
func (l *Log) Record(ctx context.Context, r steward.AuditRecord) error {
	// Checked here, so that a bad record fails alone, not its batch.
	if r.At.IsZero() {
		r.At = l.clock.Now()
	}
	r.At = r.At.UTC().Truncate(time.Microsecond)
	if err := validate(r); err != nil {
		return err
	}
	w := &waiter{rec: r, done: make(chan error, 1)}
	l.mu.Lock()
	l.pending[r.TenantID] = append(l.pending[r.TenantID], w)
	lead := !l.flushing[r.TenantID]
	l.flushing[r.TenantID] = true
	l.mu.Unlock()
	if lead {
		l.flush(r.TenantID)
	}
	// The record is written even when ctx ends first: it cannot be taken
	// back from a batch, and the caller's action happened.
	return <-w.done
}

// flush appends one batch of tenant's waiting records and, when more are
// waiting, hands the next batch to another goroutine, so that the caller
// who led returns as soon as its own record is committed.
func (l *Log) flush(tenant string) {
	l.mu.Lock()
	batch := l.pending[tenant]
	if len(batch) > maxBatch {
		batch, l.pending[tenant] = batch[:maxBatch], batch[maxBatch:]
	} else {
		delete(l.pending, tenant)
	}
	l.mu.Unlock()
	recs := make([]steward.AuditRecord, len(batch))
	for i, w := range batch {
		recs[i] = w.rec
	}
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	_, err := l.Append(ctx, l.store, recs...)
	cancel()
	for _, w := range batch {
		w.done <- err
	}
	l.mu.Lock()
	more := len(l.pending[tenant]) > 0
	if !more {
		l.flushing[tenant] = false
	}
	l.mu.Unlock()
	if more {
		go l.flush(tenant)
	}
}

// RecordIn appends r in the caller's transaction tx, so that the record
// lands if and only if the action's own writes do.
func (l *Log) RecordIn(ctx context.Context, tx steward.Store, r steward.AuditRecord) error {
	_, err := l.Append(ctx, tx, r)
	return err
}

// Append appends records, all of one tenant, through store (the Log's own
// store, or a transaction) in one transaction with the checkpoint of the
// new size, and returns them as logged, with their indexes. An invalid
// record is CodeInvalid and nothing is written.
func (l *Log) Append(ctx context.Context, store steward.Store, recs ...steward.AuditRecord) ([]steward.AuditRecord, error) {
	if len(recs) == 0 {
		return nil, steward.Errorf(steward.CodeInvalid, "nothing to append to the audit log")
	}
	tenant := recs[0].TenantID
	now := l.clock.Now().UTC().Truncate(time.Microsecond)
	out := make([]steward.AuditRecord, len(recs))
	for i, r := range recs {
		if r.TenantID != tenant {
			return nil, steward.Errorf(steward.CodeInvalid, "one append takes the records of one tenant's log, not of %q and %q", tenant, r.TenantID)
		}
		if r.At.IsZero() {
			r.At = now
		}
		r.At = r.At.UTC().Truncate(time.Microsecond)
		if err := validate(r); err != nil {
			return nil, err
		}
		out[i] = r
	}
	var err error
	for range appendRetries {
		err = store.InTx(ctx, func(tx steward.Store) error { return l.appendTx(ctx, tx, tenant, out) })
		if !steward.IsConflict(err) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("append to the audit log: %w", err)
	}
	return out, nil
}

// appendTx appends recs under the log's lock in tx, setting their indexes.
func (l *Log) appendTx(ctx context.Context, tx steward.Store, tenant string, recs []steward.AuditRecord) error {
	size, err := tx.LockAuditLog(ctx, tenant)
	if err != nil {
		return err
	}
	reader := &storeHashReader{ctx: ctx, store: tx, tenant: tenant, pending: map[int64][]byte{}}
	entries := make([]steward.AuditEntry, len(recs))
	for i := range recs {
		recs[i].Index = size + int64(i)
		data, err := Canonical(recs[i])
		if err != nil {
			return err
		}
		hashes, err := tlog.StoredHashes(recs[i].Index, data, reader)
		if err != nil {
			return fmt.Errorf("tree hashes of record %d: %w", recs[i].Index, err)
		}
		blob := joinHashes(hashes)
		reader.pending[recs[i].Index] = blob
		entries[i] = steward.AuditEntry{Record: recs[i], Data: data, Hashes: blob}
	}
	newSize := size + int64(len(recs))
	root, err := tlog.TreeHash(newSize, reader)
	if err != nil {
		return fmt.Errorf("tree hash at size %d: %w", newSize, err)
	}
	now := l.clock.Now().UTC()
	signed, err := note.Sign(&note.Note{Text: formatCheckpoint(tenant, newSize, root, now)}, l.keys.Signer)
	if err != nil {
		return fmt.Errorf("sign audit checkpoint: %w", err)
	}
	return tx.AppendAudit(ctx, tenant, entries, steward.AuditCheckpoint{TenantID: tenant, Size: newSize, Note: string(signed), CreatedAt: now})
}

// Canonical returns the bytes of r that the tree hashes: its JSON as
// encoding/json writes it (fields in declaration order, compact, no
// newline), with the time in UTC to the microsecond.
func Canonical(r steward.AuditRecord) ([]byte, error) {
	r.At = r.At.UTC().Truncate(time.Microsecond)
	b, err := json.Marshal(r)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "audit record does not encode")
	}
	return b, nil
}

// validate checks what every record must have.
func validate(r steward.AuditRecord) error {
	switch {
	case r.Actor == "" || r.Action == "":
		return steward.Errorf(steward.CodeInvalid, "an audit record needs an actor and an action")
	case r.Outcome != steward.AuditSuccess && r.Outcome != steward.AuditFailure && r.Outcome != steward.AuditDenied:
		return steward.Errorf(steward.CodeInvalid, "audit outcome %q: want %s, %s or %s", r.Outcome, steward.AuditSuccess, steward.AuditFailure, steward.AuditDenied)
	case len(r.Detail) > maxDetailLen:
		return steward.Errorf(steward.CodeInvalid, "audit detail is %d bytes, more than %d", len(r.Detail), maxDetailLen)
	case len(r.Before) > maxStateLen || len(r.After) > maxStateLen:
		return steward.Errorf(steward.CodeInvalid, "audit before and after states are limited to %d bytes each", maxStateLen)
	case len(r.Before) > 0 && !json.Valid(r.Before), len(r.After) > 0 && !json.Valid(r.After):
		return steward.Errorf(steward.CodeInvalid, "audit before and after states must be JSON")
	}
	for name, v := range map[string]string{"actor": r.Actor, "action": r.Action, "target": r.Target, "remote": r.Remote, "request ID": r.RequestID, "tenant": r.TenantID} {
		if len(v) > maxFieldLen || !utf8.ValidString(v) {
			return steward.Errorf(steward.CodeInvalid, "audit %s must be UTF-8 of at most %d bytes", name, maxFieldLen)
		}
	}
	if !utf8.ValidString(r.Detail) {
		return steward.Errorf(steward.CodeInvalid, "audit detail must be UTF-8")
	}
	return nil
}

// Checkpoint returns the latest signed checkpoint of tenant's log;
// CodeNotFound while the log is empty.
func (l *Log) Checkpoint(ctx context.Context, tenant string) (steward.AuditCheckpoint, error) {
	return l.store.AuditCheckpoint(ctx, tenant, -1)
}

// Search returns the records of tenant's log matching f.
func (l *Log) Search(ctx context.Context, tenant string, f steward.AuditFilter) ([]steward.AuditRecord, error) {
	return l.store.SearchAudit(ctx, tenant, f)
}
