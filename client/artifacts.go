package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/steward-iot/steward"
)

// PublishedArtifact is an artifact and whether it is a TUF target yet (in
// offline targets mode it is not until targets are signed and published).
type PublishedArtifact struct {
	steward.Artifact
	Published bool `json:"published"`
}

// ArtifactMeta is what an uploader says about an artifact.
type ArtifactMeta struct {
	Name                string               `json:"name"`
	Version             string               `json:"version"`
	Type                steward.ArtifactType `json:"type"`
	CompatibleModels    []string             `json:"compatible_models,omitempty"`
	MinInstalledVersion string               `json:"min_installed_version,omitempty"`
	ReleaseNotes        string               `json:"release_notes,omitempty"`
}

// sendRaw sends a request whose body is raw content and decodes a JSON
// answer into out (when there is one and out is not nil). It returns the
// response headers of a successful answer.
func (c *Client) sendRaw(ctx context.Context, method, path string, query url.Values, body io.Reader, length int64, hdr http.Header, out any) (http.Header, error) {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if length >= 0 {
		req.ContentLength = length
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json, application/problem+json")
	req.Header.Set("User-Agent", "steward-client")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.Header, problemError(resp, b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return nil, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	return resp.Header, nil
}

// UploadArtifact uploads content in one streamed request (POST
// /api/v1/artifacts). length is the content's size, or -1 when unknown;
// sha256, when set, is checked by the server.
func (c *Client) UploadArtifact(ctx context.Context, m ArtifactMeta, content io.Reader, length int64, sha256 string) (PublishedArtifact, error) {
	q := url.Values{"name": {m.Name}, "version": {m.Version}, "type": {string(m.Type)}}
	if len(m.CompatibleModels) > 0 {
		q.Set("compatible_model", strings.Join(m.CompatibleModels, ","))
	}
	if m.MinInstalledVersion != "" {
		q.Set("min_installed_version", m.MinInstalledVersion)
	}
	if m.ReleaseNotes != "" {
		q.Set("release_notes", m.ReleaseNotes)
	}
	if sha256 != "" {
		q.Set("sha256", sha256)
	}
	var a PublishedArtifact
	_, err := c.sendRaw(ctx, http.MethodPost, "/api/v1/artifacts", q, content, length, http.Header{"Content-Type": {"application/octet-stream"}}, &a)
	return a, err
}

// Upload is a resumable upload in progress.
type Upload struct {
	ID     string `json:"id"`
	Length int64  `json:"length"`
	Offset int64  `json:"offset"`
}

// StartUpload begins a resumable upload of length bytes.
func (c *Client) StartUpload(ctx context.Context, m ArtifactMeta, length int64, sha256 string) (Upload, error) {
	req := struct {
		ArtifactMeta
		Length int64  `json:"length"`
		SHA256 string `json:"sha256,omitempty"`
	}{m, length, sha256}
	var u Upload
	err := c.do(ctx, http.MethodPost, "/api/v1/uploads", nil, req, &u)
	return u, err
}

// GetUpload returns an upload, with the offset to resume from.
func (c *Client) GetUpload(ctx context.Context, id string) (Upload, error) {
	var u Upload
	err := c.do(ctx, http.MethodGet, "/api/v1/uploads/"+seg(id), nil, nil, &u)
	return u, err
}

// AppendUpload sends one chunk at offset. It returns the new offset, and
// the artifact when the chunk was the last.
func (c *Client) AppendUpload(ctx context.Context, id string, offset int64, chunk io.Reader, length int64) (int64, *PublishedArtifact, error) {
	var a PublishedArtifact
	hdr := http.Header{"Content-Type": {"application/octet-stream"}, "Upload-Offset": {strconv.FormatInt(offset, 10)}}
	h, err := c.sendRaw(ctx, http.MethodPatch, "/api/v1/uploads/"+seg(id), nil, chunk, length, hdr, &a)
	if err != nil {
		return offset, nil, err
	}
	n, _ := strconv.ParseInt(h.Get("Upload-Offset"), 10, 64)
	if a.ID != "" {
		return n, &a, nil
	}
	return n, nil, nil
}

// CancelUpload drops an upload.
func (c *Client) CancelUpload(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/uploads/"+seg(id), nil, nil, nil)
}

// UploadResumable uploads size bytes of content in chunks of chunkSize
// (default 8 MiB), through a resumable upload: after a failed chunk it
// asks the server where the upload stands and goes on from there, up to
// retries times in a row. progress, when not nil, is told the bytes the
// server holds.
func (c *Client) UploadResumable(ctx context.Context, m ArtifactMeta, content io.ReaderAt, size int64, sha256 string, chunkSize int64, retries int, progress func(done, total int64)) (PublishedArtifact, error) {
	if chunkSize <= 0 {
		chunkSize = 8 << 20
	}
	u, err := c.StartUpload(ctx, m, size, sha256)
	if err != nil {
		return PublishedArtifact{}, err
	}
	off, failures := int64(0), 0
	for {
		n := min(chunkSize, size-off)
		next, a, err := c.AppendUpload(ctx, u.ID, off, io.NewSectionReader(content, off, n), n)
		if err == nil {
			failures = 0
			off = next
			if progress != nil {
				progress(off, size)
			}
			if a != nil {
				return *a, nil
			}
			if n == 0 {
				return PublishedArtifact{}, fmt.Errorf("upload %s: the server did not finish at %d bytes", u.ID, off)
			}
			continue
		}
		// A refusal about the content (digest, size, metadata) is final.
		var apiErr *Error
		if errors.As(err, &apiErr) && apiErr.Status != http.StatusConflict && apiErr.Status < 500 {
			return PublishedArtifact{}, err
		}
		if failures++; failures > retries || ctx.Err() != nil {
			return PublishedArtifact{}, fmt.Errorf("upload %s stopped at %d of %d bytes: %w", u.ID, off, size, err)
		}
		cur, gerr := c.GetUpload(ctx, u.ID)
		if gerr != nil {
			continue
		}
		off = cur.Offset
	}
}

// ListArtifacts returns a page of the tenant's artifacts.
func (c *Client) ListArtifacts(ctx context.Context, f steward.ArtifactFilter) ([]steward.Artifact, string, error) {
	q := url.Values{}
	if f.Name != "" {
		q.Set("name", f.Name)
	}
	if f.Type != "" {
		q.Set("type", string(f.Type))
	}
	if f.After != "" {
		q.Set("after", f.After)
	}
	if f.Limit > 0 {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	var l list[steward.Artifact]
	err := c.do(ctx, http.MethodGet, "/api/v1/artifacts", q, nil, &l)
	return l.Items, l.NextAfter, err
}

// GetArtifact returns one artifact.
func (c *Client) GetArtifact(ctx context.Context, id string) (steward.Artifact, error) {
	var a steward.Artifact
	err := c.do(ctx, http.MethodGet, "/api/v1/artifacts/"+seg(id), nil, nil, &a)
	return a, err
}

// DeleteArtifact deletes an artifact.
func (c *Client) DeleteArtifact(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/artifacts/"+seg(id), nil, nil, nil)
}

// TUFRoot returns the tenant's newest TUF root metadata.
func (c *Client) TUFRoot(ctx context.Context) ([]byte, error) {
	return c.send(ctx, http.MethodGet, "/api/v1/tuf/root.json", nil, nil, "application/json")
}

// TUFTargets returns the tenant's newest TUF targets metadata.
func (c *Client) TUFTargets(ctx context.Context) ([]byte, error) {
	return c.send(ctx, http.MethodGet, "/api/v1/tuf/targets.json", nil, nil, "application/json")
}

// PublishTargets uploads targets metadata signed with the release key.
func (c *Client) PublishTargets(ctx context.Context, signed []byte) error {
	_, err := c.sendRaw(ctx, http.MethodPut, "/api/v1/tuf/targets.json", nil, strings.NewReader(string(signed)), int64(len(signed)),
		http.Header{"Content-Type": {"application/json"}}, nil)
	return err
}

// TUFOffline reports whether the repository is in offline targets mode.
func (c *Client) TUFOffline(ctx context.Context) (bool, error) {
	var st struct {
		Offline bool `json:"offline"`
	}
	err := c.do(ctx, http.MethodGet, "/api/v1/tuf", nil, nil, &st)
	return st.Offline, err
}

// RotateTUFRoot rotates the root key; targets is "" (keep the targets
// key), "release" (releaseKeyPEM becomes the only targets key: offline
// targets mode) or "server" (a new server key: online mode). It returns
// the new root metadata.
func (c *Client) RotateTUFRoot(ctx context.Context, targets, releaseKeyPEM string) ([]byte, error) {
	req := map[string]string{}
	if targets != "" {
		req["targets"] = targets
	}
	if releaseKeyPEM != "" {
		req["release_key"] = releaseKeyPEM
	}
	return c.send(ctx, http.MethodPost, "/api/v1/tuf/rotate-root", nil, req, "application/json")
}
