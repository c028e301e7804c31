package twin

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/alerting"
)

// TestDriftRaisesAlert runs the real alert evaluator over the signals the
// drift hook writes: a threshold rule on config.drift fires while a device
// is drifted and resolves once it is back in sync.
func TestDriftRaisesAlert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	e.device(t, "d-1", "gw-100", "", "")
	e.template(t, "base", steward.LayerBase, "", `{"interval": 30}`, "")
	now := e.clock.Now()
	rule := steward.AlertRule{ID: "ar-drift", TenantID: tenant, Name: "configuration drift", Kind: steward.RuleThreshold, Severity: steward.AlertWarning,
		Enabled: true, CreatedAt: now, UpdatedAt: now,
		Threshold: &steward.ThresholdCondition{Metric: MetricDrift, Aggregation: steward.AggLast, Window: steward.Duration(24 * time.Hour), Operator: ">", Value: 0.5}}
	must(t, e.store.CreateAlertRule(ctx, rule))
	ev := alerting.New(alerting.Config{Store: e.store, Clock: e.clock, Logger: slog.New(slog.DiscardHandler)})
	firing := func() []steward.Alert {
		t.Helper()
		must(t, ev.Evaluate(ctx))
		as, err := e.store.ListAlerts(ctx, tenant, steward.AlertFilter{State: steward.AlertFiring})
		must(t, err)
		return as
	}

	_, err := e.svc.UpdateTwin(ctx, tenant, "d-1", json.RawMessage(`{"log": "info"}`), nil, "token:op")
	must(t, err)
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30}}`))
	if as := firing(); len(as) != 0 {
		t.Fatalf("firing before any drift: %+v", as)
	}
	e.clock.Add(11 * time.Minute)
	_, err = e.svc.CheckDrift(ctx)
	must(t, err)
	as := firing()
	if len(as) != 1 || as[0].DeviceID != "d-1" || as[0].RuleID != rule.ID {
		t.Fatalf("drift alert: %+v", as)
	}
	must(t, e.report(t, "d-1", `{"version": 1, "state": {"interval": 30, "log": "info"}}`))
	e.clock.Add(time.Minute)
	_, err = e.svc.CheckDrift(ctx)
	must(t, err)
	if as := firing(); len(as) != 0 {
		t.Fatalf("still firing after the drift cleared: %+v", as)
	}
}
