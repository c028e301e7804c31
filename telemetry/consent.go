package telemetry

import (
	"context"
	"time"

	"github.com/steward-iot/steward"
)

// DropConsent: a personal device whose person has not consented to
// telemetry (steward.DeviceConsent).
const DropConsent = "consent"

// consents answers whether a device's telemetry is withheld for want of
// consent, without a store read per message: each tenant's withheld
// devices are read once and kept for a TTL (Config.SchemaTTL). A change
// made through this node's API applies at once (Intake.ConsentChanged),
// one made on another node at most a TTL later. A tenant without personal
// devices costs one read per TTL.
type consents struct {
	store   steward.Store
	clock   steward.Clock
	tenants ttlCache[map[string]bool] // tenant → withheld devices
}

func newConsents(store steward.Store, clock steward.Clock, ttl time.Duration) *consents {
	return &consents{store: store, clock: clock, tenants: ttlCache[map[string]bool]{ttl: ttl, m: map[string]*cacheEntry[map[string]bool]{}}}
}

// withheld reports whether the device's telemetry may not be kept. An
// error means the store could not be read.
func (c *consents) withheld(ctx context.Context, tenantID, deviceID string) (bool, error) {
	set, err := c.tenants.get(ctx, tenantID, c.clock.Now(), func(ctx context.Context) (map[string]bool, error) {
		ids, err := c.store.WithheldDevices(ctx, tenantID, steward.ConsentTelemetry)
		if err != nil {
			return nil, err
		}
		m := make(map[string]bool, len(ids))
		for _, id := range ids {
			m[id] = true
		}
		return m, nil
	})
	return set[deviceID], err
}

// consentFilter drops the samples of a device without consent to
// telemetry, counting them; it returns what is left.
func (in *Intake) consentFilter(ctx context.Context, m steward.DeviceMessage, kept []steward.Sample) ([]steward.Sample, error) {
	withheld, err := in.consents.withheld(ctx, m.TenantID, m.DeviceID)
	if err != nil || !withheld {
		return kept, err
	}
	in.consentDropped.Add(int64(len(kept)))
	in.cfg.Metrics.SamplesDropped(DropConsent, len(kept))
	in.cfg.Logger.Debug("telemetry samples of a device without consent dropped", "tenant", m.TenantID, "device", m.DeviceID, "dropped", len(kept))
	return kept[:0], nil
}

// ConsentDropped is how many samples were dropped since the intake
// started because their device's person has not consented to telemetry.
func (in *Intake) ConsentDropped() int64 { return in.consentDropped.Load() }

// ConsentChanged makes the intake read a tenant's consents again on its
// next message.
func (in *Intake) ConsentChanged(tenantID string) { in.consents.tenants.invalidate(tenantID) }
