package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/updatetest"
	"github.com/steward-iot/steward/tufrepo"
)

type artifactAPI struct {
	env   *updatetest.Env
	url   string
	token string
}

func newArtifactAPI(t *testing.T) *artifactAPI {
	t.Helper()
	env := updatetest.New(t)
	token, _, err := CreateToken(t.Context(), env.Store, updatetest.Tenant, "admin", steward.RoleSystem, env.Clock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(Config{Store: env.Store, Artifacts: env.Artifacts, TUF: env.TUF, Clock: env.Clock}))
	t.Cleanup(srv.Close)
	return &artifactAPI{env: env, url: srv.URL, token: token}
}

func (a *artifactAPI) do(t *testing.T, method, path, ct string, body []byte, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, a.url+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+a.token)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

func hexSum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestArtifactUploadAPI(t *testing.T) {
	t.Parallel()
	a := newArtifactAPI(t)
	content := make([]byte, 3<<20) // over MaxBodyBytes: uploads stream without that limit
	_, _ = rand.Read(content)

	// Refused uploads store nothing.
	for _, tc := range []struct {
		name, query, ct string
		status          int
	}{
		{"not octet-stream", "?name=fw&version=1.0&type=firmware", "application/json", 415},
		{"no name", "?version=1.0&type=firmware", "application/octet-stream", 400},
		{"unknown type", "?name=fw&version=1.0&type=kernel", "application/octet-stream", 400},
		{"unknown parameter", "?name=fw&version=1.0&type=firmware&colour=red", "application/octet-stream", 400},
		{"digest mismatch", "?name=fw&version=1.0&type=firmware&sha256=" + hexSum([]byte("x")), "application/octet-stream", 400},
	} {
		if res, body := a.do(t, "POST", "/api/v1/artifacts"+tc.query, tc.ct, content); res.StatusCode != tc.status {
			t.Fatalf("%s: %s %s", tc.name, res.Status, body)
		}
	}
	if res, body := a.do(t, "GET", "/api/v1/artifacts", "", nil); res.StatusCode != 200 || !bytes.Contains(body, []byte(`"items":[]`)) {
		t.Fatalf("after refused uploads: %s %s", res.Status, body)
	}

	res, body := a.do(t, "POST", "/api/v1/artifacts?name=fw&version=1.0&type=firmware&compatible_model=gw-100,gw-200&sha256="+hexSum(content), "application/octet-stream", content)
	if res.StatusCode != 201 {
		t.Fatalf("upload: %s %s", res.Status, body)
	}
	var got struct {
		steward.Artifact
		Published bool `json:"published"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != hexSum(content) || got.Size != int64(len(content)) || !got.Published || len(got.CompatibleModels) != 2 {
		t.Fatalf("uploaded: %+v", got)
	}
	if res.Header.Get("Location") != "/api/v1/artifacts/"+got.ID {
		t.Fatalf("Location %q", res.Header.Get("Location"))
	}
	if res, _ := a.do(t, "POST", "/api/v1/artifacts?name=fw&version=1.0&type=firmware", "application/octet-stream", content); res.StatusCode != 409 {
		t.Fatalf("duplicate: %s", res.Status)
	}
	if res, body := a.do(t, "GET", "/api/v1/artifacts/"+got.ID, "", nil); res.StatusCode != 200 || !bytes.Contains(body, []byte(got.SHA256)) {
		t.Fatalf("get: %s %s", res.Status, body)
	}
	if res, _ := a.do(t, "DELETE", "/api/v1/artifacts/"+got.ID, "", nil); res.StatusCode != 204 {
		t.Fatalf("delete: %s", res.Status)
	}
	if res, _ := a.do(t, "GET", "/api/v1/artifacts/"+got.ID, "", nil); res.StatusCode != 404 {
		t.Fatalf("get after delete: %s", res.Status)
	}
}

func TestResumableUploadAPI(t *testing.T) {
	t.Parallel()
	a := newArtifactAPI(t)
	content := make([]byte, 2<<20+5)
	_, _ = rand.Read(content)
	req, _ := json.Marshal(map[string]any{"name": "fw", "version": "2.0", "type": "firmware", "length": len(content), "sha256": hexSum(content)})
	res, body := a.do(t, "POST", "/api/v1/uploads", "application/json", req)
	if res.StatusCode != 201 || res.Header.Get("Upload-Offset") != "0" {
		t.Fatalf("start: %s %s", res.Status, body)
	}
	loc := res.Header.Get("Location")
	half := len(content) / 2
	res, _ = a.do(t, "PATCH", loc, "application/octet-stream", content[:half], "Upload-Offset", "0")
	if res.StatusCode != 204 || res.Header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("first chunk: %s offset %s", res.Status, res.Header.Get("Upload-Offset"))
	}
	// A client that lost track sends from 0 again: 409 with the offset.
	res, _ = a.do(t, "PATCH", loc, "application/octet-stream", content, "Upload-Offset", "0")
	if res.StatusCode != 409 || res.Header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("stale offset: %s offset %s", res.Status, res.Header.Get("Upload-Offset"))
	}
	res, _ = a.do(t, "GET", loc, "", nil)
	if res.Header.Get("Upload-Offset") != strconv.Itoa(half) {
		t.Fatalf("GET offset %s", res.Header.Get("Upload-Offset"))
	}
	res, body = a.do(t, "PATCH", loc, "application/octet-stream", content[half:], "Upload-Offset", strconv.Itoa(half))
	if res.StatusCode != 201 || !bytes.Contains(body, []byte(hexSum(content))) {
		t.Fatalf("last chunk: %s %s", res.Status, body)
	}
	if res, _ := a.do(t, "PATCH", loc, "application/octet-stream", nil, "Upload-Offset", "x"); res.StatusCode != 400 && res.StatusCode != 404 {
		t.Fatalf("bad offset header: %s", res.Status)
	}
}

func TestTUFAPI(t *testing.T) {
	t.Parallel()
	a := newArtifactAPI(t)
	res, root := a.do(t, "GET", "/api/v1/tuf/root.json", "", nil)
	if res.StatusCode != 200 || !bytes.Contains(root, []byte(`"_type":"root"`)) {
		t.Fatalf("root: %s %.80s", res.Status, root)
	}
	pub, release, _ := ed25519.GenerateKey(rand.Reader)
	pemPub, _ := tufrepo.MarshalPublicKey(pub)
	bad, _ := json.Marshal(map[string]string{"targets": "release", "release_key": "not a key"})
	if res, _ := a.do(t, "POST", "/api/v1/tuf/rotate-root", "application/json", bad); res.StatusCode != 400 {
		t.Fatalf("bad release key: %s", res.Status)
	}
	if a.env.Root().Signed.Version != 1 {
		t.Fatal("a refused rotation changed the root")
	}
	body, _ := json.Marshal(map[string]string{"targets": "release", "release_key": string(pemPub)})
	if res, b := a.do(t, "POST", "/api/v1/tuf/rotate-root", "application/json", body); res.StatusCode != 200 || !bytes.Contains(b, []byte(`"version":2`)) {
		t.Fatalf("rotate: %s %.200s", res.Status, b)
	}
	if _, b := a.do(t, "GET", "/api/v1/tuf", "", nil); !bytes.Contains(b, []byte(`"offline":true`)) {
		t.Fatalf("status: %s", b)
	}
	// In offline mode an upload is stored, not published.
	res, b := a.do(t, "POST", "/api/v1/artifacts?name=fw&version=1.0&type=firmware", "application/octet-stream", []byte("image"))
	if res.StatusCode != 201 || !bytes.Contains(b, []byte(`"published":false`)) {
		t.Fatalf("offline upload: %s %s", res.Status, b)
	}
	var art steward.Artifact
	_ = json.Unmarshal(b, &art)
	_, cur := a.do(t, "GET", "/api/v1/tuf/targets.json", "", nil)
	signed, err := tufrepo.SignTargets(cur, []steward.Artifact{art}, nil, release, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if res, b := a.do(t, "PUT", "/api/v1/tuf/targets.json", "application/json", []byte(`{"signed":{}}`)); res.StatusCode != 400 {
		t.Fatalf("garbage targets: %s %s", res.Status, b)
	}
	if res, b := a.do(t, "PUT", "/api/v1/tuf/targets.json", "application/json", signed); res.StatusCode != 204 {
		t.Fatalf("publish: %s %s", res.Status, b)
	}
	if _, b := a.do(t, "GET", "/api/v1/tuf/targets.json", "", nil); !bytes.Contains(b, []byte(`"fw/1.0"`)) {
		t.Fatalf("published targets: %.300s", b)
	}
}

// TestArtifactsUnavailable: a node without the artifact service answers 503.
func TestArtifactsUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.call(t, "GET", "/api/v1/artifacts", e.system, nil)
	if r.status != 503 {
		t.Fatalf("status %d", r.status)
	}
}
