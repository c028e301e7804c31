// Package fsblob is steward.BlobStore on a local directory: the embedded
// store of artifact content. Content lives under its SHA-256,
//
//	<dir>/sha256/ab/abcdef…        (the first two hex digits fan out)
//	<dir>/uploads/<id>             (the partial content of resumable uploads)
//	<dir>/tmp/                     (content being written by Put)
//
// A file is written in full and fsynced under a temporary name, then renamed
// into place, and the directory is fsynced, so that a crash never leaves a
// short file under a digest: a digest's file is complete or absent.
package fsblob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/steward-iot/steward"
)

// Store is a content-addressed directory. It is safe for concurrent use,
// also by several processes sharing the directory: every change is a
// rename of a complete file.
type Store struct {
	dir string
}

var _ steward.BlobStore = (*Store)(nil)

// Open returns the store in dir, creating its directories (mode 0700).
func Open(dir string) (*Store, error) {
	for _, sub := range []string{"sha256", "uploads", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create blob directory: %w", err)
		}
	}
	return &Store{dir: dir}, nil
}

func (s *Store) path(sum string) (string, error) {
	if !steward.ValidSHA256(sum) {
		return "", steward.Errorf(steward.CodeInvalid, "%q is not a lower-case hex SHA-256", sum)
	}
	return filepath.Join(s.dir, "sha256", sum[:2], sum), nil
}

func (s *Store) uploadPath(id string) (string, error) {
	if id == "" || strings.ContainsAny(id, `/\`) || strings.HasPrefix(id, ".") || len(id) > 128 {
		return "", steward.Errorf(steward.CodeInvalid, "upload ID %q is not a plain name", id)
	}
	return filepath.Join(s.dir, "uploads", id), nil
}

// Put implements steward.BlobStore.
func (s *Store) Put(ctx context.Context, r io.Reader, wantSHA256 string, maxSize int64) (steward.BlobInfo, error) {
	if wantSHA256 != "" && !steward.ValidSHA256(wantSHA256) {
		return steward.BlobInfo{}, steward.Errorf(steward.CodeInvalid, "expected digest %q is not a lower-case hex SHA-256", wantSHA256)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "put-*")
	if err != nil {
		return steward.BlobInfo{}, fmt.Errorf("create blob: %w", err)
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name()) // after the rename this finds nothing
	}()
	h := sha256.New()
	n, err := copyLimited(ctx, io.MultiWriter(tmp, h), r, maxSize)
	if err != nil {
		return steward.BlobInfo{}, err
	}
	info := steward.BlobInfo{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	if wantSHA256 != "" && info.SHA256 != wantSHA256 {
		return steward.BlobInfo{}, steward.Errorf(steward.CodeInvalid, "content has SHA-256 %s, not the %s announced", info.SHA256, wantSHA256)
	}
	if err := tmp.Sync(); err != nil {
		return steward.BlobInfo{}, fmt.Errorf("write blob: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return steward.BlobInfo{}, fmt.Errorf("write blob: %w", err)
	}
	return info, s.place(tmp.Name(), info.SHA256)
}

// place renames a complete, synced file to its digest's name. Content
// already there is the same bytes (same digest), so it is kept as it is.
func (s *Store) place(from, sum string) error {
	to, err := s.path(sum)
	if err != nil {
		return err
	}
	if _, err := os.Stat(to); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o700); err != nil {
		return fmt.Errorf("store blob %s: %w", sum, err)
	}
	if err := os.Rename(from, to); err != nil {
		return fmt.Errorf("store blob %s: %w", sum, err)
	}
	return syncDir(filepath.Dir(to))
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// copyLimited copies r to w, stopping with CodeTooLarge past maxSize bytes
// (when positive) and with the context's error when it is cancelled.
func copyLimited(ctx context.Context, w io.Writer, r io.Reader, maxSize int64) (int64, error) {
	if maxSize > 0 {
		r = io.LimitReader(r, maxSize+1)
	}
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		k, rerr := r.Read(buf)
		if k > 0 {
			if maxSize > 0 && n+int64(k) > maxSize {
				return n, steward.Errorf(steward.CodeTooLarge, "content is larger than the limit of %d bytes", maxSize)
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return n, fmt.Errorf("write blob: %w", err)
			}
			n += int64(k)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, fmt.Errorf("read content: %w", rerr)
		}
	}
}

// Open implements steward.BlobStore.
func (s *Store) Open(_ context.Context, sum string) (steward.Blob, steward.BlobInfo, error) {
	p, err := s.path(sum)
	if err != nil {
		return nil, steward.BlobInfo{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, steward.BlobInfo{}, steward.Errorf(steward.CodeNotFound, "blob %s not found", sum)
	}
	if err != nil {
		return nil, steward.BlobInfo{}, fmt.Errorf("open blob %s: %w", sum, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, steward.BlobInfo{}, fmt.Errorf("stat blob %s: %w", sum, err)
	}
	return f, steward.BlobInfo{SHA256: sum, Size: st.Size()}, nil
}

// Stat implements steward.BlobStore.
func (s *Store) Stat(_ context.Context, sum string) (steward.BlobInfo, error) {
	p, err := s.path(sum)
	if err != nil {
		return steward.BlobInfo{}, err
	}
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return steward.BlobInfo{}, steward.Errorf(steward.CodeNotFound, "blob %s not found", sum)
	}
	if err != nil {
		return steward.BlobInfo{}, fmt.Errorf("stat blob %s: %w", sum, err)
	}
	return steward.BlobInfo{SHA256: sum, Size: st.Size()}, nil
}

// Delete implements steward.BlobStore.
func (s *Store) Delete(_ context.Context, sum string) error {
	p, err := s.path(sum)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", sum, err)
	}
	return nil
}

// AppendUpload implements steward.BlobStore. The partial file is synced
// before it returns, also after a read error part way, so that the size it
// reports is what a resumed upload continues from.
func (s *Store) AppendUpload(ctx context.Context, id string, offset int64, r io.Reader, maxSize int64) (int64, error) {
	p, err := s.uploadPath(id)
	if err != nil {
		return 0, err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return 0, fmt.Errorf("open upload %s: %w", id, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat upload %s: %w", id, err)
	}
	if st.Size() != offset {
		return st.Size(), steward.Errorf(steward.CodeConflict, "upload %s has %d bytes, not %d", id, st.Size(), offset)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return offset, fmt.Errorf("seek upload %s: %w", id, err)
	}
	limit := int64(0)
	if maxSize > 0 {
		limit = maxSize - offset
		if limit <= 0 {
			limit = -1
		}
	}
	var n int64
	var cerr error
	if limit < 0 {
		cerr = steward.Errorf(steward.CodeTooLarge, "upload %s is already %d bytes, its limit", id, offset)
	} else {
		n, cerr = copyLimited(ctx, f, r, limit)
	}
	if steward.ErrorCode(cerr) == steward.CodeTooLarge {
		// Past the limit: drop what this request added, so the upload
		// stays where it was.
		if err := f.Truncate(offset); err != nil {
			return offset, fmt.Errorf("truncate upload %s: %w", id, err)
		}
		n = 0
	}
	if err := f.Sync(); err != nil {
		return offset, fmt.Errorf("sync upload %s: %w", id, err)
	}
	return offset + n, cerr
}

// CommitUpload implements steward.BlobStore.
func (s *Store) CommitUpload(ctx context.Context, id, wantSHA256 string) (steward.BlobInfo, error) {
	p, err := s.uploadPath(id)
	if err != nil {
		return steward.BlobInfo{}, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		// Nothing was appended: an empty artifact.
		if f, err = os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600); err != nil {
			return steward.BlobInfo{}, fmt.Errorf("open upload %s: %w", id, err)
		}
	} else if err != nil {
		return steward.BlobInfo{}, fmt.Errorf("open upload %s: %w", id, err)
	}
	h := sha256.New()
	n, err := hashFile(ctx, h, f)
	f.Close()
	if err != nil {
		return steward.BlobInfo{}, err
	}
	info := steward.BlobInfo{SHA256: hex.EncodeToString(h.Sum(nil)), Size: n}
	if wantSHA256 != "" && info.SHA256 != wantSHA256 {
		return steward.BlobInfo{}, steward.Errorf(steward.CodeInvalid, "uploaded content has SHA-256 %s, not the %s announced", info.SHA256, wantSHA256)
	}
	if err := s.place(p, info.SHA256); err != nil {
		return steward.BlobInfo{}, err
	}
	_ = os.Remove(p) // left over when the content was already stored
	return info, nil
}

func hashFile(ctx context.Context, h hash.Hash, f *os.File) (int64, error) {
	return copyLimited(ctx, h, f, 0)
}

// AbortUpload implements steward.BlobStore.
func (s *Store) AbortUpload(_ context.Context, id string) error {
	p, err := s.uploadPath(id)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("drop upload %s: %w", id, err)
	}
	return nil
}
