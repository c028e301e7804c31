package provisioning

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testclock"
)

// auditSpy keeps the records it is given.
type auditSpy struct {
	mu   sync.Mutex
	recs []steward.AuditRecord
}

func (a *auditSpy) RecordIn(_ context.Context, _ steward.Store, r steward.AuditRecord) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.recs = append(a.recs, r)
	return nil
}

// take returns the records kept since the last call.
func (a *auditSpy) take() []steward.AuditRecord {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.recs
	a.recs = nil
	return out
}

// countOf returns the count an aggregated record states.
func countOf(t *testing.T, r steward.AuditRecord) int {
	t.Helper()
	var a struct{ Count int }
	if err := json.Unmarshal(r.After, &a); err != nil {
		t.Fatalf("record %+v: after %s: %v", r, r.After, err)
	}
	return a.Count
}

// TestRefusalAggregation floods the device plane's refusals into the
// service as the broker does and checks that the audit log gets the first
// of each device and kind at once, then one record per window with the
// count, whoever is flooding.
func TestRefusalAggregation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spy := &auditSpy{}
	t0 := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	clock := testclock.New(t0)
	svc := &Service{cfg: Config{Store: e.store, Clock: clock, Auditor: spy, Logger: slog.New(slog.DiscardHandler)}, log: slog.New(slog.DiscardHandler)}
	svc.refusals = &refusalAudit{svc: svc, window: 5 * time.Minute, open: map[refusalKey]*refusalWindow{}, maxKeys: maxRefusalKeys}
	ctx := t.Context()
	event := func(dev string, kind steward.SecurityEventKind, i int) steward.SecurityEvent {
		return steward.SecurityEvent{TenantID: "t1", DeviceID: dev, Kind: kind, Remote: fmt.Sprintf("198.51.100.7:%d", 40000+i),
			Detail: fmt.Sprintf("publish to %q refused", fmt.Sprintf("dev/other/%d", i)), At: t0.Add(time.Duration(i) * time.Second)}
	}
	for i := range 50 {
		svc.RecordSecurityEvent(ctx, event("d-1", steward.SecACLDenied, i))
	}
	for i := range 3 {
		svc.RecordSecurityEvent(ctx, event("d-2", steward.SecACLDenied, i))
	}
	svc.RecordSecurityEvent(ctx, event("d-1", steward.SecRevokedCredential, 7))

	first := spy.take()
	if len(first) != 3 {
		t.Fatalf("%d records at once, want the first of each device and kind: %+v", len(first), first)
	}
	want := []struct{ actor, action, remote string }{
		{"device:d-1", "security.acl_denied", "198.51.100.7:40000"},
		{"device:d-2", "security.acl_denied", "198.51.100.7:40000"},
		{"device:d-1", "security.revoked_credential", "198.51.100.7:40007"},
	}
	for i, w := range want {
		r := first[i]
		if r.TenantID != "t1" || r.Actor != w.actor || r.Target != w.actor || r.Action != w.action || r.Outcome != steward.AuditDenied ||
			r.Remote != w.remote || r.Detail == "" || r.At.IsZero() || countOf(t, r) != 1 {
			t.Errorf("record %d = %+v, want %v with count 1", i, r, w)
		}
	}

	// Inside the window nothing more is written; when it ends, one record
	// per device and kind that had more, with the count.
	clock.Add(4 * time.Minute)
	svc.FlushRefusals(ctx)
	if got := spy.take(); len(got) != 0 {
		t.Fatalf("records before the window ended: %+v", got)
	}
	clock.Add(2 * time.Minute)
	svc.FlushRefusals(ctx)
	sums := map[string]steward.AuditRecord{}
	for _, r := range spy.take() {
		sums[r.Actor+" "+r.Action] = r
	}
	if len(sums) != 2 {
		t.Fatalf("summaries %+v, want d-1's and d-2's ACL refusals", sums)
	}
	d1 := sums["device:d-1 security.acl_denied"]
	var a struct {
		Count       int
		First, Last time.Time
	}
	if err := json.Unmarshal(d1.After, &a); err != nil {
		t.Fatal(err)
	}
	if a.Count != 49 || !a.First.Equal(t0.Add(time.Second)) || !a.Last.Equal(t0.Add(49*time.Second)) ||
		d1.Remote != "198.51.100.7:40049" || d1.Target != "device:d-1" || !d1.At.Equal(a.Last) || d1.Outcome != steward.AuditDenied {
		t.Fatalf("d-1's summary %+v (%+v)", d1, a)
	}
	if n := countOf(t, sums["device:d-2 security.acl_denied"]); n != 2 {
		t.Fatalf("d-2's summary counts %d, want 2", n)
	}

	// After the window, the next refusal is recorded at once again.
	svc.RecordSecurityEvent(ctx, event("d-1", steward.SecACLDenied, 400))
	if got := spy.take(); len(got) != 1 || countOf(t, got[0]) != 1 {
		t.Fatalf("after the window: %+v", got)
	}

	// Past the bound on open windows, further devices share one.
	svc.refusals.maxKeys = len(svc.refusals.open) + 1
	for i := range 20 {
		svc.RecordSecurityEvent(ctx, event(fmt.Sprintf("d-x%d", i), steward.SecACLDenied, 500+i))
	}
	got := spy.take()
	if len(got) != 2 || got[0].Actor != "device:d-x0" || got[1].Target != "*" {
		t.Fatalf("flood of devices: %d records %+v, want one for the first and one shared", len(got), got)
	}
	clock.Add(6 * time.Minute)
	svc.FlushRefusals(ctx)
	got = spy.take()
	var shared int
	for _, r := range got {
		if r.Target == "*" {
			shared = countOf(t, r)
		}
	}
	if shared != 18 {
		t.Fatalf("the shared window counted %d, want 18: %+v", shared, got)
	}

	// A device's own window that ended is summed up by its next refusal,
	// flushed or not.
	svc.refusals.maxKeys = maxRefusalKeys
	for i := range 3 {
		svc.RecordSecurityEvent(ctx, event("d-y", steward.SecPayloadTooLarge, 700+i))
	}
	clock.Add(6 * time.Minute)
	svc.RecordSecurityEvent(ctx, event("d-y", steward.SecPayloadTooLarge, 800))
	got = spy.take()
	if len(got) != 3 || countOf(t, got[0]) != 1 || countOf(t, got[1]) != 2 || countOf(t, got[2]) != 1 {
		t.Fatalf("records of d-y %+v, want the first, a count of 2, then a new first", got)
	}
}

// TestRefusalAuditShutdown records the windows still open when the
// service stops.
func TestRefusalAuditShutdown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spy := &auditSpy{}
	clock := testclock.New(time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC))
	svc := &Service{cfg: Config{Store: e.store, Clock: clock, Auditor: spy}, log: slog.New(slog.DiscardHandler)}
	svc.refusals = &refusalAudit{svc: svc, window: time.Hour, open: map[refusalKey]*refusalWindow{}, maxKeys: maxRefusalKeys}
	for range 3 {
		svc.RecordSecurityEvent(t.Context(), steward.SecurityEvent{TenantID: "t1", DeviceID: "d-1", Kind: steward.SecClientIDMismatch, Detail: "x"})
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); svc.RunRefusalAudit(ctx) }()
	cancel()
	<-done
	got := spy.take()
	if len(got) != 2 || countOf(t, got[0]) != 1 || countOf(t, got[1]) != 2 {
		t.Fatalf("records %+v, want the first and a count of 2", got)
	}
}
