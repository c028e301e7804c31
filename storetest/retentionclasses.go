package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/retention"
)

// testRetentionJob checks that the retention job deletes exactly what is
// past its period, class by class and tenant by tenant: for each class
// and tenant one row a microsecond older than the cutoff (deleted), one at
// the cutoff and one after it (kept), with tenant A's own period for
// device events and tenant B on the defaults; work still to do (a pending
// delivery, an open alert) is kept however old; a second run deletes
// nothing.
func testRetentionJob(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	createDevices(t, s, device(tenantA, "d-ret-a"), device(tenantB, "d-ret-b"))
	for _, tn := range []string{tenantA, tenantB} {
		must(t, s.CreateChannel(c, webhookChannel(tn, "ch-ret-"+tn, "retention")))
		must(t, s.CreateAlertRule(c, alertRule(tn, "r-ret-"+tn, "retention")))
	}
	now := time.Date(2029, 3, 4, 5, 6, 7, 0, time.UTC)
	reg, err := steward.NewRetentionRegistry(steward.StoreRetentionClasses(s)...)
	must(t, err)
	must(t, s.PutRetentionOverride(c, steward.RetentionOverride{TenantID: tenantA, Class: steward.RetentionDeviceEvents,
		Period: steward.Duration(10 * 24 * time.Hour), UpdatedAt: t0}))
	overrides := map[string][]steward.RetentionOverride{}
	for _, tn := range []string{tenantA, tenantB} {
		overrides[tn], err = s.ListRetentionOverrides(c, tn)
		must(t, err)
	}
	if len(overrides[tenantA]) != 1 || len(overrides[tenantB]) != 0 {
		t.Fatalf("overrides %+v", overrides)
	}
	cutoff := func(tenant, class string) time.Time {
		cl, ok := reg.Class(class)
		if !ok {
			t.Fatalf("class %s not registered", class)
		}
		return now.Add(-cl.Period(overrides[tenant]))
	}
	if got := cutoff(tenantA, steward.RetentionDeviceEvents); !got.Equal(now.Add(-10 * 24 * time.Hour)) {
		t.Fatalf("tenant A's device events cutoff %v", got)
	}

	// offsets from the cutoff: the first row is past its period.
	offsets := []time.Duration{-time.Microsecond, 0, time.Hour}
	seq := 0
	for _, tn := range []string{tenantA, tenantB} {
		dev := map[string]string{tenantA: "d-ret-a", tenantB: "d-ret-b"}[tn]
		for i, off := range offsets {
			when := func(class string) time.Time { return cutoff(tn, class).Add(off) }
			at := when(steward.RetentionDeviceEvents)
			must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{{TenantID: tn, DeviceID: dev, Type: "reboot", Severity: steward.SeverityInfo, At: at, Received: now}}))
			must(t, s.AddPresenceEvent(c, steward.PresenceEvent{TenantID: tn, DeviceID: dev, Online: i%2 == 0, At: when(steward.RetentionPresenceEvents)}))
			must(t, s.AddSecurityEvent(c, steward.SecurityEvent{TenantID: tn, DeviceID: dev, Kind: steward.SecAuthFailed, Detail: "x", At: when(steward.RetentionSecurityEvents)}))
			must(t, s.AddLifecycleEvent(c, steward.LifecycleEvent{TenantID: tn, DeviceID: dev, From: steward.StateProvisioned, To: steward.StateActive, Actor: "system", At: when(steward.RetentionLifecycleEvents)}))
			seq++
			d := steward.Delivery{ID: fmt.Sprintf("dl-ret-%d", seq), TenantID: tn, ChannelID: "ch-ret-" + tn, NotificationKey: fmt.Sprintf("k%d", seq),
				Payload: []byte(`{}`), Status: steward.DeliveryPending, NextAttemptAt: now.Add(time.Hour), CreatedAt: when(steward.RetentionDeliveries)}
			must(t, s.EnqueueDelivery(c, d))
			d.Status, d.Attempt = steward.DeliveryDelivered, 1
			delivered := now
			d.DeliveredAt = &delivered
			must(t, s.RecordDelivery(c, d))
			resolved := when(steward.RetentionClosedAlerts)
			a := openAlert(tn, fmt.Sprintf("al-ret-%d", seq), "r-ret-"+tn, dev)
			a.StartedAt, a.LastEvaluatedAt = resolved.Add(-time.Hour), resolved
			_, err := s.PutAlert(c, a)
			must(t, err)
			a.State, a.ResolvedAt = steward.AlertResolved, &resolved
			_, err = s.PutAlert(c, a)
			must(t, err)
		}
		// Work still to do, however old: kept.
		seq++
		must(t, s.EnqueueDelivery(c, steward.Delivery{ID: fmt.Sprintf("dl-ret-%d", seq), TenantID: tn, ChannelID: "ch-ret-" + tn,
			NotificationKey: "pending", Payload: []byte(`{}`), Status: steward.DeliveryPending, NextAttemptAt: now, CreatedAt: now.Add(-10000 * 24 * time.Hour)}))
		open := openAlert(tn, fmt.Sprintf("al-ret-open-%s", tn), "r-ret-"+tn, dev)
		open.StartedAt, open.LastEvaluatedAt = now.Add(-10000*24*time.Hour), now.Add(-10000*24*time.Hour)
		_, err := s.PutAlert(c, open)
		must(t, err)
	}

	job := retention.New(retention.Config{Store: s, Registry: reg, Clock: fixedClock{now}, Chunk: 1})
	pruned, err := job.RunOnce(c)
	must(t, err)
	want := map[string]int{}
	for _, cl := range reg.Classes() {
		want[cl.Name] = 2 // one per tenant
	}
	if fmt.Sprint(pruned) != fmt.Sprint(want) {
		t.Fatalf("pruned %v, want %v", pruned, want)
	}

	// What is left: the rows at and after each cutoff, and the work to do.
	for _, tn := range []string{tenantA, tenantB} {
		dev := map[string]string{tenantA: "d-ret-a", tenantB: "d-ret-b"}[tn]
		check := func(class string, times []time.Time, extra int) {
			t.Helper()
			cut := cutoff(tn, class)
			old := 0
			for _, at := range times {
				if at.Before(cut) {
					old++
				}
			}
			if len(times) != len(offsets)-1+extra || old > extra {
				t.Fatalf("tenant %s, %s: %d rows left (%d before the cutoff %v), want %d: %v", tn, class, len(times), old, cut, len(offsets)-1+extra, times)
			}
		}
		evs, err := s.ListDeviceEvents(c, tn, dev, steward.DeviceEventFilter{})
		must(t, err)
		check(steward.RetentionDeviceEvents, timesOf(evs, func(e steward.DeviceEvent) time.Time { return e.At }), 0)
		pres, err := s.ListPresenceEvents(c, tn, dev, time.Time{}, time.Time{}, 0)
		must(t, err)
		check(steward.RetentionPresenceEvents, timesOf(pres, func(e steward.PresenceEvent) time.Time { return e.At }), 0)
		sec, err := s.ListSecurityEvents(c, tn, steward.SecurityEventFilter{DeviceID: dev})
		must(t, err)
		check(steward.RetentionSecurityEvents, timesOf(sec, func(e steward.SecurityEvent) time.Time { return e.At }), 0)
		life, err := s.ListLifecycleEvents(c, tn, dev)
		must(t, err)
		check(steward.RetentionLifecycleEvents, timesOf(life, func(e steward.LifecycleEvent) time.Time { return e.At }), 0)
		dls, err := s.ListDeliveries(c, tn, steward.DeliveryFilter{})
		must(t, err)
		check(steward.RetentionDeliveries, timesOf(dls, func(d steward.Delivery) time.Time { return d.CreatedAt }), 1)
		als, err := s.ListAlerts(c, tn, steward.AlertFilter{})
		must(t, err)
		check(steward.RetentionClosedAlerts, timesOf(als, func(a steward.Alert) time.Time {
			if a.ResolvedAt == nil {
				return a.StartedAt
			}
			return *a.ResolvedAt
		}), 1)
	}

	pruned, err = job.RunOnce(c)
	must(t, err)
	if len(pruned) != 0 {
		t.Fatalf("second run pruned %v", pruned)
	}

	// Refused: nothing deleted.
	_, err = s.PruneDataClass(c, tenantA, "audit.log", now, 10)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.PruneDataClass(c, tenantA, steward.RetentionDeviceEvents, now, 0)
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.PruneDataClass(c, tenantA, steward.RetentionDeviceEvents, time.Time{}, 10)
	wantCode(t, err, steward.CodeInvalid)
	wantCode(t, s.PutRetentionOverride(c, steward.RetentionOverride{TenantID: "tenant-none", Class: steward.RetentionDeviceEvents,
		Period: steward.Duration(time.Hour), UpdatedAt: t0}), steward.CodeNotFound)
	wantCode(t, s.PutRetentionOverride(c, steward.RetentionOverride{TenantID: tenantA, Class: steward.RetentionDeviceEvents,
		Period: 0, UpdatedAt: t0}), steward.CodeInvalid)
	evs, err := s.ListDeviceEvents(c, tenantA, "d-ret-a", steward.DeviceEventFilter{})
	must(t, err)
	if len(evs) != 2 {
		t.Fatalf("refused calls changed the events: %d left", len(evs))
	}
	must(t, s.DeleteRetentionOverride(c, tenantA, steward.RetentionDeviceEvents))
	wantCode(t, s.DeleteRetentionOverride(c, tenantA, steward.RetentionDeviceEvents), steward.CodeNotFound)
}

// timesOf maps a list to its times.
func timesOf[T any](xs []T, at func(T) time.Time) []time.Time {
	out := make([]time.Time, 0, len(xs))
	for _, x := range xs {
		out = append(out, at(x))
	}
	return out
}

// fixedClock is a clock that never moves.
type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }
