// Package artifacts is the artifact service: uploads (in one request, or
// resumable in chunks), the catalogue, publication as TUF targets, and the
// device plane's downloads (HTTP Range, only to a device the artifact was
// granted to) and TUF metadata.
package artifacts

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Publisher is the tenant's TUF repository as the service uses it
// (*tufrepo.Repo).
type Publisher interface {
	// AddTarget publishes an artifact as a target; CodeFailedPrecondition
	// in offline targets mode, where the release engineer signs targets.
	AddTarget(ctx context.Context, a steward.Artifact) error
	// RemoveTarget withdraws a target (online mode).
	RemoveTarget(ctx context.Context, tenantID, path string) error
	// Metadata returns a role's signed metadata (version 0: the newest).
	Metadata(ctx context.Context, tenantID, role string, version int64) ([]byte, error)
}

// Config is what the service works from.
type Config struct {
	Store steward.Store
	Blobs steward.BlobStore
	TUF   Publisher
	// Auditor records uploads and deletions; nil records nothing.
	Auditor steward.Auditor
	Clock   steward.Clock
	Logger  *slog.Logger
	// MaxSize is the largest artifact accepted (default 4 GiB).
	MaxSize int64
	// UploadTTL is how long an unfinished resumable upload is kept after
	// it starts (default 24 hours).
	UploadTTL time.Duration
}

// Service is the artifact service.
type Service struct {
	cfg Config
	// blobLocks serialise, per digest, recording an artifact against
	// dropping its content: content another upload is about to reference
	// is never deleted under it. Striped by the digest's first byte; this
	// covers one node (see docs/updates.md for clusters).
	blobLocks [256]sync.Mutex
}

func (s *Service) lockBlob(sum string) func() {
	m := &s.blobLocks[int(sum[0])]
	m.Lock()
	return m.Unlock
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxSize == 0 {
		cfg.MaxSize = 4 << 30
	}
	if cfg.UploadTTL == 0 {
		cfg.UploadTTL = 24 * time.Hour
	}
	return &Service{cfg: cfg}
}

// MaxSize is the largest artifact the service accepts.
func (s *Service) MaxSize() int64 { return s.cfg.MaxSize }

var lowerBase32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID makes a random identifier: prefix + 20 lower-case base32 characters.
func newID(prefix string) string {
	b := make([]byte, 13)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + strings.ToLower(lowerBase32.EncodeToString(b)[:20])
}

// Published is an artifact and whether it is a TUF target already: in
// offline targets mode it is not until the release engineer signs it.
type Published struct {
	steward.Artifact
	Published bool `json:"published"`
}

// Upload stores an artifact sent in one stream: the content is written to
// the blob store while its SHA-256 is computed (and checked against
// wantSHA256 when given), then the artifact is recorded and published as a
// TUF target. Bad metadata is refused before a byte is read; a refused
// upload leaves nothing behind.
func (s *Service) Upload(ctx context.Context, meta steward.Artifact, r io.Reader, wantSHA256, actor string) (Published, error) {
	meta.CreatedBy = actor
	if err := meta.ValidateMetadata(); err != nil {
		return Published{}, err
	}
	if wantSHA256 != "" && !steward.ValidSHA256(wantSHA256) {
		return Published{}, steward.Errorf(steward.CodeInvalid, "sha256 %q is not a lower-case hex SHA-256", wantSHA256)
	}
	if _, err := s.cfg.Store.ArtifactByTarget(ctx, meta.TenantID, meta.Name, meta.Version); err == nil {
		return Published{}, steward.Errorf(steward.CodeConflict, "artifact %s version %s already exists", meta.Name, meta.Version)
	}
	info, err := s.cfg.Blobs.Put(ctx, r, wantSHA256, s.cfg.MaxSize)
	if err != nil {
		return Published{}, err
	}
	return s.create(ctx, meta, info, actor)
}

// create records an artifact whose content is stored, and publishes it.
func (s *Service) create(ctx context.Context, meta steward.Artifact, info steward.BlobInfo, actor string) (Published, error) {
	a := meta
	a.ID, a.SHA256, a.Size, a.CreatedBy, a.CreatedAt = newID("art-"), info.SHA256, info.Size, actor, s.cfg.Clock.Now()
	unlock := s.lockBlob(info.SHA256)
	// The content may have been dropped since Put found it already stored
	// (the last artifact with it deleted in between): record nothing then.
	if _, err := s.cfg.Blobs.Stat(ctx, info.SHA256); err != nil {
		unlock()
		if steward.IsNotFound(err) {
			return Published{}, steward.Errorf(steward.CodeUnavailable, "the content was deleted while it was uploaded: upload it again")
		}
		return Published{}, err
	}
	err := s.cfg.Store.CreateArtifact(ctx, a)
	if err != nil {
		s.dropBlobIfUnusedLocked(ctx, info.SHA256)
	}
	unlock()
	if err != nil {
		return Published{}, err
	}
	p := Published{Artifact: a, Published: true}
	if err := s.cfg.TUF.AddTarget(ctx, a); err != nil {
		if steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			// The artifact is not installable unpublished: take it back so
			// the upload can simply be repeated.
			_ = s.cfg.Store.DeleteArtifact(ctx, a.TenantID, a.ID)
			s.dropBlobIfUnused(ctx, info.SHA256)
			return Published{}, fmt.Errorf("publish artifact %s: %w", a.ID, err)
		}
		p.Published = false // offline targets mode
	}
	s.audit(ctx, a.TenantID, actor, "artifact.create", a.ID, nil, a)
	return p, nil
}

func (s *Service) dropBlobIfUnused(ctx context.Context, sum string) {
	defer s.lockBlob(sum)()
	s.dropBlobIfUnusedLocked(ctx, sum)
}

func (s *Service) dropBlobIfUnusedLocked(ctx context.Context, sum string) {
	n, err := s.cfg.Store.CountArtifactsBySHA256(ctx, sum)
	if err == nil && n == 0 {
		if err := s.cfg.Blobs.Delete(ctx, sum); err != nil {
			s.cfg.Logger.Warn("drop unused blob", "sha256", sum, "err", err)
		}
	}
}

func (s *Service) audit(ctx context.Context, tenantID, actor, action, id string, before, after any) {
	if s.cfg.Auditor == nil {
		return
	}
	rec := steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: action, Target: "artifact:" + id, Outcome: steward.AuditSuccess, At: s.cfg.Clock.Now()}
	if before != nil {
		rec.Before, _ = json.Marshal(before)
	}
	if after != nil {
		rec.After, _ = json.Marshal(after)
	}
	if err := s.cfg.Auditor.Record(ctx, rec); err != nil {
		s.cfg.Logger.Error("audit", "action", action, "err", err)
	}
}

// StartUpload begins a resumable upload of length bytes with the given
// metadata; the content follows in AppendUpload calls.
func (s *Service) StartUpload(ctx context.Context, meta steward.Artifact, length int64, wantSHA256, actor string) (steward.Upload, error) {
	if err := meta.ValidateMetadata(); err != nil {
		return steward.Upload{}, err
	}
	switch {
	case length < 0:
		return steward.Upload{}, steward.Errorf(steward.CodeInvalid, "upload length %d is negative", length)
	case length > s.cfg.MaxSize:
		return steward.Upload{}, steward.Errorf(steward.CodeTooLarge, "upload length %d is over the limit of %d bytes", length, s.cfg.MaxSize)
	case wantSHA256 != "" && !steward.ValidSHA256(wantSHA256):
		return steward.Upload{}, steward.Errorf(steward.CodeInvalid, "sha256 %q is not a lower-case hex SHA-256", wantSHA256)
	}
	if _, err := s.cfg.Store.ArtifactByTarget(ctx, meta.TenantID, meta.Name, meta.Version); err == nil {
		return steward.Upload{}, steward.Errorf(steward.CodeConflict, "artifact %s version %s already exists", meta.Name, meta.Version)
	}
	now := s.cfg.Clock.Now()
	u := steward.Upload{ID: newID("up-"), TenantID: meta.TenantID, Artifact: meta, Length: length, SHA256: wantSHA256,
		CreatedBy: actor, CreatedAt: now, ExpiresAt: now.Add(s.cfg.UploadTTL)}
	u.Artifact.TenantID = ""
	if err := s.cfg.Store.CreateUpload(ctx, u); err != nil {
		return steward.Upload{}, err
	}
	return u, nil
}

// GetUpload returns an upload in progress (its offset is where to resume).
func (s *Service) GetUpload(ctx context.Context, tenantID, id string) (steward.Upload, error) {
	return s.cfg.Store.GetUpload(ctx, tenantID, id)
}

// AppendUpload writes a chunk at offset, which must be the upload's
// offset (CodeConflict otherwise, with the upload's real offset to resume
// from). What arrived before a cut connection is kept. When the upload is
// complete, the artifact is created and returned.
func (s *Service) AppendUpload(ctx context.Context, tenantID, id string, offset int64, r io.Reader, actor string) (steward.Upload, *Published, error) {
	u, err := s.cfg.Store.GetUpload(ctx, tenantID, id)
	if err != nil {
		return u, nil, err
	}
	if offset != u.Offset {
		return u, nil, steward.Errorf(steward.CodeConflict, "upload %s is at offset %d, not %d", id, u.Offset, offset)
	}
	n, werr := s.cfg.Blobs.AppendUpload(ctx, id, offset, r, u.Length)
	if n > offset {
		if err := s.cfg.Store.AdvanceUpload(ctx, tenantID, id, offset, n); err != nil {
			return u, nil, err
		}
		u.Offset = n
	}
	if werr != nil {
		return u, nil, werr
	}
	if u.Offset < u.Length {
		return u, nil, nil
	}
	p, err := s.finish(ctx, u, actor)
	if err != nil {
		return u, nil, err
	}
	return u, &p, nil
}

// finish turns a complete upload into an artifact.
func (s *Service) finish(ctx context.Context, u steward.Upload, actor string) (Published, error) {
	info, err := s.cfg.Blobs.CommitUpload(ctx, u.ID, u.SHA256)
	if err != nil {
		if steward.ErrorCode(err) == steward.CodeInvalid {
			// The content is not what was announced: the upload is over.
			_ = s.cfg.Blobs.AbortUpload(ctx, u.ID)
			_ = s.cfg.Store.DeleteUpload(ctx, u.TenantID, u.ID)
		}
		return Published{}, err
	}
	meta := u.Artifact
	meta.TenantID = u.TenantID
	p, err := s.create(ctx, meta, info, actor)
	if err != nil {
		return Published{}, err
	}
	if err := s.cfg.Store.DeleteUpload(ctx, u.TenantID, u.ID); err != nil && !steward.IsNotFound(err) {
		s.cfg.Logger.Warn("drop finished upload", "upload", u.ID, "err", err)
	}
	return p, nil
}

// CancelUpload drops an upload in progress and its bytes.
func (s *Service) CancelUpload(ctx context.Context, tenantID, id string) error {
	if _, err := s.cfg.Store.GetUpload(ctx, tenantID, id); err != nil {
		return err
	}
	if err := s.cfg.Blobs.AbortUpload(ctx, id); err != nil {
		return err
	}
	return s.cfg.Store.DeleteUpload(ctx, tenantID, id)
}

// ExpireUploads drops the uploads that expired, with their bytes.
func (s *Service) ExpireUploads(ctx context.Context) (int, error) {
	ups, err := s.cfg.Store.ExpiredUploads(ctx, s.cfg.Clock.Now(), 1000)
	if err != nil {
		return 0, err
	}
	for i, u := range ups {
		if err := s.CancelUpload(ctx, u.TenantID, u.ID); err != nil && !steward.IsNotFound(err) {
			return i, err
		}
	}
	return len(ups), nil
}

// Get returns an artifact.
func (s *Service) Get(ctx context.Context, tenantID, id string) (steward.Artifact, error) {
	return s.cfg.Store.GetArtifact(ctx, tenantID, id)
}

// List returns the tenant's artifacts matching f.
func (s *Service) List(ctx context.Context, tenantID string, f steward.ArtifactFilter) ([]steward.Artifact, error) {
	return s.cfg.Store.ListArtifacts(ctx, tenantID, f)
}

// Delete withdraws an artifact's TUF target (online mode), deletes it and
// its grants, and drops its content when no other artifact has it. In
// offline targets mode an artifact that is still a signed target is not
// deleted (CodeFailedPrecondition): the release engineer signs it out
// first.
func (s *Service) Delete(ctx context.Context, tenantID, id, actor string) error {
	a, err := s.cfg.Store.GetArtifact(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if err := s.cfg.TUF.RemoveTarget(ctx, tenantID, a.TargetPath()); err != nil {
		if steward.ErrorCode(err) == steward.CodeFailedPrecondition {
			// Offline targets mode with the artifact still signed: deleting
			// its content would leave devices a target they cannot fetch.
			return steward.Errorf(steward.CodeFailedPrecondition,
				"artifact %s is a signed target and the server cannot re-sign targets (offline mode): sign it out first (steward artifacts sign --remove %s), then delete it", id, a.TargetPath())
		}
		return fmt.Errorf("withdraw target %s: %w", a.TargetPath(), err)
	}
	if err := s.cfg.Store.DeleteArtifact(ctx, tenantID, id); err != nil {
		return err
	}
	s.dropBlobIfUnused(ctx, a.SHA256)
	s.audit(ctx, tenantID, actor, "artifact.delete", id, a, nil)
	return nil
}

// Run drops expired uploads every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if n, err := s.ExpireUploads(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Error("expire uploads", "err", err)
		} else if n > 0 {
			s.cfg.Logger.Info("expired uploads dropped", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
