package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

const artifactCols = `tenant_id, id, name, version, type, sha256, size, compatible_models, min_installed_version, release_notes, created_by, created_at`

func scanArtifact(a *steward.Artifact) []any {
	return []any{&a.TenantID, &a.ID, &a.Name, &a.Version, &a.Type, &a.SHA256, &a.Size, jsonCol{&a.CompatibleModels},
		&a.MinInstalledVersion, &a.ReleaseNotes, &a.CreatedBy, timeCol{&a.CreatedAt}}
}

// CreateArtifact implements steward.Store.
func (s *Store) CreateArtifact(ctx context.Context, a steward.Artifact) error {
	if err := a.Validate(); err != nil {
		return err
	}
	models := a.CompatibleModels
	if models == nil {
		models = []string{}
	}
	m, err := jsonText(models, "[]")
	if err != nil {
		return invalid("compatible models: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO artifacts (`+artifactCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.TenantID, a.ID, a.Name, a.Version, string(a.Type), a.SHA256, a.Size, m, a.MinInstalledVersion, a.ReleaseNotes, a.CreatedBy, ts(a.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", a.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "artifact %s version %s (or ID %s) already exists", a.Name, a.Version, a.ID)
	}
	return s.fail(err, "create artifact %s", a.ID)
}

// GetArtifact implements steward.Store.
func (s *Store) GetArtifact(ctx context.Context, tenantID, id string) (steward.Artifact, error) {
	var a steward.Artifact
	err := s.queryRow(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanArtifact(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("artifact %s not found", id)
	}
	return a, s.fail(err, "get artifact %s", id)
}

// ArtifactByTarget implements steward.Store.
func (s *Store) ArtifactByTarget(ctx context.Context, tenantID, name, version string) (steward.Artifact, error) {
	var a steward.Artifact
	err := s.queryRow(ctx, `SELECT `+artifactCols+` FROM artifacts WHERE tenant_id = ? AND name = ? AND version = ?`, tenantID, name, version).
		Scan(scanArtifact(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("artifact %s version %s not found", name, version)
	}
	return a, s.fail(err, "get artifact %s version %s", name, version)
}

// ListArtifacts implements steward.Store.
func (s *Store) ListArtifacts(ctx context.Context, tenantID string, f steward.ArtifactFilter) ([]steward.Artifact, error) {
	limit := f.Limit
	switch {
	case limit < 0:
		return nil, invalid("limit %d is negative", limit)
	case limit == 0:
		limit = 100
	case limit > 1000:
		limit = 1000
	}
	q := `SELECT ` + artifactCols + ` FROM artifacts WHERE tenant_id = ? AND id > ?`
	args := []any{tenantID, f.After}
	if f.Name != "" {
		q += ` AND name = ?`
		args = append(args, f.Name)
	}
	if f.Type != "" {
		q += ` AND type = ?`
		args = append(args, string(f.Type))
	}
	q += ` ORDER BY id LIMIT ?`
	args = append(args, limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(err, "list artifacts")
	}
	return collect(rows, scanArtifact, s, "list artifacts")
}

// DeleteArtifact implements steward.Store; the foreign key cascades to the
// artifact's grants.
func (s *Store) DeleteArtifact(ctx context.Context, tenantID, id string) error {
	return s.deleteOne(ctx, `DELETE FROM artifacts WHERE tenant_id = ? AND id = ?`, tenantID, id, "artifact")
}

// CountArtifactsBySHA256 implements steward.Store.
func (s *Store) CountArtifactsBySHA256(ctx context.Context, sha256 string) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM artifacts WHERE sha256 = ?`, sha256).Scan(&n)
	return n, s.fail(err, "count artifacts")
}

// GrantArtifact implements steward.Store. The device and the artifact are
// checked to be the tenant's before the insert, so a grant never crosses
// tenants; a grant that exists is left as it is.
func (s *Store) GrantArtifact(ctx context.Context, tenantID, deviceID, artifactID string) error {
	if err := required("tenant", tenantID, "device", deviceID, "artifact", artifactID); err != nil {
		return err
	}
	var n int
	if err := s.queryRow(ctx, `SELECT COUNT(*) FROM devices WHERE tenant_id = ? AND id = ?`, tenantID, deviceID).Scan(&n); err != nil {
		return s.fail(err, "grant artifact %s", artifactID)
	}
	if n == 0 {
		return notFound("device %s not found", deviceID)
	}
	_, err := s.exec(ctx, `INSERT INTO artifact_grants (tenant_id, artifact_id, device_id) VALUES (?, ?, ?)
		ON CONFLICT (tenant_id, artifact_id, device_id) DO NOTHING`, tenantID, artifactID, deviceID)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "artifact %s not found", artifactID)
	}
	return s.fail(err, "grant artifact %s to device %s", artifactID, deviceID)
}

// RevokeArtifactGrant implements steward.Store.
func (s *Store) RevokeArtifactGrant(ctx context.Context, tenantID, deviceID, artifactID string) error {
	_, err := s.exec(ctx, `DELETE FROM artifact_grants WHERE tenant_id = ? AND artifact_id = ? AND device_id = ?`, tenantID, artifactID, deviceID)
	return s.fail(err, "revoke grant of artifact %s to device %s", artifactID, deviceID)
}

// GrantedArtifact implements steward.Store.
func (s *Store) GrantedArtifact(ctx context.Context, tenantID, deviceID, sha256 string) (steward.Artifact, error) {
	var a steward.Artifact
	err := s.queryRow(ctx, `SELECT `+prefixCols("a.", artifactCols)+` FROM artifacts a
		JOIN artifact_grants g ON g.tenant_id = a.tenant_id AND g.artifact_id = a.id
		WHERE a.tenant_id = ? AND g.device_id = ? AND a.sha256 = ? ORDER BY a.id LIMIT 1`, tenantID, deviceID, sha256).
		Scan(scanArtifact(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("no artifact %s for device %s", sha256, deviceID)
	}
	return a, s.fail(err, "find granted artifact")
}

// ListArtifactGrants implements steward.Store.
func (s *Store) ListArtifactGrants(ctx context.Context, tenantID, artifactID string) ([]string, error) {
	rows, err := s.query(ctx, `SELECT device_id FROM artifact_grants WHERE tenant_id = ? AND artifact_id = ? ORDER BY device_id`, tenantID, artifactID)
	if err != nil {
		return nil, s.fail(err, "list artifact grants")
	}
	return collect(rows, func(id *string) []any { return []any{id} }, s, "list artifact grants")
}

// prefixCols qualifies each column of a column list with a table alias.
func prefixCols(prefix, cols string) string {
	return prefix + strings.ReplaceAll(cols, ", ", ", "+prefix)
}

const uploadCols = `tenant_id, id, artifact, length, "offset", sha256, created_by, created_at, expires_at`

func scanUpload(u *steward.Upload) []any {
	return []any{&u.TenantID, &u.ID, jsonCol{&u.Artifact}, &u.Length, &u.Offset, &u.SHA256, &u.CreatedBy, timeCol{&u.CreatedAt}, timeCol{&u.ExpiresAt}}
}

// CreateUpload implements steward.Store.
func (s *Store) CreateUpload(ctx context.Context, u steward.Upload) error {
	if err := required("upload ID", u.ID, "tenant", u.TenantID); err != nil {
		return err
	}
	if err := u.Artifact.ValidateMetadata(); err != nil {
		return err
	}
	switch {
	case u.Length < 0:
		return invalid("upload length %d is negative", u.Length)
	case u.SHA256 != "" && !steward.ValidSHA256(u.SHA256):
		return invalid("upload digest %q is not a lower-case hex SHA-256", u.SHA256)
	case u.CreatedAt.IsZero() || u.ExpiresAt.IsZero():
		return invalid("an upload needs its creation and expiry times")
	}
	a, err := jsonText(u.Artifact, "{}")
	if err != nil {
		return invalid("upload metadata: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO artifact_uploads (`+uploadCols+`) VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)`,
		u.TenantID, u.ID, a, u.Length, u.SHA256, u.CreatedBy, ts(u.CreatedAt), ts(u.ExpiresAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", u.TenantID)
	}
	return s.fail(err, "create upload %s", u.ID)
}

// GetUpload implements steward.Store.
func (s *Store) GetUpload(ctx context.Context, tenantID, id string) (steward.Upload, error) {
	var u steward.Upload
	err := s.queryRow(ctx, `SELECT `+uploadCols+` FROM artifact_uploads WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanUpload(&u)...)
	if errors.Is(err, sql.ErrNoRows) {
		return u, notFound("upload %s not found", id)
	}
	return u, s.fail(err, "get upload %s", id)
}

// AdvanceUpload implements steward.Store.
func (s *Store) AdvanceUpload(ctx context.Context, tenantID, id string, from, to int64) error {
	if to < from {
		return invalid("an upload's offset only moves forward (%d to %d)", from, to)
	}
	res, err := s.exec(ctx, `UPDATE artifact_uploads SET "offset" = ? WHERE tenant_id = ? AND id = ? AND "offset" = ? AND length >= ?`,
		to, tenantID, id, from, to)
	if err != nil {
		return s.fail(err, "advance upload %s", id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "advance upload %s", id)
	}
	if n == 0 {
		u, err := s.GetUpload(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if to > u.Length {
			return invalid("upload %s is %d bytes long, not %d", id, u.Length, to)
		}
		return steward.Errorf(steward.CodeConflict, "upload %s is at offset %d, not %d", id, u.Offset, from)
	}
	return nil
}

// DeleteUpload implements steward.Store.
func (s *Store) DeleteUpload(ctx context.Context, tenantID, id string) error {
	return s.deleteOne(ctx, `DELETE FROM artifact_uploads WHERE tenant_id = ? AND id = ?`, tenantID, id, "upload")
}

// ExpiredUploads implements steward.Store.
func (s *Store) ExpiredUploads(ctx context.Context, now time.Time, limit int) ([]steward.Upload, error) {
	if limit <= 0 || limit > 10000 {
		return nil, invalid("limit %d: want 1 to 10000", limit)
	}
	rows, err := s.query(ctx, `SELECT `+uploadCols+` FROM artifact_uploads WHERE expires_at < ? ORDER BY expires_at, id LIMIT ?`, ts(now), limit)
	if err != nil {
		return nil, s.fail(err, "list expired uploads")
	}
	return collect(rows, scanUpload, s, "list expired uploads")
}

// PutTUFMetadata implements steward.Store.
func (s *Store) PutTUFMetadata(ctx context.Context, m steward.TUFMetadata) error {
	switch {
	case m.TenantID == "":
		return invalid("TUF metadata needs a tenant")
	case m.Role != steward.TUFRoot && m.Role != steward.TUFTargets && m.Role != steward.TUFSnapshot && m.Role != steward.TUFTimestamp:
		return invalid("TUF role %q: want root, targets, snapshot or timestamp", m.Role)
	case m.Version <= 0:
		return invalid("TUF metadata version %d: versions start at 1", m.Version)
	case len(m.Body) == 0:
		return invalid("TUF metadata is empty")
	case m.Expires.IsZero() || m.CreatedAt.IsZero():
		return invalid("TUF metadata needs its expiry and creation times")
	}
	_, err := s.exec(ctx, `INSERT INTO tuf_metadata (tenant_id, role, version, body, expires_at, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		m.TenantID, m.Role, m.Version, m.Body, ts(m.Expires), ts(m.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", m.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "%s metadata version %d already exists", m.Role, m.Version)
	}
	return s.fail(err, "store %s metadata version %d", m.Role, m.Version)
}

// GetTUFMetadata implements steward.Store.
func (s *Store) GetTUFMetadata(ctx context.Context, tenantID, role string, version int64) (steward.TUFMetadata, error) {
	m := steward.TUFMetadata{}
	q := `SELECT tenant_id, role, version, body, expires_at, created_at FROM tuf_metadata WHERE tenant_id = ? AND role = ?`
	args := []any{tenantID, role}
	if version > 0 {
		q += ` AND version = ?`
		args = append(args, version)
	} else {
		q += ` ORDER BY version DESC LIMIT 1`
	}
	err := s.queryRow(ctx, q, args...).Scan(&m.TenantID, &m.Role, &m.Version, &m.Body, timeCol{&m.Expires}, timeCol{&m.CreatedAt})
	if errors.Is(err, sql.ErrNoRows) {
		if version > 0 {
			return m, notFound("%s metadata version %d not found", role, version)
		}
		return m, notFound("no %s metadata", role)
	}
	return m, s.fail(err, "get %s metadata", role)
}
