package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"github.com/steward-iot/steward/internal/testclock"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlite"
)

const tenant = "tenant-a"

// env is a Notifier over a real SQLite store, with a fake clock and no
// jitter.
type env struct {
	store steward.Store
	clock *testclock.Clock
	n     *Notifier
}

func newEnv(t *testing.T, edit func(*Config)) *env {
	t.Helper()
	store, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "steward.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	clock := testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	if err := store.CreateTenant(context.Background(), steward.Tenant{ID: tenant, Name: "A", CreatedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Store: store, Clock: clock, Jitter: func() float64 { return 0 }, MaxAttempts: 4,
		BaseBackoff: time.Minute, MaxBackoff: 10 * time.Minute}
	if edit != nil {
		edit(&cfg)
	}
	return &env{store: store, clock: clock, n: New(cfg)}
}

func (e *env) channel(t *testing.T, c steward.NotificationChannel) steward.NotificationChannel {
	t.Helper()
	c.TenantID, c.Enabled, c.CreatedAt = tenant, true, e.clock.Now()
	if c.ID == "" {
		c.ID = newID("ch-")
	}
	if c.Name == "" {
		c.Name = c.ID
	}
	if err := e.store.CreateChannel(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) get(t *testing.T, id string) steward.Delivery {
	t.Helper()
	d, err := e.store.GetDelivery(context.Background(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// sendDue runs one round and wants n deliveries claimed.
func (e *env) sendDue(t *testing.T, want int) {
	t.Helper()
	n, err := e.n.SendDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != want {
		t.Fatalf("SendDue claimed %d deliveries, want %d", n, want)
	}
}

func note(key string) steward.Notification {
	return steward.Notification{
		Key: key, GroupKey: "rule-cpu/site=paris", TenantID: tenant, AlertID: "al-1", Rule: "cpu-high",
		DeviceID: "d-0000000000000000000a", State: "firing", Severity: "critical",
		Labels:  map[string]string{"site": "paris", "model": "gw-100"},
		Summary: "CPU above 90% for 5m — Zürich", Value: 97.5,
		StartsAt: time.Date(2026, 11, 27, 9, 55, 0, 0, time.UTC),
	}
}

func hmacHex(t *testing.T, key, msg string) string {
	t.Helper()
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}
