package main

import (
	"bytes"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward/server"
	"github.com/steward-iot/steward/sqlite"
)

func TestSQLiteCacheSizeFlag(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want int64
	}{
		{"default", nil, sqlite.DefaultCacheSize},
		{"set", []string{"--sqlite-cache-size", "67108864"}, 64 << 20},
		{"the smallest", []string{"--sqlite-cache-size=1048576"}, 1 << 20},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			fs := flag.NewFlagSet("serve", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			var cfg server.Config
			serverFlags(fs, &cfg, "data")
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			if cfg.SQLiteCacheSize != tc.want {
				t.Fatalf("SQLiteCacheSize = %d, want %d", cfg.SQLiteCacheSize, tc.want)
			}
		})
	}
}

// TestServeRefusesBadCacheSize checks that a bad --sqlite-cache-size stops
// serve before it creates anything, saying what it wants.
func TestServeRefusesBadCacheSize(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"-1", "0", "1000", "64MiB", ""} {
		t.Run(v, func(t *testing.T) {
			t.Parallel()
			data := filepath.Join(t.TempDir(), "data")
			var stdout, stderr bytes.Buffer
			code := serve(t.Context(), []string{"--data", data, "--sqlite-cache-size", v}, &stdout, &stderr)
			if code != 2 || !strings.Contains(stderr.String(), "at least 1048576") {
				t.Fatalf("serve --sqlite-cache-size %q: exit %d, stderr %q; want 2 and what it wants", v, code, stderr.String())
			}
			if _, err := os.Stat(data); !os.IsNotExist(err) {
				t.Fatalf("a refused serve created its data directory: %v", err)
			}
		})
	}
}
