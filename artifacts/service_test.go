package artifacts_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/updatetest"
)

const tenant = updatetest.Tenant

func wantCode(t *testing.T, err error, code steward.Code) {
	t.Helper()
	if got := steward.ErrorCode(err); got != code {
		t.Fatalf("got %v (%s), want %s", err, got, code)
	}
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func meta(name, version string) steward.Artifact {
	return steward.Artifact{TenantID: tenant, Name: name, Version: version, Type: steward.ArtifactFirmware,
		CompatibleModels: []string{"gw-100"}, ReleaseNotes: "notes"}
}

// nothingStored fails unless the store has no artifacts and the blob
// directory no content or partial uploads.
func nothingStored(t *testing.T, env *updatetest.Env) {
	t.Helper()
	as, err := env.Store.ListArtifacts(t.Context(), tenant, steward.ArtifactFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(as) != 0 {
		t.Fatalf("artifacts stored: %+v", as)
	}
	var files []string
	_ = filepath.WalkDir(env.BlobDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if len(files) != 0 {
		t.Fatalf("blob files left: %v", files)
	}
}

func TestUploadRefused(t *testing.T) {
	t.Parallel()
	content := []byte("firmware image")
	cases := []struct {
		name string
		meta steward.Artifact
		want string
		code steward.Code
	}{
		{"no name", meta("", "1.0"), "", steward.CodeInvalid},
		{"bad version", meta("fw", "../1"), "", steward.CodeInvalid},
		{"unknown type", func() steward.Artifact { m := meta("fw", "1.0"); m.Type = "kernel"; return m }(), "", steward.CodeInvalid},
		{"bad digest", meta("fw", "1.0"), "xyz", steward.CodeInvalid},
		{"digest mismatch", meta("fw", "1.0"), sum([]byte("other")), steward.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := updatetest.New(t)
			_, err := env.Artifacts.Upload(t.Context(), tc.meta, bytes.NewReader(content), tc.want, "token:t")
			wantCode(t, err, tc.code)
			nothingStored(t, env)
		})
	}
}

func TestUploadDuplicate(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	a := env.Upload("fw", "1.0", []byte("one"))
	_, err := env.Artifacts.Upload(t.Context(), meta("fw", "1.0"), bytes.NewReader([]byte("two")), "", "token:t")
	wantCode(t, err, steward.CodeConflict)
	// The first is untouched, and the second's content was not kept.
	if _, err := env.Blobs.Stat(t.Context(), a.SHA256); err != nil {
		t.Fatal(err)
	}
	_, err = env.Blobs.Stat(t.Context(), sum([]byte("two")))
	wantCode(t, err, steward.CodeNotFound)
	// The same content under another version shares the blob; deleting
	// one keeps it for the other.
	b := env.Upload("fw", "1.1", []byte("one"))
	if err := env.Artifacts.Delete(t.Context(), tenant, a.ID, "token:t"); err != nil {
		t.Fatal(err)
	}
	if _, err := env.Blobs.Stat(t.Context(), b.SHA256); err != nil {
		t.Fatalf("shared blob dropped: %v", err)
	}
	if err := env.Artifacts.Delete(t.Context(), tenant, b.ID, "token:t"); err != nil {
		t.Fatal(err)
	}
	nothingStored(t, env)
}

type cutReader struct {
	r io.Reader
}

func (c cutReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

func TestResumableUpload(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	content := make([]byte, 5<<20)
	_, _ = rand.Read(content)
	u, err := env.Artifacts.StartUpload(t.Context(), meta("fw", "3.0"), int64(len(content)), sum(content), "token:t")
	if err != nil {
		t.Fatal(err)
	}
	// The first request is cut after 2 MiB: those bytes are kept.
	got, p, err := env.Artifacts.AppendUpload(t.Context(), tenant, u.ID, 0, cutReader{bytes.NewReader(content[:2<<20])}, "token:t")
	if err == nil || p != nil || got.Offset != 2<<20 {
		t.Fatalf("cut chunk: offset %d, %v, %v", got.Offset, p, err)
	}
	cur, err := env.Artifacts.GetUpload(t.Context(), tenant, u.ID)
	if err != nil || cur.Offset != 2<<20 {
		t.Fatalf("upload after the cut: %+v %v", cur, err)
	}
	// Resuming at the wrong offset is refused.
	_, _, err = env.Artifacts.AppendUpload(t.Context(), tenant, u.ID, 0, bytes.NewReader(content), "token:t")
	wantCode(t, err, steward.CodeConflict)
	_, p, err = env.Artifacts.AppendUpload(t.Context(), tenant, u.ID, cur.Offset, bytes.NewReader(content[cur.Offset:]), "token:t")
	if err != nil || p == nil {
		t.Fatalf("last chunk: %v %v", p, err)
	}
	if p.SHA256 != sum(content) || p.Size != int64(len(content)) || !p.Published {
		t.Fatalf("artifact = %+v", p)
	}
	_, err = env.Artifacts.GetUpload(t.Context(), tenant, u.ID)
	wantCode(t, err, steward.CodeNotFound)

	// An upload whose content is not the announced digest is dropped.
	u2, err := env.Artifacts.StartUpload(t.Context(), meta("fw", "3.1"), 3, sum([]byte("abc")), "token:t")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = env.Artifacts.AppendUpload(t.Context(), tenant, u2.ID, 0, strings.NewReader("abd"), "token:t")
	wantCode(t, err, steward.CodeInvalid)
	_, err = env.Store.ArtifactByTarget(t.Context(), tenant, "fw", "3.1")
	wantCode(t, err, steward.CodeNotFound)
	// More than announced is refused and leaves the upload where it was.
	u3, err := env.Artifacts.StartUpload(t.Context(), meta("fw", "3.2"), 3, "", "token:t")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = env.Artifacts.AppendUpload(t.Context(), tenant, u3.ID, 0, strings.NewReader("abcd"), "token:t")
	wantCode(t, err, steward.CodeTooLarge)
	if cur, _ := env.Artifacts.GetUpload(t.Context(), tenant, u3.ID); cur.Offset != 0 {
		t.Fatalf("refused chunk moved the upload to %d", cur.Offset)
	}
	if err := env.Artifacts.CancelUpload(t.Context(), tenant, u3.ID); err != nil {
		t.Fatal(err)
	}
	_, err = env.Artifacts.StartUpload(t.Context(), meta("fw", "3.0"), 3, "", "token:t")
	wantCode(t, err, steward.CodeConflict)
	_, err = env.Artifacts.StartUpload(t.Context(), meta("fw", "9"), env.Artifacts.MaxSize()+1, "", "token:t")
	wantCode(t, err, steward.CodeTooLarge)
}

func TestDeviceDownloads(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	dev := env.Device("d-dev1")
	other := env.Device("d-dev2")
	content := make([]byte, 1<<20)
	_, _ = rand.Read(content)
	a := env.Upload("fw", "1.0", content)
	if err := env.Store.GrantArtifact(t.Context(), tenant, "d-dev1", a.ID); err != nil {
		t.Fatal(err)
	}
	get := func(c *http.Client, path string, hdr ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, env.URL+path, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, b
	}
	res, body := get(dev, "/artifacts/"+a.SHA256)
	if res.StatusCode != 200 || !bytes.Equal(body, content) || res.Header.Get("Accept-Ranges") != "bytes" {
		t.Fatalf("granted download: %s, %d bytes", res.Status, len(body))
	}
	res, body = get(dev, "/artifacts/"+a.SHA256, "Range", "bytes=1000-1999", "If-Range", `"`+a.SHA256+`"`)
	if res.StatusCode != 206 || !bytes.Equal(body, content[1000:2000]) {
		t.Fatalf("range: %s %d bytes", res.Status, len(body))
	}
	// The hash-prefixed target path serves the same bytes.
	res, body = get(dev, "/tuf/"+tenant+"/targets/fw/"+a.SHA256+".1.0")
	if res.StatusCode != 200 || !bytes.Equal(body, content) {
		t.Fatalf("target path: %s", res.Status)
	}
	for _, tc := range []struct {
		name   string
		client *http.Client
		path   string
		status int
	}{
		{"not granted", other, "/artifacts/" + a.SHA256, 404},
		{"no certificate", env.Anonymous(), "/artifacts/" + a.SHA256, 401},
		{"no certificate, metadata", env.Anonymous(), "/tuf/" + tenant + "/timestamp.json", 401},
		{"unknown digest", dev, "/artifacts/" + sum([]byte("x")), 404},
		{"not a digest", dev, "/artifacts/..%2f..%2fetc", 404},
		{"target path of another artifact", dev, "/tuf/" + tenant + "/targets/fw/" + a.SHA256 + ".2.0", 404},
		{"target not granted", other, "/tuf/" + tenant + "/targets/fw/" + a.SHA256 + ".1.0", 404},
		{"another tenant's repository", dev, "/tuf/other/timestamp.json", 404},
		{"unknown root version", dev, "/tuf/" + tenant + "/9.root.json", 404},
		{"versioned timestamp", dev, "/tuf/" + tenant + "/1.timestamp.json", 404},
		{"not metadata", dev, "/tuf/" + tenant + "/mirror.json", 404},
	} {
		if res, _ := get(tc.client, tc.path); res.StatusCode != tc.status {
			t.Errorf("%s: %s, want %d", tc.name, res.Status, tc.status)
		}
	}
	for _, p := range []string{"/tuf/" + tenant + "/1.root.json", "/tuf/" + tenant + "/timestamp.json", "/tuf/" + tenant + "/1.snapshot.json",
		"/tuf/" + tenant + "/2.targets.json", "/.well-known/steward/tuf-root"} {
		if res, body := get(dev, p); res.StatusCode != 200 || !bytes.HasPrefix(body, []byte(`{"signatures"`)) {
			t.Errorf("%s: %s %.40s", p, res.Status, body)
		}
	}
}

// BenchmarkDeviceDownload is one device fetching a 4 MiB artifact over a
// kept-alive mTLS connection: authentication, grant lookup and the bytes.
func BenchmarkDeviceDownload(b *testing.B) {
	env := updatetest.New(b)
	dev := env.Device("d-dev1")
	content := make([]byte, 4<<20)
	_, _ = rand.Read(content)
	a := env.Upload("fw", "1.0", content)
	if err := env.Store.GrantArtifact(b.Context(), tenant, "d-dev1", a.ID); err != nil {
		b.Fatal(err)
	}
	url := env.URL + "/artifacts/" + a.SHA256
	b.SetBytes(int64(len(content)))
	for b.Loop() {
		res, err := dev.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || n != int64(len(content)) {
			b.Fatalf("%s, %d bytes", res.Status, n)
		}
	}
}

// TestDeleteRacesUpload: deleting the last artifact with some content
// while the same content is uploaded again never leaves an artifact whose
// content is gone.
func TestDeleteRacesUpload(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	content := []byte("the same image")
	for i := range 15 {
		old := env.Upload("fw", "old-"+itoa(i), content)
		done := make(chan error, 1)
		go func() { done <- env.Artifacts.Delete(t.Context(), tenant, old.ID, "token:t") }()
		p, err := env.Artifacts.Upload(t.Context(), meta("fw", "new-"+itoa(i)), bytes.NewReader(content), "", "token:t")
		if derr := <-done; derr != nil {
			t.Fatal(derr)
		}
		if err != nil {
			// Refused because the content went in between: nothing recorded.
			wantCode(t, err, steward.CodeUnavailable)
			if _, gerr := env.Store.ArtifactByTarget(t.Context(), tenant, "fw", "new-"+itoa(i)); !steward.IsNotFound(gerr) {
				t.Fatalf("a refused upload was recorded: %v", gerr)
			}
			continue
		}
		if _, err := env.Blobs.Stat(t.Context(), p.SHA256); err != nil {
			t.Fatalf("round %d: artifact %s has no content: %v", i, p.ID, err)
		}
		if err := env.Artifacts.Delete(t.Context(), tenant, p.ID, "token:t"); err != nil {
			t.Fatal(err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
