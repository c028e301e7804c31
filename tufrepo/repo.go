// Package tufrepo is the server side of The Update Framework: one TUF
// repository per tenant, with the four top-level roles (root, targets,
// snapshot, timestamp), built with go-tuf v2's metadata package.
//
// Every signed version of every role is kept in the store (steward.
// ArtifactStore's TUF metadata), and the keys the server holds are store
// secrets sealed under the master key like the PKI's, so that the nodes of a
// cluster serve and sign the same repository. Consistent snapshots are on:
// clients fetch N.root.json, timestamp.json, V.snapshot.json and
// V.targets.json, and targets under their hash-prefixed names, so a
// publication is atomic for a client however the writes interleave.
//
// Online mode (the default): the server holds the targets key and publishes
// a target when an artifact is uploaded. Offline targets mode: the targets
// role's key is a release key that lives with the release engineer; the
// server holds no targets key, refuses to publish on its own
// (CodeFailedPrecondition), and accepts only targets metadata that the
// release key signed (PublishTargets), then signs snapshot and timestamp
// around it. A compromised server can then withhold updates, but not push
// an artifact a device will install.
package tufrepo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/pki"
)

// Config is what a Repo works from. Zero durations take the defaults.
type Config struct {
	// Store keeps the metadata, the sealed keys (secrets) and the artifacts.
	Store steward.Store
	// MasterKey seals the keys the server holds (pki.MasterKeySize bytes).
	MasterKey []byte
	Clock     steward.Clock
	Logger    *slog.Logger
	// How long each role's metadata is valid when signed: root 1 year,
	// targets 90 days (online mode), snapshot 7 days, timestamp 1 day.
	RootExpiry, TargetsExpiry, SnapshotExpiry, TimestampExpiry time.Duration
	// Interval is how often Run re-signs what is near its expiry (default
	// 1 hour): metadata is re-signed when less than half of its validity is
	// left (root: less than 30 days).
	Interval time.Duration
}

func (c *Config) defaults() {
	if c.Clock == nil {
		c.Clock = steward.SystemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.RootExpiry == 0 {
		c.RootExpiry = 365 * 24 * time.Hour
	}
	if c.TargetsExpiry == 0 {
		c.TargetsExpiry = 90 * 24 * time.Hour
	}
	if c.SnapshotExpiry == 0 {
		c.SnapshotExpiry = 7 * 24 * time.Hour
	}
	if c.TimestampExpiry == 0 {
		c.TimestampExpiry = 24 * time.Hour
	}
	if c.Interval == 0 {
		c.Interval = time.Hour
	}
}

// Repo is the TUF repositories of every tenant. It is safe for concurrent
// use; writes of one node are serialised by a mutex, and two nodes writing
// the same version at once are told apart by the store (one gets
// CodeConflict and tries again on the new state).
type Repo struct {
	cfg  Config
	keys *pki.Keyring
	mu   sync.Mutex
}

// New returns a Repo.
func New(cfg Config) (*Repo, error) {
	cfg.defaults()
	if cfg.Store == nil {
		return nil, fmt.Errorf("tufrepo: a store is required")
	}
	kr, err := pki.NewKeyring(cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("tufrepo: %w", err)
	}
	return &Repo{cfg: cfg, keys: kr}, nil
}

// Target file custom metadata: what the agent needs besides hashes and
// length to decide whether a target fits it.
type targetCustom struct {
	ArtifactID          string               `json:"artifact_id"`
	Type                steward.ArtifactType `json:"type"`
	CompatibleModels    []string             `json:"compatible_models,omitempty"`
	MinInstalledVersion string               `json:"min_installed_version,omitempty"`
}

// TargetFile returns the TUF target entry of an artifact: its length, its
// SHA-256 and custom fields (artifact ID, type, compatible models, minimum
// installed version).
func TargetFile(a steward.Artifact) (*metadata.TargetFiles, error) {
	sum, err := hex.DecodeString(a.SHA256)
	if err != nil || len(sum) != 32 {
		return nil, steward.Errorf(steward.CodeInvalid, "artifact %s has no valid SHA-256", a.ID)
	}
	custom, err := json.Marshal(targetCustom{ArtifactID: a.ID, Type: a.Type, CompatibleModels: a.CompatibleModels, MinInstalledVersion: a.MinInstalledVersion})
	if err != nil {
		return nil, fmt.Errorf("target custom fields: %w", err)
	}
	raw := json.RawMessage(custom)
	return &metadata.TargetFiles{Length: a.Size, Hashes: metadata.Hashes{"sha256": sum}, Custom: &raw, Path: a.TargetPath()}, nil
}

// expiry returns now+d in the form TUF wants: UTC, whole seconds.
func expiry(now time.Time, d time.Duration) time.Time {
	return now.Add(d).UTC().Truncate(time.Second)
}

// KeySecretName is the name of the store secret that holds, sealed under
// the master key, the private key with a TUF key ID in a tenant.
func KeySecretName(tenantID, keyID string) string { return "tuf-key/" + tenantID + "/" + keyID }

// newServerKey generates a key, stores it sealed, and returns its TUF key.
func (r *Repo) newServerKey(ctx context.Context, tenantID string) (*metadata.Key, error) {
	priv, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	k, id, err := tufKey(priv.Public())
	if err != nil {
		return nil, err
	}
	name := KeySecretName(tenantID, id)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode tuf key: %w", err)
	}
	plain, err := json.Marshal(keyRecord{Key: der})
	if err != nil {
		return nil, err
	}
	sealed, err := r.keys.Seal(name, plain)
	if err != nil {
		return nil, err
	}
	if err := r.cfg.Store.CreateSecret(ctx, name, sealed); err != nil {
		return nil, fmt.Errorf("store tuf key: %w", err)
	}
	return k, nil
}

// keyRecord is a server-held key as sealed in the store: the same form
// as the PKI's keys (a JSON object whose "key" is PKCS #8 DER).
type keyRecord struct {
	Key []byte `json:"key"`
}

// openKey unseals a server-held key.
func (r *Repo) openKey(name string, sealed []byte) (ed25519.PrivateKey, error) {
	plain, err := r.keys.Open(name, sealed)
	if err != nil {
		return nil, err
	}
	var rec keyRecord
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "tuf key %s does not decode", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Key)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "tuf key %s does not parse", name)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, steward.Errorf(steward.CodeInternal, "tuf key %s is a %T, not Ed25519", name, k)
	}
	return priv, nil
}

// OpenKey unseals the server-held key stored under a secret name with the
// master key: what an operator recovering a repository (or a test playing
// a compromised server) does.
func OpenKey(masterKey []byte, name string, sealed []byte) (ed25519.PrivateKey, error) {
	kr, err := pki.NewKeyring(masterKey)
	if err != nil {
		return nil, err
	}
	return (&Repo{keys: kr}).openKey(name, sealed)
}

// signers returns signers for the keys of a role that the server holds.
func (r *Repo) signers(ctx context.Context, root *metadata.Metadata[metadata.RootType], tenantID, role string) ([]signature.Signer, error) {
	var out []signature.Signer
	for _, id := range root.Signed.Roles[role].KeyIDs {
		name := KeySecretName(tenantID, id)
		sealed, err := r.cfg.Store.GetSecret(ctx, name)
		if steward.IsNotFound(err) {
			continue // a key the server does not hold (the release key)
		}
		if err != nil {
			return nil, err
		}
		priv, err := r.openKey(name, sealed)
		if err != nil {
			return nil, err
		}
		s, err := signer(priv)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// signWith signs meta with every signer after dropping old signatures.
func signWith[T metadata.Roles](meta *metadata.Metadata[T], signers []signature.Signer) error {
	meta.ClearSignatures()
	for _, s := range signers {
		if _, err := meta.Sign(s); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
	}
	return nil
}

// state is the newest metadata of each role of a tenant.
type state struct {
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
}

func (r *Repo) latest(ctx context.Context, tenantID, role string) ([]byte, error) {
	m, err := r.cfg.Store.GetTUFMetadata(ctx, tenantID, role, 0)
	if err != nil {
		return nil, err
	}
	return m.Body, nil
}

// load reads a tenant's newest metadata; CodeNotFound when the repository
// was never set up.
func (r *Repo) load(ctx context.Context, tenantID string) (*state, error) {
	var st state
	var err error
	b, err := r.latest(ctx, tenantID, steward.TUFRoot)
	if err != nil {
		return nil, err
	}
	if st.root, err = metadata.Root().FromBytes(b); err != nil {
		return nil, fmt.Errorf("stored root metadata: %w", err)
	}
	if b, err = r.latest(ctx, tenantID, steward.TUFTargets); err != nil {
		return nil, err
	}
	if st.targets, err = metadata.Targets().FromBytes(b); err != nil {
		return nil, fmt.Errorf("stored targets metadata: %w", err)
	}
	if b, err = r.latest(ctx, tenantID, steward.TUFSnapshot); err != nil {
		return nil, err
	}
	if st.snapshot, err = metadata.Snapshot().FromBytes(b); err != nil {
		return nil, fmt.Errorf("stored snapshot metadata: %w", err)
	}
	if b, err = r.latest(ctx, tenantID, steward.TUFTimestamp); err != nil {
		return nil, err
	}
	if st.timestamp, err = metadata.Timestamp().FromBytes(b); err != nil {
		return nil, fmt.Errorf("stored timestamp metadata: %w", err)
	}
	return &st, nil
}

// put stores one signed version of a role.
func put[T metadata.Roles](ctx context.Context, r *Repo, tenantID, role string, version int64, expires time.Time, meta *metadata.Metadata[T]) error {
	b, err := meta.ToBytes(false)
	if err != nil {
		return fmt.Errorf("encode %s metadata: %w", role, err)
	}
	return r.cfg.Store.PutTUFMetadata(ctx, steward.TUFMetadata{TenantID: tenantID, Role: role, Version: version, Body: b,
		Expires: expires, CreatedAt: r.cfg.Clock.Now()})
}

// Init sets up a tenant's repository when it has none: a key per role,
// held by the server (online mode), and version 1 of each role. It does
// nothing for a repository that exists.
func (r *Repo) Init(ctx context.Context, tenantID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.init(ctx, tenantID)
}

func (r *Repo) init(ctx context.Context, tenantID string) error {
	if _, err := r.cfg.Store.GetTUFMetadata(ctx, tenantID, steward.TUFRoot, 0); err == nil {
		return nil
	} else if !steward.IsNotFound(err) {
		return err
	}
	if _, err := r.cfg.Store.GetTenant(ctx, tenantID); err != nil {
		return err
	}
	now := r.cfg.Clock.Now()
	root := metadata.Root(expiry(now, r.cfg.RootExpiry))
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		k, err := r.newServerKey(ctx, tenantID)
		if err != nil {
			return err
		}
		if err := root.Signed.AddKey(k, role); err != nil {
			return fmt.Errorf("root: %w", err)
		}
	}
	st := &state{root: root, targets: metadata.Targets(expiry(now, r.cfg.TargetsExpiry))}
	st.targets.Signed.Version = 0 // writeTargets counts it up to 1
	rs, err := r.signers(ctx, root, tenantID, metadata.ROOT)
	if err != nil {
		return err
	}
	if err := signWith(root, rs); err != nil {
		return err
	}
	if err := put(ctx, r, tenantID, steward.TUFRoot, 1, root.Signed.Expires, root); err != nil {
		if steward.IsConflict(err) {
			return nil // another node set it up first
		}
		return err
	}
	st.snapshot = metadata.Snapshot()
	st.snapshot.Signed.Version = 0
	st.timestamp = metadata.Timestamp()
	st.timestamp.Signed.Version = 0
	if err := r.resignTargets(ctx, tenantID, st, st.targets); err != nil {
		return err
	}
	r.cfg.Logger.Info("tuf repository created", "tenant", tenantID)
	return nil
}

// ensure loads a tenant's repository, setting it up first when needed.
func (r *Repo) ensure(ctx context.Context, tenantID string) (*state, error) {
	st, err := r.load(ctx, tenantID)
	if steward.IsNotFound(err) {
		if err := r.init(ctx, tenantID); err != nil {
			return nil, err
		}
		return r.load(ctx, tenantID)
	}
	return st, err
}

// resignTargets signs targets as the next version with the server's
// targets keys, then publishes it with a new snapshot and timestamp.
func (r *Repo) resignTargets(ctx context.Context, tenantID string, st *state, targets *metadata.Metadata[metadata.TargetsType]) error {
	ts, err := r.signers(ctx, st.root, tenantID, metadata.TARGETS)
	if err != nil {
		return err
	}
	if len(ts) < st.root.Signed.Roles[metadata.TARGETS].Threshold {
		return steward.Errorf(steward.CodeFailedPrecondition,
			"the repository is in offline targets mode: the server does not hold the targets key, so targets must be signed with the release key (steward artifacts sign) and uploaded")
	}
	targets.Signed.Version = st.targets.Signed.Version + 1
	targets.Signed.Expires = expiry(r.cfg.Clock.Now(), r.cfg.TargetsExpiry)
	if err := signWith(targets, ts); err != nil {
		return err
	}
	return r.publish(ctx, tenantID, st, targets)
}

// publish stores a signed targets version, then a snapshot naming it and a
// timestamp naming that. Until the timestamp is stored, clients keep
// seeing the previous consistent snapshot.
func (r *Repo) publish(ctx context.Context, tenantID string, st *state, targets *metadata.Metadata[metadata.TargetsType]) error {
	if err := put(ctx, r, tenantID, steward.TUFTargets, targets.Signed.Version, targets.Signed.Expires, targets); err != nil {
		return err
	}
	snap := metadata.Snapshot(expiry(r.cfg.Clock.Now(), r.cfg.SnapshotExpiry))
	snap.Signed.Version = st.snapshot.Signed.Version + 1
	snap.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(targets.Signed.Version)}
	ss, err := r.signers(ctx, st.root, tenantID, metadata.SNAPSHOT)
	if err != nil {
		return err
	}
	if err := signWith(snap, ss); err != nil {
		return err
	}
	if err := put(ctx, r, tenantID, steward.TUFSnapshot, snap.Signed.Version, snap.Signed.Expires, snap); err != nil {
		return err
	}
	st.targets, st.snapshot = targets, snap
	return r.resignTimestamp(ctx, tenantID, st)
}

// resignTimestamp signs the next timestamp version over the newest snapshot.
func (r *Repo) resignTimestamp(ctx context.Context, tenantID string, st *state) error {
	ts := metadata.Timestamp(expiry(r.cfg.Clock.Now(), r.cfg.TimestampExpiry))
	ts.Signed.Version = st.timestamp.Signed.Version + 1
	ts.Signed.Meta = map[string]*metadata.MetaFiles{"snapshot.json": metadata.MetaFile(st.snapshot.Signed.Version)}
	signers, err := r.signers(ctx, st.root, tenantID, metadata.TIMESTAMP)
	if err != nil {
		return err
	}
	if err := signWith(ts, signers); err != nil {
		return err
	}
	if err := put(ctx, r, tenantID, steward.TUFTimestamp, ts.Signed.Version, ts.Signed.Expires, ts); err != nil {
		return err
	}
	st.timestamp = ts
	return nil
}

// resignSnapshot signs the next snapshot version (same targets) and a
// timestamp over it.
func (r *Repo) resignSnapshot(ctx context.Context, tenantID string, st *state) error {
	snap := metadata.Snapshot(expiry(r.cfg.Clock.Now(), r.cfg.SnapshotExpiry))
	snap.Signed.Version = st.snapshot.Signed.Version + 1
	snap.Signed.Meta = map[string]*metadata.MetaFiles{"targets.json": metadata.MetaFile(st.targets.Signed.Version)}
	ss, err := r.signers(ctx, st.root, tenantID, metadata.SNAPSHOT)
	if err != nil {
		return err
	}
	if err := signWith(snap, ss); err != nil {
		return err
	}
	if err := put(ctx, r, tenantID, steward.TUFSnapshot, snap.Signed.Version, snap.Signed.Expires, snap); err != nil {
		return err
	}
	st.snapshot = snap
	return r.resignTimestamp(ctx, tenantID, st)
}

// retry runs fn again when another node changed the repository first:
// each attempt starts from the newest state, after a random pause that
// grows with the attempts, so that two busy nodes stop colliding. It
// gives up after 20 attempts or when ctx ends.
func (r *Repo) retry(ctx context.Context, tenantID string, fn func(st *state) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		st, err := r.ensure(ctx, tenantID)
		if err != nil {
			return err
		}
		err = fn(st)
		if !steward.IsConflict(err) || attempt == 19 {
			return err
		}
		pause := time.Duration(rand.Int64N(int64(min(time.Millisecond<<attempt, 200*time.Millisecond)))) + time.Millisecond
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
}

// AddTarget publishes an artifact as a target (online mode). In offline
// targets mode it fails with CodeFailedPrecondition and changes nothing.
func (r *Repo) AddTarget(ctx context.Context, a steward.Artifact) error {
	tf, err := TargetFile(a)
	if err != nil {
		return err
	}
	return r.retry(ctx, a.TenantID, func(st *state) error {
		targets, err := cloneTargets(st.targets)
		if err != nil {
			return err
		}
		targets.Signed.Targets[tf.Path] = tf
		return r.resignTargets(ctx, a.TenantID, st, targets)
	})
}

// RemoveTarget withdraws a target (online mode); removing a target that is
// not there does nothing.
func (r *Repo) RemoveTarget(ctx context.Context, tenantID, path string) error {
	return r.retry(ctx, tenantID, func(st *state) error {
		if _, ok := st.targets.Signed.Targets[path]; !ok {
			return nil
		}
		targets, err := cloneTargets(st.targets)
		if err != nil {
			return err
		}
		delete(targets.Signed.Targets, path)
		return r.resignTargets(ctx, tenantID, st, targets)
	})
}

func cloneTargets(t *metadata.Metadata[metadata.TargetsType]) (*metadata.Metadata[metadata.TargetsType], error) {
	b, err := t.ToBytes(false)
	if err != nil {
		return nil, err
	}
	c, err := metadata.Targets().FromBytes(b)
	if err != nil {
		return nil, err
	}
	if c.Signed.Targets == nil {
		c.Signed.Targets = map[string]*metadata.TargetFiles{}
	}
	return c, nil
}

// PublishTargets takes targets metadata signed outside the server (offline
// targets mode, or a release engineer signing in online mode too) and
// publishes it. It is refused, changing nothing, unless: it is signed by
// the threshold of the targets keys of the current root, its version is
// the next one, it has not expired, and every target it lists is an
// artifact of the tenant with that exact length and SHA-256.
func (r *Repo) PublishTargets(ctx context.Context, tenantID string, signed []byte) error {
	targets, err := metadata.Targets().FromBytes(signed)
	if err != nil {
		return steward.WrapError(steward.CodeInvalid, err, "the targets metadata does not parse")
	}
	return r.retry(ctx, tenantID, func(st *state) error {
		if err := st.root.VerifyDelegate(metadata.TARGETS, targets); err != nil {
			return steward.WrapError(steward.CodeInvalid, err, "the targets metadata is not signed by the targets key of the current root")
		}
		if want := st.targets.Signed.Version + 1; targets.Signed.Version != want {
			return steward.Errorf(steward.CodeFailedPrecondition, "targets version %d: the next version is %d (sign again on the current targets)", targets.Signed.Version, want)
		}
		if !targets.Signed.Expires.After(r.cfg.Clock.Now()) {
			return steward.Errorf(steward.CodeInvalid, "the targets metadata expired at %s", targets.Signed.Expires.Format(time.RFC3339))
		}
		if targets.Signed.Delegations != nil {
			return steward.Errorf(steward.CodeInvalid, "delegations are not supported")
		}
		for path, tf := range targets.Signed.Targets {
			if err := r.checkTarget(ctx, tenantID, path, tf); err != nil {
				return err
			}
		}
		return r.publish(ctx, tenantID, st, targets)
	})
}

// checkTarget checks that a signed target names an uploaded artifact.
func (r *Repo) checkTarget(ctx context.Context, tenantID, path string, tf *metadata.TargetFiles) error {
	var name, version string
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			name, version = path[:i], path[i+1:]
			break
		}
	}
	a, err := r.cfg.Store.ArtifactByTarget(ctx, tenantID, name, version)
	if steward.IsNotFound(err) {
		return steward.Errorf(steward.CodeInvalid, "target %s is not an uploaded artifact (upload it first)", path)
	}
	if err != nil {
		return err
	}
	want, err := TargetFile(a)
	if err != nil {
		return err
	}
	if tf.Length != want.Length || !bytes.Equal(tf.Hashes["sha256"], want.Hashes["sha256"]) {
		return steward.Errorf(steward.CodeInvalid, "target %s: length or SHA-256 differs from the uploaded artifact %s", path, a.ID)
	}
	return nil
}

// Offline reports whether the server lacks the targets key, that is,
// whether the repository is in offline targets mode.
func (r *Repo) Offline(ctx context.Context, tenantID string) (bool, error) {
	st, err := r.load(ctx, tenantID)
	if steward.IsNotFound(err) {
		return false, nil // a new repository starts online
	}
	if err != nil {
		return false, err
	}
	ts, err := r.signers(ctx, st.root, tenantID, metadata.TARGETS)
	if err != nil {
		return false, err
	}
	return len(ts) < st.root.Signed.Roles[metadata.TARGETS].Threshold, nil
}

// Metadata returns a role's signed metadata: a given version (root,
// targets and snapshot, as consistent snapshots name them) or the newest
// with version 0 (timestamp.json). The repository is set up on first use.
func (r *Repo) Metadata(ctx context.Context, tenantID, role string, version int64) ([]byte, error) {
	if version == 0 && role == steward.TUFRoot {
		if _, err := r.cfg.Store.GetTUFMetadata(ctx, tenantID, role, 0); steward.IsNotFound(err) {
			if err := r.Init(ctx, tenantID); err != nil {
				return nil, err
			}
		}
	}
	m, err := r.cfg.Store.GetTUFMetadata(ctx, tenantID, role, version)
	if err != nil {
		return nil, err
	}
	return m.Body, nil
}

// Root returns the tenant's newest root metadata, the trust anchor a
// device receives at enrollment; the repository is set up on first use.
func (r *Repo) Root(ctx context.Context, tenantID string) ([]byte, error) {
	return r.Metadata(ctx, tenantID, steward.TUFRoot, 0)
}

// Targets returns the tenant's newest targets metadata: what `steward
// artifacts sign` starts from.
func (r *Repo) Targets(ctx context.Context, tenantID string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.ensure(ctx, tenantID); err != nil {
		return nil, err
	}
	return r.latest(ctx, tenantID, steward.TUFTargets)
}

// RotateRoot replaces the root key: the next root version lists a new key
// the server generates for the root role, and is signed by the old root
// keys (so clients trusting the old root accept it) and the new one. With
// targetsKey set, the targets role's keys are replaced by it in the same
// version: the release key of offline targets mode, or a new server-held
// key with ServerTargetsKey to go back online. Clients then refuse targets
// signed by the revoked key.
func (r *Repo) RotateRoot(ctx context.Context, tenantID string, targetsKey TargetsKey) error {
	return r.retry(ctx, tenantID, func(st *state) error {
		old, err := r.signers(ctx, st.root, tenantID, metadata.ROOT)
		if err != nil {
			return err
		}
		if len(old) < st.root.Signed.Roles[metadata.ROOT].Threshold {
			return steward.Errorf(steward.CodeFailedPrecondition, "the server does not hold the root key")
		}
		b, err := st.root.ToBytes(false)
		if err != nil {
			return err
		}
		next, err := metadata.Root().FromBytes(b)
		if err != nil {
			return err
		}
		next.Signed.Version = st.root.Signed.Version + 1
		next.Signed.Expires = expiry(r.cfg.Clock.Now(), r.cfg.RootExpiry)
		for _, id := range append([]string(nil), next.Signed.Roles[metadata.ROOT].KeyIDs...) {
			if err := next.Signed.RevokeKey(id, metadata.ROOT); err != nil {
				return err
			}
		}
		k, err := r.newServerKey(ctx, tenantID)
		if err != nil {
			return err
		}
		if err := next.Signed.AddKey(k, metadata.ROOT); err != nil {
			return err
		}
		if targetsKey.set() {
			for _, id := range append([]string(nil), next.Signed.Roles[metadata.TARGETS].KeyIDs...) {
				if err := next.Signed.RevokeKey(id, metadata.TARGETS); err != nil {
					return err
				}
			}
			tk := targetsKey.Release
			var key *metadata.Key
			if tk != nil {
				if key, _, err = tufKey(tk); err != nil {
					return err
				}
			} else if key, err = r.newServerKey(ctx, tenantID); err != nil {
				return err
			}
			if err := next.Signed.AddKey(key, metadata.TARGETS); err != nil {
				return err
			}
		}
		newSigners, err := r.signers(ctx, next, tenantID, metadata.ROOT)
		if err != nil {
			return err
		}
		if err := signWith(next, append(old, newSigners...)); err != nil {
			return err
		}
		if err := put(ctx, r, tenantID, steward.TUFRoot, next.Signed.Version, next.Signed.Expires, next); err != nil {
			return err
		}
		st.root = next
		if targetsKey.set() && targetsKey.Release == nil {
			// Back online: re-sign the targets with the new server key so
			// clients have valid targets at once.
			targets, err := cloneTargets(st.targets)
			if err != nil {
				return err
			}
			return r.resignTargets(ctx, tenantID, st, targets)
		}
		return nil
	})
}

// TargetsKey says what RotateRoot does with the targets role: nothing (the
// zero value), the release key Release (offline targets mode), or a new
// server-held key (Server: online mode).
type TargetsKey struct {
	Release ed25519.PublicKey
	Server  bool
}

func (k TargetsKey) set() bool { return k.Release != nil || k.Server }

// RunOnce re-signs, for every tenant with a repository, what is near its
// expiry: the timestamp and snapshot when less than half their validity is
// left, the targets (online mode only) likewise, and the root when less
// than 30 days are left. It returns the first error after trying every
// tenant.
func (r *Repo) RunOnce(ctx context.Context) error {
	tenants, err := r.cfg.Store.ListTenants(ctx)
	if err != nil {
		return err
	}
	var first error
	for _, t := range tenants {
		if err := r.Refresh(ctx, t.ID); err != nil && !steward.IsNotFound(err) {
			r.cfg.Logger.Error("tuf refresh", "tenant", t.ID, "err", err)
			if first == nil {
				first = err
			}
		}
	}
	return first
}

// Refresh re-signs one tenant's metadata that is near its expiry (see
// RunOnce); a tenant without a repository is CodeNotFound.
func (r *Repo) Refresh(ctx context.Context, tenantID string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	st, err := r.load(ctx, tenantID)
	if err != nil {
		return err
	}
	now := r.cfg.Clock.Now()
	due := func(expires time.Time, validity time.Duration) bool { return expires.Sub(now) < validity/2 }
	if st.root.Signed.Expires.Sub(now) < 30*24*time.Hour {
		if err := r.resignRoot(ctx, tenantID, st); err != nil {
			return err
		}
	}
	if due(st.targets.Signed.Expires, r.cfg.TargetsExpiry) {
		targets, err := cloneTargets(st.targets)
		if err != nil {
			return err
		}
		err = r.resignTargets(ctx, tenantID, st, targets)
		if err == nil {
			return nil // a new snapshot and timestamp came with it
		}
		if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			return err
		}
		// Offline: the release engineer re-signs targets; keep the rest fresh.
	}
	if due(st.snapshot.Signed.Expires, r.cfg.SnapshotExpiry) {
		return r.resignSnapshot(ctx, tenantID, st)
	}
	if due(st.timestamp.Signed.Expires, r.cfg.TimestampExpiry) {
		return r.resignTimestamp(ctx, tenantID, st)
	}
	return nil
}

// resignRoot signs the next root version with the same keys and a new expiry.
func (r *Repo) resignRoot(ctx context.Context, tenantID string, st *state) error {
	b, err := st.root.ToBytes(false)
	if err != nil {
		return err
	}
	next, err := metadata.Root().FromBytes(b)
	if err != nil {
		return err
	}
	next.Signed.Version++
	next.Signed.Expires = expiry(r.cfg.Clock.Now(), r.cfg.RootExpiry)
	rs, err := r.signers(ctx, next, tenantID, metadata.ROOT)
	if err != nil {
		return err
	}
	if len(rs) < next.Signed.Roles[metadata.ROOT].Threshold {
		return steward.Errorf(steward.CodeFailedPrecondition, "the server does not hold the root key")
	}
	if err := signWith(next, rs); err != nil {
		return err
	}
	if err := put(ctx, r, tenantID, steward.TUFRoot, next.Signed.Version, next.Signed.Expires, next); err != nil {
		return err
	}
	st.root = next
	return nil
}

// Run calls RunOnce every Interval until ctx ends.
func (r *Repo) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		if err := r.RunOnce(ctx); err != nil && ctx.Err() == nil {
			r.cfg.Logger.Error("tuf refresh", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
