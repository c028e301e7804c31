package sqlite

import (
	"path/filepath"
	"testing"
)

// TestOptions checks that the page cache and memory map reach the write
// connection.
func TestOptions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		opts         Options
		wantCacheKiB int64 // PRAGMA cache_size: negative KiB
		wantMmap     int64
	}{
		{"defaults", Options{}, -DefaultCacheSize / 1024, 0},
		{"set", Options{CacheSize: 32 << 20, MmapSize: 8 << 20}, -32 << 10, 8 << 20},
		{"tiny cache, negative mmap", Options{CacheSize: 100, MmapSize: -1}, -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := OpenWith(t.Context(), filepath.Join(t.TempDir(), "steward.db"), tc.opts, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var cache, mmap int64
			if err := s.DB().QueryRowContext(t.Context(), "PRAGMA cache_size").Scan(&cache); err != nil {
				t.Fatal(err)
			}
			if err := s.DB().QueryRowContext(t.Context(), "PRAGMA mmap_size").Scan(&mmap); err != nil {
				t.Fatal(err)
			}
			if cache != tc.wantCacheKiB || mmap != tc.wantMmap {
				t.Fatalf("cache_size %d, mmap_size %d; want %d, %d", cache, mmap, tc.wantCacheKiB, tc.wantMmap)
			}
		})
	}
}
