package lifecycle_test

import (
	"bytes"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/sqlite"
)

// TestAuditedTransitions: every state change and revocation the service
// makes lands in the audit log with the state before and after, and a
// refused change leaves no record.
func TestAuditedTransitions(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	store, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "steward.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	kr, err := pki.NewKeyring(bytes.Repeat([]byte{5}, pki.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.LoadOrCreateKeys(ctx, store, kr)
	if err != nil {
		t.Fatal(err)
	}
	al, err := audit.New(audit.Config{Store: store, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := store.CreateTenant(ctx, steward.Tenant{ID: "acme", Name: "Acme", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateDevice(ctx, steward.Device{ID: "d-audited", TenantID: "acme", State: steward.StateActive,
		StateChangedAt: now, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	fleet := lifecycle.New(store, inproc.New(log), steward.SystemClock{}, log)
	fleet.SetAuditor(al)

	if _, err := fleet.Quarantine(ctx, "acme", "d-audited", "suspicious traffic", "token:t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Quarantine(ctx, "acme", "d-audited", "again", "token:t-1"); err == nil {
		t.Fatal("quarantined a quarantined device")
	}
	if _, err := fleet.Release(ctx, "acme", "d-audited", "token:t-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Revoke(ctx, "acme", "d-audited", "token:t-3"); err != nil {
		t.Fatal(err)
	}
	recs, err := al.Search(ctx, "acme", steward.AuditFilter{Cursor: -1, Target: "device:d-audited"})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ actor, action, before, after string }{
		{"token:t-1", "device.quarantine", `{"state":"active"}`, `{"reason":"suspicious traffic","state":"quarantined"}`},
		{"token:t-2", "device.release", `{"state":"quarantined"}`, `{"reason":"released by operator","state":"active"}`},
		{"token:t-3", "device.revoke", "", ""},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d: %+v", len(recs), len(want), recs)
	}
	for i, w := range want {
		r := recs[i]
		if r.Actor != w.actor || r.Action != w.action || r.Outcome != steward.AuditSuccess || string(r.Before) != w.before ||
			(w.after != "" && string(r.After) != w.after) {
			t.Errorf("record %d = %+v (before %s, after %s), want %+v", i, r, r.Before, r.After, w)
		}
	}
	rep, err := al.Verify(ctx, "acme")
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
