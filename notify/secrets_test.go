package notify

import (
	"bytes"
	"context"
	"database/sql"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/pki"
)

// keyring is a pki.Keyring over a master key of one repeated byte.
func keyring(t *testing.T, b byte) *pki.Keyring {
	t.Helper()
	k, err := pki.NewKeyring(bytes.Repeat([]byte{b}, pki.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// storedConfigs returns the config column of every channel row, as the
// database holds it.
func storedConfigs(t *testing.T, s steward.Store) string {
	t.Helper()
	rows, err := s.(interface{ DB() *sql.DB }).DB().Query(`SELECT config FROM notification_channels`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var all []string
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		all = append(all, c)
	}
	return strings.Join(all, "\n")
}

// TestSealedChannels: a channel created or updated through SealedChannels
// has no secret in clear in the database, reads back with its secrets,
// and signs with the right one.
func TestSealedChannels(t *testing.T) {
	t.Parallel()
	keys := keyring(t, 0xa5)
	var sealed SealedChannels
	e := newEnv(t, func(c *Config) {
		sealed = SealedChannels{Store: c.Store, Keys: keys}
		c.Store = sealed
	})
	ctx := context.Background()
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	const secret, password = "whsec-clear-4f1d", "smtp-clear-9c2e"
	hook := steward.NotificationChannel{ID: "ch-hook", TenantID: tenant, Name: "hook", Kind: steward.ChannelWebhook, Enabled: true,
		Webhook: &steward.WebhookConfig{URL: srv.URL, Secret: secret}, CreatedAt: e.clock.Now()}
	mail := steward.NotificationChannel{ID: "ch-mail", TenantID: tenant, Name: "mail", Kind: steward.ChannelEmail, Enabled: true,
		Email: &steward.EmailConfig{To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: "127.0.0.1:25",
			Username: "steward", Password: password}, CreatedAt: e.clock.Now()}
	for _, c := range []steward.NotificationChannel{hook, mail} {
		if err := sealed.CreateChannel(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if hook.Webhook.Secret != secret {
		t.Fatal("sealing changed the caller's channel")
	}
	db := storedConfigs(t, e.store)
	for _, clear := range []string{secret, password} {
		if strings.Contains(db, clear) {
			t.Fatalf("the database holds %q in clear: %s", clear, db)
		}
	}
	if strings.Count(db, sealedPrefix) != 2 {
		t.Fatalf("want two sealed values: %s", db)
	}
	got, err := sealed.GetChannel(ctx, tenant, "ch-hook")
	if err != nil || got.Webhook.Secret != secret {
		t.Fatalf("read back: %+v, %v", got.Webhook, err)
	}
	list, err := sealed.ListChannels(ctx, tenant)
	if err != nil || len(list) != 2 || list[0].Webhook.Secret != secret || list[1].Email.Password != password {
		t.Fatalf("list: %+v, %v", list, err)
	}

	// The worker signs with the secret, opened.
	if _, err := e.n.Enqueue(ctx, "ch-hook", note("k-1")); err != nil {
		t.Fatal(err)
	}
	e.sendDue(t, 1)
	if rc.count() != 1 {
		t.Fatalf("webhook got %d requests", rc.count())
	}
	verifySigned(t, rc, secret)

	// An update seals the new secret; a value that looks sealed is sealed
	// like any other.
	for _, next := range []string{"whsec-next-77aa", sealedPrefix + "AAAA"} {
		upd := hook
		upd.Webhook = &steward.WebhookConfig{URL: srv.URL, Secret: next}
		if err := sealed.UpdateChannel(ctx, upd); err != nil {
			t.Fatal(err)
		}
		if db := storedConfigs(t, e.store); strings.Contains(db, next) {
			t.Fatalf("the database holds %q in clear: %s", next, db)
		}
		if got, err := sealed.GetChannel(ctx, tenant, "ch-hook"); err != nil || got.Webhook.Secret != next {
			t.Fatalf("after update: %+v, %v", got.Webhook, err)
		}
	}

	// A sealed value is bound to its channel and field, and to the master
	// key: moved elsewhere, or read with another key, it does not open.
	raw, err := e.store.GetChannel(ctx, tenant, "ch-hook")
	if err != nil {
		t.Fatal(err)
	}
	moved := mail
	moved.ID, moved.Name = "ch-moved", "moved"
	moved.Email = &steward.EmailConfig{To: mail.Email.To, From: mail.Email.From, SMTPAddr: mail.Email.SMTPAddr, Username: "u", Password: raw.Webhook.Secret}
	if err := e.store.CreateChannel(ctx, moved); err != nil {
		t.Fatal(err)
	}
	if _, err := sealed.GetChannel(ctx, tenant, "ch-moved"); steward.ErrorCode(err) != steward.CodeInternal {
		t.Fatalf("a sealed value moved to another channel: %v", err)
	}
	other := SealedChannels{Store: e.store, Keys: keyring(t, 0x5a)}
	if _, err := other.GetChannel(ctx, tenant, "ch-hook"); steward.ErrorCode(err) != steward.CodeInternal {
		t.Fatalf("another master key: %v", err)
	}
}

// TestSealStoredChannels: channels stored in clear before sealing keep
// working, and SealStoredChannels seals them once; a second run changes
// nothing.
func TestSealStoredChannels(t *testing.T) {
	t.Parallel()
	keys := keyring(t, 0xa5)
	e := newEnv(t, func(c *Config) { c.Store = SealedChannels{Store: c.Store, Keys: keys} })
	ctx := context.Background()
	const secret, password = "whsec-legacy-31b0", "smtp-legacy-c0de"
	ch, rc := e.signedHook(t, "legacy", secret) // written to the store as it is, in clear
	mail := e.channel(t, steward.NotificationChannel{Name: "legacy mail", Kind: steward.ChannelEmail,
		Email: &steward.EmailConfig{To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: "127.0.0.1:25",
			Username: "steward", Password: password}})
	e.channel(t, steward.NotificationChannel{Name: "no secret", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: "https://hooks.example.com/x"}})
	if db := storedConfigs(t, e.store); !strings.Contains(db, secret) || !strings.Contains(db, password) {
		t.Fatalf("fixture: want the secrets in clear: %s", db)
	}
	// Read through the sealed store, a clear row is used as it is.
	if _, err := e.n.Enqueue(ctx, ch.ID, note("k-1")); err != nil {
		t.Fatal(err)
	}
	e.sendDue(t, 1)
	verifySigned(t, rc, secret)

	n, err := SealStoredChannels(ctx, e.store, keys)
	if err != nil || n != 2 {
		t.Fatalf("sealed %d channels (%v), want 2", n, err)
	}
	if db := storedConfigs(t, e.store); strings.Contains(db, secret) || strings.Contains(db, password) {
		t.Fatalf("the database still holds a secret in clear: %s", db)
	}
	if n, err := SealStoredChannels(ctx, e.store, keys); err != nil || n != 0 {
		t.Fatalf("second run sealed %d (%v), want 0", n, err)
	}
	got, err := (SealedChannels{Store: e.store, Keys: keys}).GetChannel(ctx, tenant, mail.ID)
	if err != nil || got.Email.Password != password || got.Name != mail.Name || !got.Enabled {
		t.Fatalf("after sealing: %+v, %v", got, err)
	}
	if _, err := e.n.Enqueue(ctx, ch.ID, note("k-2")); err != nil {
		t.Fatal(err)
	}
	e.sendDue(t, 1)
	if rc.count() != 2 {
		t.Fatalf("webhook got %d requests, want 2", rc.count())
	}
	verifySigned(t, rc, secret)
}
