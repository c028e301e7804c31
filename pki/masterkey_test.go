package pki

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/steward-iot/steward"
)

func TestLoadOrCreateMasterKeyCreates(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "data", "master.key")
	key, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(key) != MasterKeySize {
		t.Fatalf("key is %d bytes", len(key))
	}
	if bytes.Equal(key, make([]byte, MasterKeySize)) {
		t.Fatal("key is all zeros")
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %04o, want 0600", perm)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, key) {
		t.Error("returned key differs from the file")
	}
	again, err := LoadOrCreateMasterKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, key) {
		t.Error("second load returned another key")
	}
	leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(path), ".master-key-*"))
	if err != nil || len(leftovers) != 0 {
		t.Errorf("temporary files left behind: %v %v", leftovers, err)
	}
}

func TestLoadOrCreateMasterKeyConcurrent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "master.key")
	const n = 8
	keys := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { keys[i], errs[i] = LoadOrCreateMasterKey(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatal("concurrent first starts got different keys")
		}
	}
}

func TestLoadOrCreateMasterKeyRefuses(t *testing.T) {
	t.Parallel()
	good := bytes.Repeat([]byte{7}, MasterKeySize)
	for _, tc := range []struct {
		name    string
		content []byte
		mode    os.FileMode
		want    string
	}{
		{"world readable", good, 0o644, "permissions 0644"},
		{"group readable", good, 0o640, "permissions 0640"},
		{"other writable", good, 0o602, "permissions 0602"},
		{"empty", nil, 0o600, "0 bytes long"},
		{"short", good[:31], 0o600, "31 bytes long"},
		{"long", append(bytes.Clone(good), '\n'), 0o600, "more than 32 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "master.key")
			if err := os.WriteFile(path, tc.content, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tc.mode); err != nil {
				t.Fatal(err)
			}
			key, err := LoadOrCreateMasterKey(path)
			wantCode(t, err, steward.CodeInvalid, tc.want)
			if key != nil {
				t.Error("a refused key file returned a key")
			}
			after, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(after, tc.content) {
				t.Error("the refused key file was changed")
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.mode {
				t.Errorf("mode changed to %04o", st.Mode().Perm())
			}
		})
	}
	t.Run("directory", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		if err := os.Chmod(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		_, err := LoadOrCreateMasterKey(dir)
		wantCode(t, err, steward.CodeInvalid, "not a regular file")
	})
}
