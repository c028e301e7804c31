package steward

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func validRule() AlertRule {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return AlertRule{ID: "r1", TenantID: "t", Name: "hot", Kind: RuleThreshold, Severity: AlertMajor, Enabled: true,
		Threshold: &ThresholdCondition{Metric: "cpu", Aggregation: AggAvg, Window: Duration(time.Minute), Operator: ">", Value: 0.9},
		CreatedAt: now, UpdatedAt: now}
}

func TestAlertRuleValidate(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	for _, tc := range []struct {
		name string
		mut  func(r *AlertRule)
		want string // "" for valid
	}{
		{"valid", func(*AlertRule) {}, ""},
		{"resolve below", func(r *AlertRule) { r.Threshold.ResolveValue = f(0.8) }, ""},
		{"resolve above", func(r *AlertRule) { r.Threshold.ResolveValue = f(0.95) }, "hysteresis"},
		{"less than, resolve below", func(r *AlertRule) { r.Threshold.Operator = "<"; r.Threshold.ResolveValue = f(0.5) }, "hysteresis"},
		{"no name", func(r *AlertRule) { r.Name = "" }, "name"},
		{"spaces around name", func(r *AlertRule) { r.Name = " hot" }, "name"},
		{"severity", func(r *AlertRule) { r.Severity = "error" }, "severity"},
		{"kind", func(r *AlertRule) { r.Kind = "cohort" }, "kind"},
		{"kind without its condition", func(r *AlertRule) { r.Kind = RuleAbsence }, "absence rule needs"},
		{"two conditions", func(r *AlertRule) { r.Event = &EventCondition{Type: "x", Window: Duration(time.Minute)} }, "exactly"},
		{"aggregation", func(r *AlertRule) { r.Threshold.Aggregation = "p99" }, "aggregation"},
		{"metric", func(r *AlertRule) { r.Threshold.Metric = "a b" }, "metric"},
		{"window too long", func(r *AlertRule) { r.Threshold.Window = Duration(8 * 24 * time.Hour) }, "window"},
		{"negative for", func(r *AlertRule) { r.For = Duration(-time.Second) }, "for"},
		{"label key", func(r *AlertRule) { r.Labels = map[string]string{"a b": "x"} }, "label"},
		{"absence signal", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Absence = RuleAbsence, nil, &AbsenceCondition{Signal: "silence", Window: Duration(time.Minute)}
		}, "signal"},
		{"event field value without field", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Event = RuleEvent, nil, &EventCondition{Type: "crash", FieldValue: "x", Window: Duration(time.Minute)}
		}, "field"},
		{"rate zero", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Rate = RuleRate, nil, &RateCondition{Type: "reboot", Window: Duration(time.Hour)}
		}, "per_hour"},
		{"site recovery grace negative", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Site = RuleSiteConnectivity, nil, &SiteCondition{RecoveryGrace: Duration(-time.Second)}
		}, "recovery_grace"},
		{"site recovery grace of a week and a second", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Scope, r.Site = RuleSiteConnectivity, nil, "", &SiteCondition{RecoveryGrace: Duration(MaxAlertFor + time.Second)}
		}, "recovery_grace"},
		{"site recovery grace", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Scope, r.Site = RuleSiteConnectivity, nil, "", &SiteCondition{RecoveryGrace: Duration(10 * time.Minute)}
		}, ""},
		{"rate resolve above", func(r *AlertRule) {
			r.Kind, r.Threshold, r.Rate = RuleRate, nil, &RateCondition{Type: "reboot", Window: Duration(time.Hour), PerHour: 2, ResolvePerHour: f(3)}
		}, "resolve_per_hour"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := validRule()
			tc.mut(&r)
			err := r.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want valid", err)
			case tc.want != "" && (err == nil || ErrorCode(err) != CodeInvalid || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want an invalid error about %q", err, tc.want)
			}
		})
	}
}

func TestDurationJSON(t *testing.T) {
	t.Parallel()
	var c AbsenceCondition
	if err := json.Unmarshal([]byte(`{"signal":"offline","window":"1h30m"}`), &c); err != nil || c.Window.D() != 90*time.Minute {
		t.Fatalf("got %v %v", c.Window.D(), err)
	}
	b, _ := json.Marshal(c)
	if string(b) != `{"signal":"offline","window":"1h30m0s"}` {
		t.Fatalf("marshal: %s", b)
	}
	for _, bad := range []string{`{"window":"soon"}`, `{"window":90}`} {
		if err := json.Unmarshal([]byte(bad), &c); err == nil || !strings.Contains(err.Error(), "duration") {
			t.Errorf("%s: got %v", bad, err)
		}
	}
}

func TestAlertValidate(t *testing.T) {
	t.Parallel()
	now := time.Now()
	ok := Alert{TenantID: "t", RuleID: "r", State: AlertPending, Severity: AlertInfo, StartedAt: now, LastEvaluatedAt: now}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(a *Alert){
		"firing without time":   func(a *Alert) { a.State = AlertFiring },
		"resolved without time": func(a *Alert) { a.State = AlertResolved },
		"unknown state":         func(a *Alert) { a.State = "open" },
		"no rule":               func(a *Alert) { a.RuleID = "" },
	} {
		a := ok
		mut(&a)
		if err := a.Validate(); ErrorCode(err) != CodeInvalid {
			t.Errorf("%s: got %v", name, err)
		}
	}
}
