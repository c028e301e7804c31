package fsblob

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func open(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func wantCode(t *testing.T, err error, code steward.Code) {
	t.Helper()
	if got := steward.ErrorCode(err); got != code {
		t.Fatalf("got %v (%s), want %s", err, got, code)
	}
}

// files lists every regular file under dir, so a test can see that a
// refused write left nothing behind.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			out = append(out, strings.TrimPrefix(p, dir))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPutOpen(t *testing.T) {
	t.Parallel()
	s, _ := open(t)
	content := bytes.Repeat([]byte("firmware"), 100000)
	info, err := s.Put(t.Context(), bytes.NewReader(content), sum(content), 0)
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != sum(content) || info.Size != int64(len(content)) {
		t.Fatalf("info = %+v", info)
	}
	// The same content again is stored once, without error.
	if _, err := s.Put(t.Context(), bytes.NewReader(content), "", 0); err != nil {
		t.Fatal(err)
	}
	b, info2, err := s.Open(t.Context(), info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if info2 != info {
		t.Fatalf("Open info = %+v, want %+v", info2, info)
	}
	part := make([]byte, 8)
	if _, err := b.ReadAt(part, 8*500); err != nil || string(part) != "firmware" {
		t.Fatalf("ReadAt = %q, %v", part, err)
	}
	all, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(all, content) {
		t.Fatalf("content differs (%d bytes, %v)", len(all), err)
	}
	if st, err := s.Stat(t.Context(), info.SHA256); err != nil || st != info {
		t.Fatalf("Stat = %+v, %v", st, err)
	}
	if err := s.Delete(t.Context(), info.SHA256); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), info.SHA256); err != nil {
		t.Fatalf("second delete: %v", err)
	}
	_, _, err = s.Open(t.Context(), info.SHA256)
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.Stat(t.Context(), info.SHA256)
	wantCode(t, err, steward.CodeNotFound)
}

func TestPutRefused(t *testing.T) {
	t.Parallel()
	content := []byte("some firmware image")
	cases := []struct {
		name string
		want string
		max  int64
		code steward.Code
	}{
		{"wrong digest", sum([]byte("other")), 0, steward.CodeInvalid},
		{"bad digest", "ABC", 0, steward.CodeInvalid},
		{"too large", "", int64(len(content)) - 1, steward.CodeTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, dir := open(t)
			_, err := s.Put(t.Context(), bytes.NewReader(content), tc.want, tc.max)
			wantCode(t, err, tc.code)
			if f := files(t, dir); len(f) != 0 {
				t.Fatalf("a refused Put left %v", f)
			}
		})
	}
	// Exactly the limit is fine.
	s, _ := open(t)
	if _, err := s.Put(t.Context(), bytes.NewReader(content), "", int64(len(content))); err != nil {
		t.Fatal(err)
	}
	_, _, err := s.Open(t.Context(), "../../etc/passwd")
	wantCode(t, err, steward.CodeInvalid)
}

// failingReader returns its bytes, then an error, like a cut connection.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset")
	}
	return n, err
}

func TestUploadResume(t *testing.T) {
	t.Parallel()
	s, dir := open(t)
	content := bytes.Repeat([]byte("0123456789"), 10000)
	// The first request is cut after 30000 bytes: they are kept.
	n, err := s.AppendUpload(t.Context(), "up-1", 0, failingReader{bytes.NewReader(content[:30000])}, 0)
	if err == nil || n != 30000 {
		t.Fatalf("cut append = %d, %v; want 30000 and an error", n, err)
	}
	// A writer that thinks it is elsewhere is refused.
	_, err = s.AppendUpload(t.Context(), "up-1", 10, bytes.NewReader(content), 0)
	wantCode(t, err, steward.CodeConflict)
	// Past the limit: refused, and the upload stays at 30000.
	n, err = s.AppendUpload(t.Context(), "up-1", 30000, bytes.NewReader(content[30000:]), 50000)
	wantCode(t, err, steward.CodeTooLarge)
	if n != 30000 {
		t.Fatalf("after a refused append the upload is at %d", n)
	}
	n, err = s.AppendUpload(t.Context(), "up-1", 30000, bytes.NewReader(content[30000:]), int64(len(content)))
	if err != nil || n != int64(len(content)) {
		t.Fatalf("resumed append = %d, %v", n, err)
	}
	_, err = s.CommitUpload(t.Context(), "up-1", sum([]byte("other")))
	wantCode(t, err, steward.CodeInvalid)
	info, err := s.CommitUpload(t.Context(), "up-1", sum(content))
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Open(t.Context(), info.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(b)
	b.Close()
	if !bytes.Equal(got, content) {
		t.Fatal("committed content differs")
	}
	if f := files(t, filepath.Join(dir, "uploads")); len(f) != 0 {
		t.Fatalf("commit left %v", f)
	}
	_, err = s.AppendUpload(t.Context(), "../x", 0, bytes.NewReader(nil), 0)
	wantCode(t, err, steward.CodeInvalid)
	if _, err := s.AppendUpload(t.Context(), "up-2", 0, bytes.NewReader([]byte("x")), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortUpload(t.Context(), "up-2"); err != nil {
		t.Fatal(err)
	}
	if f := files(t, filepath.Join(dir, "uploads")); len(f) != 0 {
		t.Fatalf("abort left %v", f)
	}
}
