// Package ttlcache is a small read-through cache of per-key values kept for
// a fixed time, with local invalidation: what a node uses to avoid a store
// read per request for data that changes rarely (a tenant's status, its
// quarantine policy), accepting that another node's change is seen only
// once the entry expires. Written here because it is a few lines over a
// map and the injected clock; the caching libraries around bring eviction
// policies and goroutines none of its users need.
package ttlcache

import (
	"context"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Cache holds values of V by string key for TTL after they were loaded.
type Cache[V any] struct {
	clock steward.Clock
	ttl   time.Duration

	mu      sync.Mutex
	entries map[string]entry[V]
	// gen counts Forget calls, so that a load that began before one does
	// not store the value it read, which may be the forgotten one.
	gen uint64
}

type entry[V any] struct {
	v  V
	at time.Time
}

// New returns an empty cache; a nil clock is the system clock.
func New[V any](clock steward.Clock, ttl time.Duration) *Cache[V] {
	if clock == nil {
		clock = steward.SystemClock{}
	}
	return &Cache[V]{clock: clock, ttl: ttl, entries: map[string]entry[V]{}}
}

// Get returns key's value from memory when it was loaded less than TTL
// ago (by the clock, which may also have gone back: then it loads), and
// otherwise calls load and keeps what it returns. Errors are not kept.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(context.Context, string) (V, error)) (V, error) {
	now := c.clock.Now()
	c.mu.Lock()
	e, ok := c.entries[key]
	gen := c.gen
	c.mu.Unlock()
	if ok && !now.Before(e.at) && now.Sub(e.at) < c.ttl {
		return e.v, nil
	}
	v, err := load(ctx, key)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	if c.gen == gen {
		c.entries[key] = entry[V]{v: v, at: now}
	}
	c.mu.Unlock()
	return v, nil
}

// Forget drops key, so that the next Get loads it; a nil cache does nothing.
func (c *Cache[V]) Forget(key string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	delete(c.entries, key)
	c.gen++
	c.mu.Unlock()
}
