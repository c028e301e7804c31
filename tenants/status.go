package tenants

import (
	"context"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// DefaultStatusTTL is how long a StatusCache trusts a tenant it read: the
// longest a suspension made on another node of a cluster goes unseen here.
const DefaultStatusTTL = 5 * time.Second

// TenantReader reads one tenant (steward.Store does).
type TenantReader interface {
	GetTenant(ctx context.Context, id string) (steward.Tenant, error)
}

// StatusCache answers the check that every API request and every device
// handshake makes, that the tenant is not suspended, from memory: a tenant
// read from the store is trusted for the TTL. The node that suspends or
// resumes a tenant forgets it at once (Service does), so the change
// applies on that node with the next request; other nodes sharing the
// store see it within the TTL. Errors, and unknown tenants, are not kept:
// the next check reads the store again.
type StatusCache struct {
	store TenantReader
	clock steward.Clock
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]statusEntry
	// gen counts Forget calls, so that a read of the store that began
	// before a suspension is not kept after it.
	gen uint64
}

type statusEntry struct {
	t  steward.Tenant
	at time.Time
}

// NewStatusCache builds a cache over store; a ttl of 0 means
// DefaultStatusTTL, and a nil clock the system clock.
func NewStatusCache(store TenantReader, clock steward.Clock, ttl time.Duration) *StatusCache {
	if clock == nil {
		clock = steward.SystemClock{}
	}
	if ttl <= 0 {
		ttl = DefaultStatusTTL
	}
	return &StatusCache{store: store, clock: clock, ttl: ttl, entries: map[string]statusEntry{}}
}

// GetTenant returns the tenant, from memory when it was read less than the
// TTL ago.
func (c *StatusCache) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	now := c.clock.Now()
	c.mu.Lock()
	e, ok := c.entries[id]
	gen := c.gen
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < c.ttl {
		return e.t, nil
	}
	t, err := c.store.GetTenant(ctx, id)
	if err != nil {
		return t, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.entries[id] = statusEntry{t: t, at: now}
	}
	c.mu.Unlock()
	return t, nil
}

// Forget drops what the cache holds of tenant id, so that the next check
// reads the store; a nil cache does nothing.
func (c *StatusCache) Forget(id string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, id)
	c.gen++
	c.mu.Unlock()
}

// CachedStore is a store whose GetTenant answers from a StatusCache, for
// the services that check a tenant's status on every device handshake
// (provisioning); every other method, transactions included, is the
// store's own.
type CachedStore struct {
	steward.Store
	Statuses *StatusCache
}

// GetTenant reads the tenant through the cache.
func (s CachedStore) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	return s.Statuses.GetTenant(ctx, id)
}
