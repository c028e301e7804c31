package tenants

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testclock"
	"github.com/steward-iot/steward/sqlite"
)

// countingReader counts the reads that reach the store.
type countingReader struct {
	TenantReader
	reads atomic.Int64
}

func (r *countingReader) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	r.reads.Add(1)
	return r.TenantReader.GetTenant(ctx, id)
}

// statusStore is a SQLite store holding the default tenant and acme.
func statusStore(t testing.TB, now time.Time) steward.Store {
	t.Helper()
	ctx := context.Background()
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	for _, id := range []string{steward.DefaultTenant, acme} {
		if err := store.CreateTenant(ctx, steward.Tenant{ID: id, Name: id, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// TestStatusCacheTwoNodes: two nodes share a store, each with its own
// cache. A suspension made on node A is seen by A's next check, and by B's
// once B's entry is older than the TTL, not before; resuming likewise.
func TestStatusCacheTwoNodes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	store := statusStore(t, clock.Now())
	const ttl = 5 * time.Second
	readsA, readsB := &countingReader{TenantReader: store}, &countingReader{TenantReader: store}
	cacheA, cacheB := NewStatusCache(readsA, clock, ttl), NewStatusCache(readsB, clock, ttl)
	nodeA := New(Config{Store: store, Clock: clock, Statuses: cacheA})

	status := func(c *StatusCache) string {
		t.Helper()
		tn, err := c.GetTenant(ctx, acme)
		if err != nil {
			t.Fatal(err)
		}
		return tn.Status
	}
	for _, c := range []*StatusCache{cacheA, cacheB} {
		for range 3 {
			if s := status(c); s != steward.TenantActive {
				t.Fatalf("before: %s", s)
			}
		}
	}
	if readsA.reads.Load() != 1 || readsB.reads.Load() != 1 {
		t.Fatalf("three checks read the store %d and %d times, want once each", readsA.reads.Load(), readsB.reads.Load())
	}

	for _, step := range []struct {
		name string
		do   func() (steward.Tenant, error)
		want string
	}{
		{"suspend", func() (steward.Tenant, error) {
			return nodeA.Suspend(ctx, acme, "unpaid", "token:sys1", steward.DefaultTenant)
		}, steward.TenantSuspended},
		{"resume", func() (steward.Tenant, error) { return nodeA.Resume(ctx, acme, "token:sys1", steward.DefaultTenant) }, steward.TenantActive},
	} {
		t.Run(step.name, func(t *testing.T) {
			clock.Add(time.Second) // B's entry is fresh, read a second ago
			if s := status(cacheB); s == step.want {
				t.Fatalf("B already says %s before the change", s)
			}
			if _, err := step.do(); err != nil {
				t.Fatal(err)
			}
			if s := status(cacheA); s != step.want {
				t.Fatalf("node A, at once: %s, want %s", s, step.want)
			}
			if s := status(cacheB); s == step.want {
				t.Fatalf("node B read the store within its TTL (says %s): the cache did not cache", s)
			}
			clock.Add(ttl - time.Second - time.Nanosecond)
			if s := status(cacheB); s == step.want {
				t.Fatalf("node B just inside the TTL says %s", s)
			}
			clock.Add(time.Nanosecond)
			if s := status(cacheB); s != step.want {
				t.Fatalf("node B after the TTL: %s, want %s", s, step.want)
			}
		})
	}
}

// TestStatusCacheErrors: an unknown tenant is an error every time, and is
// not kept: once created it is found at once.
func TestStatusCacheErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	store := statusStore(t, clock.Now())
	c := NewStatusCache(store, clock, 0)
	for range 2 {
		if _, err := c.GetTenant(ctx, "later"); !steward.IsNotFound(err) {
			t.Fatalf("unknown tenant: %v", err)
		}
	}
	if err := store.CreateTenant(ctx, steward.Tenant{ID: "later", Name: "later", CreatedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	if tn, err := c.GetTenant(ctx, "later"); err != nil || tn.Status != steward.TenantActive {
		t.Fatalf("created: %+v, %v", tn, err)
	}
}

// BenchmarkTenantCheck is the per-request check, read from the store each
// time (as before the cache) and through the cache.
func BenchmarkTenantCheck(b *testing.B) {
	ctx := context.Background()
	store := statusStore(b, time.Now())
	for _, bc := range []struct {
		name string
		r    TenantReader
	}{{"store", store}, {"cached", NewStatusCache(store, nil, 0)}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.r.GetTenant(ctx, acme); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
