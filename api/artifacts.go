package api

import (
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/artifacts"
	"github.com/steward-iot/steward/tufrepo"
)

// ArtifactService stores, lists and deletes artifacts and runs resumable
// uploads (artifacts.Service).
type ArtifactService interface {
	Upload(ctx context.Context, meta steward.Artifact, r io.Reader, wantSHA256, actor string) (artifacts.Published, error)
	StartUpload(ctx context.Context, meta steward.Artifact, length int64, wantSHA256, actor string) (steward.Upload, error)
	GetUpload(ctx context.Context, tenantID, id string) (steward.Upload, error)
	AppendUpload(ctx context.Context, tenantID, id string, offset int64, r io.Reader, actor string) (steward.Upload, *artifacts.Published, error)
	CancelUpload(ctx context.Context, tenantID, id string) error
	Get(ctx context.Context, tenantID, id string) (steward.Artifact, error)
	List(ctx context.Context, tenantID string, f steward.ArtifactFilter) ([]steward.Artifact, error)
	Delete(ctx context.Context, tenantID, id, actor string) error
}

// TUFService is a tenant's TUF repository as the API exposes it
// (tufrepo.Repo).
type TUFService interface {
	Root(ctx context.Context, tenantID string) ([]byte, error)
	Targets(ctx context.Context, tenantID string) ([]byte, error)
	PublishTargets(ctx context.Context, tenantID string, signed []byte) error
	RotateRoot(ctx context.Context, tenantID string, targetsKey tufrepo.TargetsKey) error
	Offline(ctx context.Context, tenantID string) (bool, error)
}

// registerArtifacts adds the artifact and TUF routes.
func (s *Server) registerArtifacts() {
	s.handle("GET", "/api/v1/artifacts", steward.PermArtifactsRead, s.listArtifacts)
	s.handle("POST", "/api/v1/artifacts", steward.PermArtifactsWrite, s.uploadArtifact)
	s.handle("GET", "/api/v1/artifacts/{id}", steward.PermArtifactsRead, s.getArtifact)
	s.handle("DELETE", "/api/v1/artifacts/{id}", steward.PermArtifactsWrite, s.deleteArtifact)
	s.handle("POST", "/api/v1/uploads", steward.PermArtifactsWrite, s.startUpload)
	s.handle("GET", "/api/v1/uploads/{id}", steward.PermArtifactsWrite, s.getUpload)
	s.handle("PATCH", "/api/v1/uploads/{id}", steward.PermArtifactsWrite, s.patchUpload)
	s.handle("DELETE", "/api/v1/uploads/{id}", steward.PermArtifactsWrite, s.cancelUpload)
	s.handle("GET", "/api/v1/tuf/root.json", steward.PermArtifactsRead, s.tufRoot)
	s.handle("GET", "/api/v1/tuf/targets.json", steward.PermArtifactsRead, s.tufTargets)
	s.handle("PUT", "/api/v1/tuf/targets.json", steward.PermArtifactsWrite, s.publishTargets)
	s.handle("GET", "/api/v1/tuf", steward.PermArtifactsRead, s.tufStatus)
	s.handle("POST", "/api/v1/tuf/rotate-root", steward.PermPKIAdmin, s.rotateRoot)
}

func (s *Server) artifactService() (ArtifactService, error) {
	if s.cfg.Artifacts == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "artifacts are not available on this node")
	}
	return s.cfg.Artifacts, nil
}

func (s *Server) tufService() (TUFService, error) {
	if s.cfg.TUF == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "the TUF repository is not available on this node")
	}
	return s.cfg.TUF, nil
}

// artifactMeta reads an artifact's metadata from query parameters (the
// body is the content).
func artifactMeta(q map[string][]string, tenantID string) steward.Artifact {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	a := steward.Artifact{TenantID: tenantID, Name: get("name"), Version: get("version"), Type: steward.ArtifactType(get("type")),
		MinInstalledVersion: get("min_installed_version"), ReleaseNotes: get("release_notes")}
	for _, m := range q["compatible_model"] {
		for _, part := range strings.Split(m, ",") {
			if part = strings.TrimSpace(part); part != "" {
				a.CompatibleModels = append(a.CompatibleModels, part)
			}
		}
	}
	return a
}

// octetStream checks that a body is raw content.
func octetStream(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || mt != "application/octet-stream" {
		return steward.Errorf(steward.CodeUnsupported, "the body must be the artifact's content as application/octet-stream, not %q", ct)
	}
	return nil
}

// uploadArtifact serves POST /api/v1/artifacts: the body is the content,
// streamed to the blob store (not subject to MaxBodyBytes, but to the
// service's artifact size limit); the metadata is in the query.
func (s *Server) uploadArtifact(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "name", "version", "type", "compatible_model", "min_installed_version", "release_notes", "sha256")
	if err != nil {
		return err
	}
	if err := octetStream(r); err != nil {
		return err
	}
	a, err := svc.Upload(r.Context(), artifactMeta(q, p.tenantID), r.Body, q.Get("sha256"), p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/artifacts/"+a.ID)
	return writeJSON(w, http.StatusCreated, a)
}

func (s *Server) listArtifacts(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "name", "type", "after", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	as, err := svc.List(r.Context(), p.tenantID, steward.ArtifactFilter{Name: q.Get("name"), Type: steward.ArtifactType(q.Get("type")), After: q.Get("after"), Limit: limit})
	if err != nil {
		return err
	}
	out := list(as)
	effective := limit
	if effective == 0 {
		effective = 100
	}
	if len(as) >= effective {
		out.NextAfter = as[len(as)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getArtifact(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	a, err := svc.Get(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, a)
}

func (s *Server) deleteArtifact(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	if err := svc.Delete(r.Context(), p.tenantID, r.PathValue("id"), p.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// UploadRequest is the body of POST /api/v1/uploads: the artifact's
// metadata, its total length and (optionally) its SHA-256.
type UploadRequest struct {
	Name                string               `json:"name"`
	Version             string               `json:"version"`
	Type                steward.ArtifactType `json:"type"`
	CompatibleModels    []string             `json:"compatible_models,omitempty"`
	MinInstalledVersion string               `json:"min_installed_version,omitempty"`
	ReleaseNotes        string               `json:"release_notes,omitempty"`
	Length              int64                `json:"length"`
	SHA256              string               `json:"sha256,omitempty"`
}

// uploadOffsetHeader is the offset of a resumable upload (as in tus).
const uploadOffsetHeader = "Upload-Offset"

func writeUpload(w http.ResponseWriter, status int, u steward.Upload) error {
	w.Header().Set(uploadOffsetHeader, strconv.FormatInt(u.Offset, 10))
	w.Header().Set("Upload-Length", strconv.FormatInt(u.Length, 10))
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, status, u)
}

func (s *Server) startUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	var req UploadRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	meta := steward.Artifact{TenantID: p.tenantID, Name: req.Name, Version: req.Version, Type: req.Type,
		CompatibleModels: req.CompatibleModels, MinInstalledVersion: req.MinInstalledVersion, ReleaseNotes: req.ReleaseNotes}
	u, err := svc.StartUpload(r.Context(), meta, req.Length, req.SHA256, p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/uploads/"+u.ID)
	return writeUpload(w, http.StatusCreated, u)
}

func (s *Server) getUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	u, err := svc.GetUpload(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeUpload(w, http.StatusOK, u)
}

// patchUpload serves PATCH /api/v1/uploads/{id}: the body is the next
// chunk, Upload-Offset says where it starts. The answer carries the new
// Upload-Offset (204), or the artifact once the last byte arrived (201).
// A wrong offset is 409 with the offset to resume from.
func (s *Server) patchUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	if err := octetStream(r); err != nil {
		return err
	}
	off, err := strconv.ParseInt(r.Header.Get(uploadOffsetHeader), 10, 64)
	if err != nil || off < 0 {
		return steward.Errorf(steward.CodeInvalid, "the %s header must be the byte offset the chunk starts at", uploadOffsetHeader)
	}
	u, a, err := svc.AppendUpload(r.Context(), p.tenantID, r.PathValue("id"), off, r.Body, p.actor())
	if u.ID != "" {
		w.Header().Set(uploadOffsetHeader, strconv.FormatInt(u.Offset, 10))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return steward.Errorf(steward.CodeTooLarge, "the chunk is too large")
		}
		return err
	}
	if a != nil {
		w.Header().Set("Location", "/api/v1/artifacts/"+a.ID)
		return writeJSON(w, http.StatusCreated, a)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) cancelUpload(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.artifactService()
	if err != nil {
		return err
	}
	if err := svc.CancelUpload(r.Context(), p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func writeTUF(w http.ResponseWriter, body []byte) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}

// tufRoot serves the tenant's newest root metadata: what a device that
// cannot reach the device plane's /.well-known/steward/tuf-root (or a
// factory image) is given as its trust anchor.
func (s *Server) tufRoot(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.tufService()
	if err != nil {
		return err
	}
	b, err := t.Root(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeTUF(w, b)
}

func (s *Server) tufTargets(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.tufService()
	if err != nil {
		return err
	}
	b, err := t.Targets(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeTUF(w, b)
}

// publishTargets serves PUT /api/v1/tuf/targets.json: targets metadata
// signed with the release key (`steward artifacts sign`).
func (s *Server) publishTargets(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.tufService()
	if err != nil {
		return err
	}
	ct := r.Header.Get("Content-Type")
	if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
		return steward.Errorf(steward.CodeUnsupported, "the body must be signed targets metadata as application/json, not %q", ct)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 5<<20))
	if err != nil {
		return bodyError(err)
	}
	if err := t.PublishTargets(r.Context(), p.tenantID, body); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// TUFStatus is GET /api/v1/tuf: the repository's mode.
type TUFStatus struct {
	// Offline is true in offline targets mode: the server holds no
	// targets key and publishes only targets signed with the release key.
	Offline bool `json:"offline"`
}

func (s *Server) tufStatus(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.tufService()
	if err != nil {
		return err
	}
	off, err := t.Offline(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, TUFStatus{Offline: off})
}

// RotateRootRequest is the body of POST /api/v1/tuf/rotate-root.
type RotateRootRequest struct {
	// Targets is "" (keep the targets key), "release" (offline targets
	// mode: ReleaseKey becomes the only targets key) or "server" (online
	// mode: a new key the server holds).
	Targets string `json:"targets,omitempty"`
	// ReleaseKey is the release key's public key, PEM or a TUF key object.
	ReleaseKey string `json:"release_key,omitempty"`
}

func (s *Server) rotateRoot(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.tufService()
	if err != nil {
		return err
	}
	var req RotateRootRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	var tk tufrepo.TargetsKey
	switch req.Targets {
	case "":
	case "server":
		tk.Server = true
	case "release":
		var pub ed25519.PublicKey
		if pub, err = tufrepo.ParsePublicKey([]byte(req.ReleaseKey)); err != nil {
			return err
		}
		tk.Release = pub
	default:
		return invalidf("targets %q: want \"\", \"release\" or \"server\"", req.Targets)
	}
	if req.Targets != "release" && req.ReleaseKey != "" {
		return invalidf("release_key goes with targets \"release\"")
	}
	if err := t.RotateRoot(r.Context(), p.tenantID, tk); err != nil {
		return err
	}
	b, err := t.Root(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeTUF(w, b)
}
