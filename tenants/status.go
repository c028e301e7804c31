package tenants

import (
	"context"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/ttlcache"
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
	store   TenantReader
	tenants *ttlcache.Cache[steward.Tenant]
}

// NewStatusCache builds a cache over store; a ttl of 0 means
// DefaultStatusTTL, and a nil clock the system clock.
func NewStatusCache(store TenantReader, clock steward.Clock, ttl time.Duration) *StatusCache {
	if ttl <= 0 {
		ttl = DefaultStatusTTL
	}
	return &StatusCache{store: store, tenants: ttlcache.New[steward.Tenant](clock, ttl)}
}

// GetTenant returns the tenant, from memory when it was read less than the
// TTL ago.
func (c *StatusCache) GetTenant(ctx context.Context, id string) (steward.Tenant, error) {
	return c.tenants.Get(ctx, id, c.store.GetTenant)
}

// Forget drops what the cache holds of tenant id, so that the next check
// reads the store, even one that began before; a nil cache does nothing.
func (c *StatusCache) Forget(id string) {
	if c == nil {
		return
	}
	c.tenants.Forget(id)
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
