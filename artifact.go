package steward

import (
	"context"
	"encoding/hex"
	"io"
	"regexp"
	"slices"
	"time"
)

// ArtifactType says what an artifact installs.
type ArtifactType string

// The artifact types.
const (
	ArtifactFirmware    ArtifactType = "firmware"
	ArtifactApplication ArtifactType = "application"
	ArtifactConfig      ArtifactType = "config-bundle"
)

// ArtifactTypes lists every artifact type.
var ArtifactTypes = []ArtifactType{ArtifactFirmware, ArtifactApplication, ArtifactConfig}

// Valid reports whether t is a known artifact type.
func (t ArtifactType) Valid() bool { return slices.Contains(ArtifactTypes, t) }

// Limits on an artifact's metadata.
const (
	MaxArtifactNameLen    = 64
	MaxArtifactVersionLen = 64
	MaxReleaseNotesLen    = 16 << 10 // bytes
	MaxCompatibleModels   = 100
)

// artifactName is what an artifact name or version may be: it becomes a
// TUF target path ("name/version") and a URL segment, so no slashes, no
// leading dot and nothing a shell or a URL must escape.
var artifactName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.+-]*$`)

// Artifact is an uploaded file a device can install (firmware, an
// application, a configuration bundle) and what is known about it. Its
// content lives in a BlobStore under its SHA-256; the same content
// uploaded twice is stored once.
type Artifact struct {
	ID       string       `json:"id"`
	TenantID string       `json:"tenant_id"`
	Name     string       `json:"name"`
	Version  string       `json:"version"`
	Type     ArtifactType `json:"type"`
	// SHA256 is the content's digest, lower-case hex; Size its length in
	// bytes.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
	// CompatibleModels lists the device models it installs on; empty
	// means any model.
	CompatibleModels []string `json:"compatible_models"`
	// MinInstalledVersion is the oldest installed version it upgrades
	// from; empty means any.
	MinInstalledVersion string    `json:"min_installed_version,omitempty"`
	ReleaseNotes        string    `json:"release_notes,omitempty"`
	CreatedBy           string    `json:"created_by"`
	CreatedAt           time.Time `json:"created_at"`
}

// TargetPath is the artifact's TUF target path, "name/version": what the
// agent asks its TUF updater for.
func (a *Artifact) TargetPath() string { return ArtifactTargetPath(a.Name, a.Version) }

// ArtifactTargetPath is the TUF target path of an artifact name and version.
func ArtifactTargetPath(name, version string) string { return name + "/" + version }

// ValidArtifactName reports whether s can be an artifact name or version.
func ValidArtifactName(s string, maxLen int) bool {
	return len(s) <= maxLen && artifactName.MatchString(s)
}

// ValidSHA256 reports whether s is a SHA-256 digest in lower-case hex.
func ValidSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && s == lowerHex(s)
}

func lowerHex(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'F' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ValidateMetadata checks the fields an uploader chooses: name, version,
// type, compatible models, minimum installed version and release notes.
func (a *Artifact) ValidateMetadata() error {
	switch {
	case !ValidArtifactName(a.Name, MaxArtifactNameLen):
		return Errorf(CodeInvalid, "artifact name %q: use 1 to %d letters, digits, '_', '.', '+', '-', not starting with '.', '+' or '-'", a.Name, MaxArtifactNameLen)
	case !ValidArtifactName(a.Version, MaxArtifactVersionLen):
		return Errorf(CodeInvalid, "artifact version %q: use 1 to %d letters, digits, '_', '.', '+', '-', not starting with '.', '+' or '-'", a.Version, MaxArtifactVersionLen)
	case !a.Type.Valid():
		return Errorf(CodeInvalid, "artifact type %q: want firmware, application or config-bundle", a.Type)
	case len(a.CompatibleModels) > MaxCompatibleModels:
		return Errorf(CodeInvalid, "an artifact lists at most %d compatible models, not %d", MaxCompatibleModels, len(a.CompatibleModels))
	case a.MinInstalledVersion != "" && !ValidArtifactName(a.MinInstalledVersion, MaxArtifactVersionLen):
		return Errorf(CodeInvalid, "minimum installed version %q is not a version", a.MinInstalledVersion)
	case len(a.ReleaseNotes) > MaxReleaseNotesLen:
		return Errorf(CodeInvalid, "release notes are %d bytes, more than %d", len(a.ReleaseNotes), MaxReleaseNotesLen)
	}
	for _, m := range a.CompatibleModels {
		if m == "" || len(m) > 64 {
			return Errorf(CodeInvalid, "compatible model %q: 1 to 64 characters", m)
		}
	}
	return nil
}

// Validate checks everything a stored artifact must have.
func (a *Artifact) Validate() error {
	if err := a.ValidateMetadata(); err != nil {
		return err
	}
	switch {
	case a.ID == "" || a.TenantID == "":
		return Errorf(CodeInvalid, "an artifact needs an ID and a tenant")
	case !ValidSHA256(a.SHA256):
		return Errorf(CodeInvalid, "artifact digest %q is not a lower-case hex SHA-256", a.SHA256)
	case a.Size < 0:
		return Errorf(CodeInvalid, "artifact size %d is negative", a.Size)
	case a.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "an artifact needs its creation time")
	}
	return nil
}

// ArtifactFilter narrows a list of artifacts.
type ArtifactFilter struct {
	Name  string       // only this name
	Type  ArtifactType // only this type
	After string       // keyset pagination: only IDs greater than this
	Limit int          // 0 means the store's default (100); at most 1000
}

// Upload is a resumable upload in progress: the artifact's metadata is
// fixed when it starts, the content arrives in chunks at Offset, and
// finishing it creates the artifact.
type Upload struct {
	ID       string   `json:"id"`
	TenantID string   `json:"tenant_id"`
	Artifact Artifact `json:"artifact"` // metadata only: no ID, digest or size yet
	// Length is the total size announced when the upload started.
	Length int64 `json:"length"`
	// Offset is how many bytes the server has durably received.
	Offset int64 `json:"offset"`
	// SHA256, when the uploader gave it, is checked when the upload ends.
	SHA256    string    `json:"sha256,omitempty"`
	CreatedBy string    `json:"created_by"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt is when an unfinished upload is given up and its bytes dropped.
	ExpiresAt time.Time `json:"expires_at"`
}

// TUFMetadata is one signed version of one role's metadata of a tenant's
// TUF repository, as served to devices.
type TUFMetadata struct {
	TenantID string `json:"tenant_id"`
	// Role is root, targets, snapshot or timestamp.
	Role    string    `json:"role"`
	Version int64     `json:"version"`
	Body    []byte    `json:"-"` // the signed JSON document
	Expires time.Time `json:"expires"`
	// CreatedAt is when the server stored it.
	CreatedAt time.Time `json:"created_at"`
}

// The TUF top-level roles.
const (
	TUFRoot      = "root"
	TUFTargets   = "targets"
	TUFSnapshot  = "snapshot"
	TUFTimestamp = "timestamp"
)

// ArtifactStore is the part of Store that keeps artifacts, the devices
// allowed to download them, resumable uploads and the tenants' TUF
// metadata.
type ArtifactStore interface {
	// CreateArtifact stores an artifact (CodeInvalid when it does not
	// validate, CodeConflict when its name and version exist in the
	// tenant, CodeNotFound for an unknown tenant).
	CreateArtifact(ctx context.Context, a Artifact) error
	GetArtifact(ctx context.Context, tenantID, id string) (Artifact, error)
	// ArtifactByTarget finds the tenant's artifact of a name and version.
	ArtifactByTarget(ctx context.Context, tenantID, name, version string) (Artifact, error)
	// ListArtifacts returns the tenant's artifacts matching f, ordered by ID.
	ListArtifacts(ctx context.Context, tenantID string, f ArtifactFilter) ([]Artifact, error)
	// DeleteArtifact deletes an artifact and its grants.
	DeleteArtifact(ctx context.Context, tenantID, id string) error
	// CountArtifactsBySHA256 counts the artifacts of all tenants whose
	// content has the digest: the blob may go when none is left.
	CountArtifactsBySHA256(ctx context.Context, sha256 string) (int, error)

	// GrantArtifact lets a device download an artifact. The deployment
	// engine calls it when it assigns an artifact to a device (before it
	// tells the device to install it). Granting twice is not an error;
	// a device or an artifact not in the tenant is CodeNotFound.
	GrantArtifact(ctx context.Context, tenantID, deviceID, artifactID string) error
	// RevokeArtifactGrant takes the permission back (when a deployment is
	// cancelled or the device leaves it); revoking what was not granted is
	// not an error.
	RevokeArtifactGrant(ctx context.Context, tenantID, deviceID, artifactID string) error
	// GrantedArtifact returns the artifact with the digest that the device
	// was granted; CodeNotFound when there is none, so the device plane
	// cannot tell "not granted" from "does not exist".
	GrantedArtifact(ctx context.Context, tenantID, deviceID, sha256 string) (Artifact, error)
	// ListArtifactGrants returns the IDs of the devices granted an
	// artifact, ordered.
	ListArtifactGrants(ctx context.Context, tenantID, artifactID string) ([]string, error)

	// CreateUpload starts a resumable upload (Offset 0).
	CreateUpload(ctx context.Context, u Upload) error
	GetUpload(ctx context.Context, tenantID, id string) (Upload, error)
	// AdvanceUpload moves an upload's offset from from to to; CodeConflict
	// when the stored offset is not from (another request moved it), so
	// two writers of one upload cannot both append.
	AdvanceUpload(ctx context.Context, tenantID, id string, from, to int64) error
	DeleteUpload(ctx context.Context, tenantID, id string) error
	// ExpiredUploads returns up to limit uploads of all tenants that
	// expired before now.
	ExpiredUploads(ctx context.Context, now time.Time, limit int) ([]Upload, error)

	// PutTUFMetadata stores a new version of a role's metadata;
	// CodeConflict when that version exists (two nodes signing at once:
	// one wins, the other reloads).
	PutTUFMetadata(ctx context.Context, m TUFMetadata) error
	// GetTUFMetadata returns one version of a role's metadata, or the
	// newest with version 0; CodeNotFound when there is none.
	GetTUFMetadata(ctx context.Context, tenantID, role string, version int64) (TUFMetadata, error)
}

// BlobInfo describes stored content.
type BlobInfo struct {
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Blob is stored content opened for reading: seekable for HTTP Range and
// readable at offsets, so one open blob serves concurrent ranges.
type Blob interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
}

// BlobStore keeps artifact content by its SHA-256 (content addressing),
// and the partial content of resumable uploads. The embedded adapter is a
// directory (fsblob); the interface is what an S3-compatible adapter
// implements too: Put and CommitUpload map to a multipart upload finished
// by a copy to the digest's key, Open to ranged GETs.
type BlobStore interface {
	// Put streams r into the store and returns its digest and size. It
	// refuses content longer than maxSize (when positive; CodeTooLarge) and,
	// when wantSHA256 is set, content with another digest (CodeInvalid); a refused Put
	// leaves nothing behind. Content already stored is not stored again.
	Put(ctx context.Context, r io.Reader, wantSHA256 string, maxSize int64) (BlobInfo, error)
	// Open returns the content of a digest; CodeNotFound when absent.
	Open(ctx context.Context, sha256 string) (Blob, BlobInfo, error)
	Stat(ctx context.Context, sha256 string) (BlobInfo, error)
	// Delete removes content; deleting what is absent is not an error.
	Delete(ctx context.Context, sha256 string) error

	// AppendUpload writes r to the partial content of upload id starting at
	// offset, which must be the partial content's current size
	// (CodeConflict otherwise). Past maxSize bytes in all it stops with
	// CodeTooLarge and drops what this call added. It returns the new size; what was written is durable
	// when it returns, also when r failed part way.
	AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, maxSize int64) (int64, error)
	// CommitUpload moves an upload's content into the store under its
	// digest (checked against wantSHA256 when set) and returns it.
	CommitUpload(ctx context.Context, id, wantSHA256 string) (BlobInfo, error)
	// AbortUpload drops an upload's partial content.
	AbortUpload(ctx context.Context, id string) error
}
