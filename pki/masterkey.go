package pki

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/steward-iot/steward"
)

// MasterKeySize is the length of the key-encryption key in bytes (AES-256).
const MasterKeySize = 32

// LoadOrCreateMasterKey reads the key-encryption key from path, or creates
// it (32 random bytes, mode 0600) when the file does not exist. A file that
// group or others may read or write, or that is not exactly MasterKeySize
// bytes long, is refused: a leaked or truncated key must stop the server
// rather than be used.
func LoadOrCreateMasterKey(path string) ([]byte, error) {
	key, err := readMasterKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create master key directory: %w", err)
	}
	key = make([]byte, MasterKeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	// Write a temporary file and link it into place: the link is atomic and
	// fails when the name exists, so a crash never leaves a short key file
	// and two processes starting at once end up with one key.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".master-key-*")
	if err != nil {
		return nil, fmt.Errorf("create master key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if _, err := tmp.Write(key); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write master key: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write master key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write master key: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readMasterKey(path) // another process won the race
		}
		return nil, fmt.Errorf("create master key: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync() // make the new name durable; best effort on filesystems without directory sync
		d.Close()
	}
	return key, nil
}

func readMasterKey(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("open master key: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat master key: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, steward.Errorf(steward.CodeInvalid, "master key %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, steward.Errorf(steward.CodeInvalid,
			"master key %s has permissions %04o: it must not be readable or writable by group or others (chmod 600 %s)", path, perm, path)
	}
	key, err := io.ReadAll(io.LimitReader(f, MasterKeySize+1))
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	if len(key) != MasterKeySize {
		return nil, steward.Errorf(steward.CodeInvalid, "master key %s is %s long; it must be exactly %d bytes", path, sizeText(len(key), MasterKeySize), MasterKeySize)
	}
	return key, nil
}

func sizeText(n, limit int) string {
	if n > limit {
		return fmt.Sprintf("more than %d bytes", limit)
	}
	return fmt.Sprintf("%d bytes", n)
}

// ParseMasterKey decodes a key-encryption key given as text (from an
// environment variable, say): standard base64 or hex of exactly
// MasterKeySize bytes.
func ParseMasterKey(text string) ([]byte, error) {
	text = strings.TrimSpace(text)
	if key, err := hex.DecodeString(text); err == nil && len(key) == MasterKeySize {
		return key, nil
	}
	if key, err := base64.StdEncoding.DecodeString(text); err == nil && len(key) == MasterKeySize {
		return key, nil
	}
	return nil, steward.Errorf(steward.CodeInvalid, "master key must be %d bytes in base64 or hex", MasterKeySize)
}
