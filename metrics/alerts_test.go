package metrics_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/metrics"
)

func TestAlertCounts(t *testing.T) {
	t.Parallel()
	s := fleetStore(t)
	ctx := context.Background()
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tn := range []string{"acme", "globex"} {
		if err := s.CreateAlertRule(ctx, steward.AlertRule{ID: "r1", TenantID: tn, Name: "offline", Kind: steward.RuleAbsence,
			Severity: steward.AlertMajor, Enabled: true, CreatedAt: now, UpdatedAt: now,
			Absence: &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(time.Minute)}}); err != nil {
			t.Fatal(err)
		}
	}
	put := func(tenant, id, device string, state steward.AlertState) {
		t.Helper()
		a := steward.Alert{ID: id, TenantID: tenant, RuleID: "r1", DeviceID: device, State: state, Severity: steward.AlertMajor,
			StartedAt: now, LastEvaluatedAt: now}
		if state == steward.AlertFiring {
			a.FiredAt = &now
		}
		if _, err := s.PutAlert(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	put("acme", "a1", "d-1", steward.AlertFiring)
	put("acme", "a2", "d-2", steward.AlertPending)
	put("globex", "a3", "d-1", steward.AlertFiring)

	c := &clock{now: now}
	m := newMetrics(t, c)
	if err := m.WatchAlerts(s); err != nil {
		t.Fatal(err)
	}
	reg := m.Registry()
	l := func(state steward.AlertState, sev steward.AlertSeverity) map[string]string {
		return map[string]string{"state": string(state), "severity": string(sev)}
	}
	want(t, reg, "steward_alerts", l(steward.AlertFiring, steward.AlertMajor), 2)
	want(t, reg, "steward_alerts", l(steward.AlertPending, steward.AlertMajor), 1)
	want(t, reg, "steward_alerts", l(steward.AlertResolved, steward.AlertCritical), 0)

	// Cached within the TTL, fresh after it.
	put("acme", "a4", "d-3", steward.AlertFiring)
	c.Add(metrics.DefaultFleetTTL - time.Second)
	want(t, reg, "steward_alerts", l(steward.AlertFiring, steward.AlertMajor), 2)
	c.Add(time.Second)
	want(t, reg, "steward_alerts", l(steward.AlertFiring, steward.AlertMajor), 3)
}
