package telemetry

import (
	"context"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// The defaults of Config.SchemaTTL and Config.ModelTTL.
const (
	DefaultSchemaTTL = 30 * time.Second
	DefaultModelTTL  = 30 * time.Second
)

// loadTimeout bounds one store read of the schema cache.
const loadTimeout = 10 * time.Second

// noModelTTL is how long, at most, the cache keeps that a device has no
// model: a new device may send telemetry before its first attributes
// report, and its model should then apply soon, not a full ModelTTL later.
const noModelTTL = 5 * time.Second

// schemas answers which metrics a device may send (its model's telemetry
// schema) without a store read per message: each tenant's schemas and each
// device's model are read once and kept for a TTL.
//
// Staleness: a change of a schema made through this node's API reaches the
// cache at once (Intake.SchemasChanged); one made on another node is seen
// here at most SchemaTTL later. A device's new model (an attributes
// report) is seen at most ModelTTL later, its first model at most
// noModelTTL later. Until then samples are judged by
// the old schema or model. A tenant without any schema costs no model
// lookup at all.
type schemas struct {
	store   steward.Store
	clock   steward.Clock
	tenants ttlCache[map[string][]string] // tenant → model → allow-list
	models  ttlCache[string]              // tenant/device → model
}

func newSchemas(store steward.Store, clock steward.Clock, schemaTTL, modelTTL time.Duration) *schemas {
	return &schemas{
		store: store, clock: clock,
		tenants: ttlCache[map[string][]string]{ttl: schemaTTL, m: map[string]*cacheEntry[map[string][]string]{}},
		models: ttlCache[string]{ttl: modelTTL, m: map[string]*cacheEntry[string]{}, ttlOf: func(model string) time.Duration {
			if model == "" {
				return min(modelTTL, noModelTTL)
			}
			return modelTTL
		}},
	}
}

// allowList returns the allow-list of a device's model, and false when the
// device may send anything (its tenant has no schema for its model). An
// error means the store could not be read.
func (s *schemas) allowList(ctx context.Context, tenantID, deviceID string) ([]string, bool, error) {
	now := s.clock.Now()
	byModel, err := s.tenants.get(ctx, tenantID, now, func(ctx context.Context) (map[string][]string, error) {
		list, err := s.store.ListTelemetrySchemas(ctx, tenantID)
		if err != nil {
			return nil, err
		}
		m := make(map[string][]string, len(list))
		for _, sc := range list {
			m[sc.Model] = sc.Allow
		}
		return m, nil
	})
	if err != nil || len(byModel) == 0 {
		return nil, false, err
	}
	model, err := s.models.get(ctx, tenantID+"/"+deviceID, now, func(ctx context.Context) (string, error) {
		d, err := s.store.GetDevice(ctx, tenantID, deviceID)
		if steward.ErrorCode(err) == steward.CodeNotFound {
			return "", nil // no model: no schema applies
		}
		return d.Model, err
	})
	if err != nil {
		return nil, false, err
	}
	allow, ok := byModel[model]
	return allow, ok, nil
}

// cacheEntry is one value of a ttlCache, or its load in progress (ready
// not yet closed).
type cacheEntry[V any] struct {
	ready   chan struct{}
	val     V
	err     error
	expires time.Time
}

// ttlCache keeps values for ttl and loads each key once however many
// callers miss it at the same time. Hand-written rather than taken from
// golang.org/x/sync/singleflight plus a map: the two together are these
// few lines, and invalidation must reach a load in progress.
type ttlCache[V any] struct {
	ttl     time.Duration
	ttlOf   func(V) time.Duration // when set, the TTL of each value (at most ttl)
	mu      sync.Mutex
	m       map[string]*cacheEntry[V]
	sweptAt time.Time
}

func (c *ttlCache[V]) get(ctx context.Context, key string, now time.Time, load func(context.Context) (V, error)) (V, error) {
	c.mu.Lock()
	e := c.m[key]
	if e != nil {
		select {
		case <-e.ready:
			if now.Before(e.expires) {
				v := e.val
				c.mu.Unlock()
				return v, nil
			}
			e = nil // expired
		default:
			c.mu.Unlock()
			select {
			case <-e.ready:
				return e.val, e.err
			case <-ctx.Done():
				var zero V
				return zero, ctx.Err()
			}
		}
	}
	e = &cacheEntry[V]{ready: make(chan struct{})}
	c.m[key] = e
	c.sweep(now)
	c.mu.Unlock()

	// The load outlives a caller that gives up: others may wait for it.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), loadTimeout)
	v, err := load(lctx)
	cancel()

	c.mu.Lock()
	ttl := c.ttl
	if c.ttlOf != nil {
		ttl = c.ttlOf(v)
	}
	e.val, e.err, e.expires = v, err, now.Add(ttl)
	close(e.ready)
	if err != nil && c.m[key] == e {
		delete(c.m, key) // the next caller tries again
	}
	c.mu.Unlock()
	return v, err
}

// invalidate forgets key; a load in progress still answers its waiters
// but is not kept.
func (c *ttlCache[V]) invalidate(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// sweep drops expired entries, at most once per ttl, so that devices and
// tenants not heard from again do not stay in memory. c.mu is held.
func (c *ttlCache[V]) sweep(now time.Time) {
	if now.Sub(c.sweptAt) < c.ttl {
		return
	}
	c.sweptAt = now
	for k, e := range c.m {
		select {
		case <-e.ready:
			if !now.Before(e.expires) {
				delete(c.m, k)
			}
		default:
		}
	}
}
