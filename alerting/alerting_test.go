package alerting

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/sqlite"
)

// testClock is a clock the test sets.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const tenant = "acme"

// openStore opens a new SQLite store with a tenant and devices d-1 (site
// paris, online) and d-2 (site lyon, offline).
func openStore(t *testing.T) steward.Store { t.Helper(); return openStoreTB(t) }

func openStoreTB(t testing.TB) steward.Store {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	must(t, s.CreateTenant(t.Context(), steward.Tenant{ID: tenant, Name: "Acme", CreatedAt: t0}))
	for _, d := range []struct {
		id, site string
		online   bool
	}{{"d-1", "paris", true}, {"d-2", "lyon", false}} {
		must(t, s.CreateDevice(t.Context(), steward.Device{ID: d.id, TenantID: tenant, Location: steward.Location{Site: d.site},
			State: steward.StateActive, StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0,
			Presence: steward.Presence{Online: d.online, LastSeen: t0}}))
	}
	return s
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// step is one moment of a scenario: at At (from t0), write Sample (a
// temperature of d-1, when set) and Events (of d-1), evaluate, and expect
// d-1's alerts to read Want: their states, newest first, "" for none.
type step struct {
	At     time.Duration
	Sample *float64
	Events []string // event types
	Want   string
}

func val(v float64) *float64 { return &v }

func rule(kind steward.AlertRuleKind, forDur time.Duration) steward.AlertRule {
	return steward.AlertRule{ID: "r-" + string(kind), TenantID: tenant, Name: string(kind), Kind: kind, Severity: steward.AlertMajor,
		Scope: "site = paris", For: steward.Duration(forDur), Enabled: true, CreatedAt: t0, UpdatedAt: t0,
		Labels: map[string]string{"team": "ops"}}
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	threshold := rule(steward.RuleThreshold, 2*time.Minute)
	threshold.Threshold = &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggLast,
		Window: steward.Duration(5 * time.Minute), Operator: ">", Value: 80, ResolveValue: val(70)}
	noFor := threshold
	noFor.For = 0
	absence := rule(steward.RuleAbsence, 0)
	absence.Absence = &steward.AbsenceCondition{Signal: "telemetry", Window: steward.Duration(3 * time.Minute)}
	event := rule(steward.RuleEvent, 0)
	event.Event = &steward.EventCondition{Type: "crash", Window: steward.Duration(2 * time.Minute)}
	rate := rule(steward.RuleRate, 0)
	rate.Rate = &steward.RateCondition{Type: "reboot", Window: steward.Duration(time.Hour), PerHour: 2, ResolvePerHour: val(1)}

	for _, tc := range []struct {
		name  string
		rule  steward.AlertRule
		steps []step
	}{
		{"threshold with for and hysteresis", threshold, []step{
			{At: 0, Sample: val(75), Want: ""},
			{At: time.Minute, Sample: val(85), Want: "pending"},
			{At: 2 * time.Minute, Sample: val(86), Want: "pending"},
			{At: 3 * time.Minute, Sample: val(87), Want: "firing"}, // held for 2m
			// Wandering around the threshold, above the resolve value: no flapping.
			{At: 4 * time.Minute, Sample: val(79), Want: "firing"},
			{At: 5 * time.Minute, Sample: val(81), Want: "firing"},
			{At: 6 * time.Minute, Sample: val(71), Want: "firing"},
			{At: 7 * time.Minute, Sample: val(70), Want: "resolved"},
			{At: 8 * time.Minute, Sample: val(79), Want: "resolved"},
			// A new breach opens a new alert.
			{At: 9 * time.Minute, Sample: val(90), Want: "pending resolved"},
			{At: 11 * time.Minute, Sample: val(90), Want: "firing resolved"},
		}},
		{"pending dropped before for", threshold, []step{
			{At: 0, Sample: val(85), Want: "pending"},
			{At: time.Minute, Sample: val(79), Want: ""},
			{At: 2 * time.Minute, Sample: val(85), Want: "pending"},
		}},
		{"no data keeps a firing alert", noFor, []step{
			{At: 0, Sample: val(85), Want: "firing"},
			{At: 10 * time.Minute, Want: "firing"},
			{At: 11 * time.Minute, Sample: val(60), Want: "resolved"},
		}},
		{"absence", absence, []step{
			{At: 0, Sample: val(20), Want: ""},
			{At: 2 * time.Minute, Want: ""},
			{At: 3 * time.Minute, Want: "firing"},
			{At: 4 * time.Minute, Sample: val(20), Want: "resolved"},
		}},
		{"event match", event, []step{
			{At: 0, Events: []string{"reboot"}, Want: ""},
			{At: time.Minute, Events: []string{"crash"}, Want: "firing"},
			{At: 2 * time.Minute, Events: []string{"crash"}, Want: "firing"},
			{At: 5 * time.Minute, Want: "resolved"},
		}},
		{"rate", rate, []step{
			{At: 0, Events: []string{"reboot", "reboot"}, Want: ""}, // 2/h is not above 2
			{At: time.Minute, Events: []string{"reboot"}, Want: "firing"},
			{At: 61 * time.Minute, Events: []string{"reboot", "reboot"}, Want: "firing"}, // 2/h: above the resolve rate
			{At: 125 * time.Minute, Want: "resolved"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			clock := &testClock{now: t0}
			ev := New(Config{Store: s, Clock: clock})
			must(t, s.CreateAlertRule(t.Context(), tc.rule))
			for i, st := range tc.steps {
				now := t0.Add(st.At)
				clock.set(now)
				if st.Sample != nil {
					must(t, s.WriteSamples(t.Context(), []steward.Sample{{TenantID: tenant, DeviceID: "d-1", Metric: "temperature", At: now, Value: *st.Sample}}))
				}
				for j, typ := range st.Events {
					at := now.Add(time.Duration(j) * time.Millisecond)
					must(t, s.AddDeviceEvents(t.Context(), []steward.DeviceEvent{{TenantID: tenant, DeviceID: "d-1", Type: typ, Severity: steward.SeverityError, At: at, Received: at}}))
				}
				must(t, ev.Evaluate(t.Context()))
				alerts, err := s.ListAlerts(t.Context(), tenant, steward.AlertFilter{RuleID: tc.rule.ID})
				must(t, err)
				var states []string
				for _, a := range alerts {
					if a.DeviceID != "d-1" {
						t.Fatalf("step %d: alert of %s, out of scope", i, a.DeviceID)
					}
					states = append(states, string(a.State))
				}
				if got := strings.Join(states, " "); got != st.Want {
					t.Fatalf("step %d (+%s): alerts %q, want %q (%+v)", i, st.At, got, st.Want, alerts)
				}
			}
		})
	}
}

// TestEvaluateOneAlertPerDevice checks that an alert is updated, not
// duplicated, pass after pass, keeps its acknowledgement, and that
// disabling the rule resolves it.
func TestEvaluateOneAlertPerDevice(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	clock := &testClock{now: t0}
	ev := New(Config{Store: s, Clock: clock})
	r := rule(steward.RuleAbsence, 0)
	r.Scope = ""
	r.Absence = &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(time.Minute)}
	must(t, s.CreateAlertRule(t.Context(), r))
	var id string
	for i := range 5 {
		clock.set(t0.Add(time.Duration(i+1) * time.Minute))
		must(t, ev.Evaluate(t.Context()))
		alerts, err := s.ListAlerts(t.Context(), tenant, steward.AlertFilter{})
		must(t, err)
		if len(alerts) != 1 || alerts[0].DeviceID != "d-2" || alerts[0].State != steward.AlertFiring {
			t.Fatalf("pass %d: %+v, want one firing alert of d-2 (offline)", i, alerts)
		}
		if id == "" {
			id = alerts[0].ID
			_, err := s.AcknowledgeAlert(t.Context(), tenant, id, "alice", clock.Now())
			must(t, err)
		}
		if a := alerts[0]; a.ID != id || i > 0 && a.AcknowledgedBy != "alice" || !a.LastEvaluatedAt.Equal(clock.Now()) || a.Labels["team"] != "ops" {
			t.Fatalf("pass %d: %+v", i, a)
		}
	}
	r.Enabled = false
	must(t, s.UpdateAlertRule(t.Context(), r))
	must(t, ev.Evaluate(t.Context()))
	a, err := s.GetAlert(t.Context(), tenant, id)
	must(t, err)
	if a.State != steward.AlertResolved || !strings.Contains(a.Summary, "disabled") {
		t.Fatalf("after disabling: %+v", a)
	}
}

// TestLeader checks that a node that is not the leader evaluates nothing.
func TestLeader(t *testing.T) {
	t.Parallel()
	s := openStore(t)
	r := rule(steward.RuleAbsence, 0)
	r.Scope = ""
	r.Absence = &steward.AbsenceCondition{Signal: "offline", Window: steward.Duration(time.Minute)}
	must(t, s.CreateAlertRule(t.Context(), r))
	clock := &testClock{now: t0.Add(time.Hour)}
	asked := make(chan struct{}, 3)
	leader := func() bool {
		select {
		case asked <- struct{}{}:
		default:
		}
		return false
	}
	ev := New(Config{Store: s, Clock: clock, Interval: time.Millisecond, Leader: leader})
	done := make(chan struct{})
	runCtx, stop := context.WithCancel(t.Context())
	go func() { ev.Run(runCtx); close(done) }()
	for range 3 { // three ticks asked and skipped
		<-asked
	}
	stop()
	<-done
	if alerts, _ := s.ListAlerts(t.Context(), tenant, steward.AlertFilter{}); len(alerts) != 0 {
		t.Fatalf("a follower evaluated: %+v", alerts)
	}
	must(t, ev.Evaluate(t.Context())) // called directly it does evaluate
	if alerts, _ := s.ListAlerts(t.Context(), tenant, steward.AlertFilter{}); len(alerts) != 1 {
		t.Fatalf("evaluate: %s", fmt.Sprint(alerts))
	}
}
