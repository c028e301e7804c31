package notify

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"

	"github.com/steward-iot/steward"
)

// Sealer seals and opens server-held secrets under the master key
// (pki.Keyring does), each bound to its name.
type Sealer interface {
	Seal(name string, plaintext []byte) ([]byte, error)
	Open(name string, sealed []byte) ([]byte, error)
}

// sealedPrefix marks a stored webhook secret or SMTP password that is
// sealed: the prefix, then the sealed bytes in base64. A stored value
// without it is a clear one, written before secrets were sealed.
const sealedPrefix = "sealed:"

// secretName is what a channel's secret is sealed under: its tenant,
// channel and field, so that a sealed value copied to another channel, or
// from the password to the secret, does not open.
func secretName(c steward.NotificationChannel, field string) string {
	return "notify/" + c.TenantID + "/" + c.ID + "/" + field
}

// secretFields are a channel's secret fields, by name.
func secretFields(c *steward.NotificationChannel) map[string]*string {
	out := map[string]*string{}
	if c.Webhook != nil {
		out["webhook-secret"] = &c.Webhook.Secret
	}
	if c.Email != nil {
		out["smtp-password"] = &c.Email.Password
	}
	return out
}

// cloneSettings gives c settings of its own, so that sealing or opening
// never writes through to the caller's.
func cloneSettings(c steward.NotificationChannel) steward.NotificationChannel {
	if c.Webhook != nil {
		w := *c.Webhook
		c.Webhook = &w
	}
	if c.Email != nil {
		e := *c.Email
		c.Email = &e
	}
	return c
}

// sealChannel returns c with every secret it has sealed under keys; an
// empty secret stays empty (none is set). A value is sealed whatever it
// looks like, so that no caller can plant a sealed value of its choosing.
func sealChannel(keys Sealer, c steward.NotificationChannel) (steward.NotificationChannel, error) {
	c = cloneSettings(c)
	for field, v := range secretFields(&c) {
		if *v == "" {
			continue
		}
		sealed, err := keys.Seal(secretName(c, field), []byte(*v))
		if err != nil {
			return c, fmt.Errorf("seal the %s of channel %s: %w", field, c.ID, err)
		}
		*v = sealedPrefix + base64.StdEncoding.EncodeToString(sealed)
	}
	return c, nil
}

// openChannel returns c with its sealed secrets opened; a clear one (a
// row written before secrets were sealed) is used as it is.
func openChannel(keys Sealer, c steward.NotificationChannel) (steward.NotificationChannel, error) {
	c = cloneSettings(c)
	for field, v := range secretFields(&c) {
		enc, ok := strings.CutPrefix(*v, sealedPrefix)
		if !ok {
			continue
		}
		sealed, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return c, steward.WrapError(steward.CodeInternal, err, "the sealed %s of channel %s does not decode", field, c.ID)
		}
		plain, err := keys.Open(secretName(c, field), sealed)
		if err != nil {
			return c, fmt.Errorf("open the %s of channel %s: %w", field, c.ID, err)
		}
		*v = string(plain)
	}
	return c, nil
}

// SealedChannels is a store whose notification channels keep their
// webhook secrets and SMTP passwords sealed under the master key:
// CreateChannel and UpdateChannel seal them, GetChannel and ListChannels
// open them. Every other method, InTx included, is the store's own, so a
// channel read in a transaction keeps its secrets sealed (no reader in a
// transaction sends: they check a channel's kind). The API and the
// Notifier use it.
type SealedChannels struct {
	steward.Store
	Keys Sealer
}

// CreateChannel seals the channel's secrets and stores it.
func (s SealedChannels) CreateChannel(ctx context.Context, c steward.NotificationChannel) error {
	sealed, err := sealChannel(s.Keys, c)
	if err != nil {
		return err
	}
	return s.Store.CreateChannel(ctx, sealed)
}

// UpdateChannel seals the channel's secrets and writes it.
func (s SealedChannels) UpdateChannel(ctx context.Context, c steward.NotificationChannel) error {
	sealed, err := sealChannel(s.Keys, c)
	if err != nil {
		return err
	}
	return s.Store.UpdateChannel(ctx, sealed)
}

// GetChannel reads a channel with its secrets opened.
func (s SealedChannels) GetChannel(ctx context.Context, tenantID, id string) (steward.NotificationChannel, error) {
	c, err := s.Store.GetChannel(ctx, tenantID, id)
	if err != nil {
		return c, err
	}
	return openChannel(s.Keys, c)
}

// ListChannels lists the tenant's channels with their secrets opened.
func (s SealedChannels) ListChannels(ctx context.Context, tenantID string) ([]steward.NotificationChannel, error) {
	cs, err := s.Store.ListChannels(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	for i := range cs {
		if cs[i], err = openChannel(s.Keys, cs[i]); err != nil {
			return nil, err
		}
	}
	return cs, nil
}

// SealStoredChannels seals, in every tenant, the channel secrets still
// stored in clear (rows written before secrets were sealed), and returns
// how many channels it rewrote. Channels are never rewritten otherwise,
// so this runs at every start rather than waiting for a write: once none
// is left in clear it only reads. Two nodes starting at once may both
// seal a channel; either sealed value opens.
func SealStoredChannels(ctx context.Context, store steward.Store, keys Sealer) (int, error) {
	tenants, err := store.ListTenants(ctx)
	if err != nil {
		return 0, fmt.Errorf("list tenants: %w", err)
	}
	n := 0
	for _, t := range tenants {
		cs, err := store.ListChannels(ctx, t.ID)
		if err != nil {
			return n, fmt.Errorf("list the channels of tenant %s: %w", t.ID, err)
		}
		for _, c := range cs {
			clear := false
			for _, v := range secretFields(&c) {
				clear = clear || (*v != "" && !strings.HasPrefix(*v, sealedPrefix))
			}
			if !clear {
				continue
			}
			// Open what is sealed already (a channel with a sealed secret
			// and a clear password), then seal everything again.
			open, err := openChannel(keys, c)
			if err != nil {
				return n, err
			}
			err = (SealedChannels{Store: store, Keys: keys}).UpdateChannel(ctx, open)
			if steward.IsNotFound(err) {
				continue // deleted meanwhile
			}
			if err != nil {
				return n, fmt.Errorf("seal the secrets of channel %s: %w", c.ID, err)
			}
			n++
		}
	}
	return n, nil
}
