package quarantine_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/internal/testclock"
	"github.com/steward-iot/steward/internal/teststores"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/notify"
	"github.com/steward-iot/steward/quarantine"
)

var t0 = time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)

const tenant = "acme"

// env is a service over a real store, lifecycle and notifier, with a
// clock the test moves.
type env struct {
	store steward.Store
	clock *testclock.Clock
	fleet *lifecycle.Service
	svc   *quarantine.Service
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := t.Context()
	log := slog.New(slog.DiscardHandler)
	store := teststores.SQLite(t)
	clock := testclock.New(t0)
	if err := store.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "Acme", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	if err := store.CreateTenant(ctx, steward.Tenant{ID: "other", Name: "Other", CreatedAt: t0}); err != nil {
		t.Fatal(err)
	}
	fleet := lifecycle.New(store, inproc.New(log), clock, log)
	nt := notify.New(notify.Config{Store: store, Clock: clock, Logger: log})
	svc := quarantine.New(quarantine.Config{Store: store, Quarantiner: fleet, Events: nt, Clock: clock, Logger: log})
	fleet.SetObserver(svc)
	return &env{store: store, clock: clock, fleet: fleet, svc: svc}
}

// device creates an active device whose state last changed at since.
func (e *env) device(t *testing.T, id string, state steward.State, since time.Time) {
	t.Helper()
	if err := e.store.CreateDevice(t.Context(), steward.Device{ID: id, TenantID: tenant, State: state, Serial: "SN-" + id,
		StateChangedAt: since, CreatedAt: since, UpdatedAt: since}); err != nil {
		t.Fatal(err)
	}
}

// events records n events of kind for the device, one a second, the last
// at the clock's time.
func (e *env) events(t *testing.T, device string, kind steward.SecurityEventKind, n int) steward.SecurityEvent {
	t.Helper()
	var last steward.SecurityEvent
	for i := n - 1; i >= 0; i-- {
		last = steward.SecurityEvent{TenantID: tenant, DeviceID: device, Kind: kind, Detail: fmt.Sprintf("event %d", n-i),
			Remote: "192.0.2.7:4000", At: e.clock.Now().Add(-time.Duration(i) * time.Second)}
		if err := e.store.AddSecurityEvent(t.Context(), last); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

func (e *env) state(t *testing.T, id string) steward.Device {
	t.Helper()
	d, err := e.store.GetDevice(t.Context(), tenant, id)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDecide: the rule arithmetic, with times given, not measured.
func TestDecide(t *testing.T) {
	t.Parallel()
	rule := steward.QuarantineRule{Enabled: true, Threshold: 3, Window: steward.Duration(10 * time.Minute)}
	ev := func(ago time.Duration) steward.SecurityEvent {
		return steward.SecurityEvent{Kind: steward.SecACLDenied, At: t0.Add(-ago), Detail: "publish to \"dev/x/telemetry\" refused"}
	}
	tests := []struct {
		name   string
		rule   steward.QuarantineRule
		events []steward.SecurityEvent
		since  time.Time
		fire   bool
	}{
		{"below threshold", rule, []steward.SecurityEvent{ev(time.Minute), ev(0)}, time.Time{}, false},
		{"threshold within window", rule, []steward.SecurityEvent{ev(9 * time.Minute), ev(time.Minute), ev(0)}, time.Time{}, true},
		{"one outside the window", rule, []steward.SecurityEvent{ev(11 * time.Minute), ev(time.Minute), ev(0)}, time.Time{}, false},
		{"window edge counts", rule, []steward.SecurityEvent{ev(10 * time.Minute), ev(time.Minute), ev(0)}, time.Time{}, true},
		{"disabled", steward.QuarantineRule{Threshold: 3, Window: rule.Window}, []steward.SecurityEvent{ev(2), ev(1), ev(0)}, time.Time{}, false},
		{"before the last state change", rule, []steward.SecurityEvent{ev(5 * time.Minute), ev(time.Minute), ev(0)}, t0.Add(-2 * time.Minute), false},
		{"at once", steward.QuarantineRule{Enabled: true, Threshold: 1, Window: rule.Window}, []steward.SecurityEvent{ev(0)}, time.Time{}, true},
		{"from the future", rule, []steward.SecurityEvent{ev(-time.Minute), ev(time.Minute), ev(0)}, time.Time{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			reason, fire := quarantine.Decide(steward.RuleACLDenied, tc.rule, tc.events, tc.since, t0)
			if fire != tc.fire {
				t.Fatalf("fire = %v (%q), want %v", fire, reason, tc.fire)
			}
			if fire && (!strings.Contains(reason, "acl_denied") || !strings.Contains(reason, t0.Format(time.RFC3339)) || !strings.Contains(reason, "dev/x/telemetry")) {
				t.Errorf("reason %q does not name the rule, the last event's time and its detail", reason)
			}
			if !fire && reason != "" {
				t.Errorf("no fire but reason %q", reason)
			}
		})
	}
}

// TestEvaluate: the service applies the tenant's rules to stored events
// with its clock, and quarantines through the lifecycle as
// system:quarantine-policy, once.
func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		policy func(p *steward.QuarantinePolicy) // nil: the default policy
		state  steward.State
		kind   steward.SecurityEventKind
		n      int
		want   bool
		words  []string
	}{
		{"acl below threshold", nil, steward.StateActive, steward.SecACLDenied, 19, false, nil},
		{"acl at threshold", nil, steward.StateActive, steward.SecACLDenied, 20, true, []string{"acl_denied", "20 events within 10m0s", "event 20", "192.0.2.7"}},
		{"auth failures of several kinds count together", nil, steward.StateActive, steward.SecRevokedCredential, 10, true, []string{"auth_failed"}},
		{"clone at once", nil, steward.StateActive, steward.SecSuspectedClone, 1, true, []string{"suspected_clone (at once)"}},
		{"clone of a provisioned device", nil, steward.StateProvisioned, steward.SecSuspectedClone, 1, true, []string{"suspected_clone"}},
		{"config change at once", nil, steward.StateActive, steward.SecConfigChanged, 1, true, []string{"config_changed"}},
		{"config change after three", func(p *steward.QuarantinePolicy) { p.Rules.ConfigChanged.Threshold = 3 }, steward.StateActive, steward.SecConfigChanged, 2, false, nil},
		{"disabled rule", func(p *steward.QuarantinePolicy) { p.Rules.SuspectedClone.Enabled = false }, steward.StateActive, steward.SecSuspectedClone, 1, false, nil},
		{"lower threshold", func(p *steward.QuarantinePolicy) { p.Rules.ACLDenied.Threshold = 2 }, steward.StateActive, steward.SecACLDenied, 2, true, []string{"threshold 2"}},
		{"kind no rule counts", nil, steward.StateActive, steward.SecPayloadTooLarge, 50, false, nil},
		{"maintenance cannot be quarantined", nil, steward.StateMaintenance, steward.SecSuspectedClone, 1, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			ctx := t.Context()
			if tc.policy != nil {
				p := steward.DefaultQuarantinePolicy(tenant)
				tc.policy(&p)
				if _, err := e.svc.SetPolicy(ctx, p, "token:t-1"); err != nil {
					t.Fatal(err)
				}
			}
			e.device(t, "d-1", tc.state, t0.Add(-time.Hour))
			e.clock.Add(time.Hour)
			last := e.events(t, "d-1", tc.kind, tc.n)
			reason, err := e.svc.Evaluate(ctx, last)
			if err != nil {
				t.Fatal(err)
			}
			d := e.state(t, "d-1")
			if got := d.State == steward.StateQuarantined; got != tc.want || (reason != "") != tc.want {
				t.Fatalf("quarantined = %v (state %s, reason %q), want %v", got, d.State, reason, tc.want)
			}
			if !tc.want {
				if d.State != tc.state {
					t.Fatalf("state changed to %s", d.State)
				}
				return
			}
			if d.StateActor != steward.QuarantineActor || d.StateReason != reason {
				t.Errorf("device quarantined by %q for %q, want %q for %q", d.StateActor, d.StateReason, steward.QuarantineActor, reason)
			}
			for _, w := range tc.words {
				if !strings.Contains(reason, w) {
					t.Errorf("reason %q lacks %q", reason, w)
				}
			}
			// Already quarantined: the next event does nothing more.
			again := e.events(t, "d-1", tc.kind, 1)
			if r, err := e.svc.Evaluate(ctx, again); err != nil || r != "" {
				t.Fatalf("second evaluation = %q, %v; want nothing", r, err)
			}
			hist, err := e.store.ListLifecycleEvents(ctx, tenant, "d-1")
			if err != nil {
				t.Fatal(err)
			}
			if n := len(hist); n != 1 {
				t.Fatalf("%d lifecycle events, want the one quarantine: %+v", n, hist)
			}
		})
	}
}

// TestEvaluateAfterRelease: a device an operator released is not put
// back by the events it was released over, only by new ones.
func TestEvaluateAfterRelease(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.device(t, "d-1", steward.StateActive, t0)
	e.clock.Add(time.Minute)
	last := e.events(t, "d-1", steward.SecACLDenied, 20)
	if r, err := e.svc.Evaluate(ctx, last); err != nil || r == "" {
		t.Fatalf("first evaluation = %q, %v", r, err)
	}
	e.clock.Add(time.Minute)
	if _, err := e.fleet.Release(ctx, tenant, "d-1", "token:t-1"); err != nil {
		t.Fatal(err)
	}
	e.clock.Add(time.Second)
	one := e.events(t, "d-1", steward.SecACLDenied, 1)
	if r, err := e.svc.Evaluate(ctx, one); err != nil || r != "" {
		t.Fatalf("after release one event = %q, %v; want nothing", r, err)
	}
	e.clock.Add(30 * time.Second)
	more := e.events(t, "d-1", steward.SecACLDenied, 20)
	if r, err := e.svc.Evaluate(ctx, more); err != nil || r == "" {
		t.Fatalf("20 new events after release = %q, %v; want a quarantine", r, err)
	}
}

// TestSetPolicyRefused: a bad policy is refused and changes nothing.
func TestSetPolicyRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	good := steward.DefaultQuarantinePolicy(tenant)
	good.Rules.ACLDenied.Threshold = 7
	if _, err := e.svc.SetPolicy(ctx, good, "token:t-1"); err != nil {
		t.Fatal(err)
	}
	email := steward.NotificationChannel{ID: "ch-mail", TenantID: tenant, Name: "mail", Kind: steward.ChannelEmail, Enabled: true, CreatedAt: t0,
		Email: &steward.EmailConfig{To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: "127.0.0.1:25"}}
	if err := e.store.CreateChannel(ctx, email); err != nil {
		t.Fatal(err)
	}
	foreign := steward.NotificationChannel{ID: "ch-foreign", TenantID: "other", Name: "hook", Kind: steward.ChannelWebhook, Enabled: true, CreatedAt: t0,
		Webhook: &steward.WebhookConfig{URL: "http://127.0.0.1:9/hook"}}
	if err := e.store.CreateChannel(ctx, foreign); err != nil {
		t.Fatal(err)
	}
	for name, bad := range map[string]func(p *steward.QuarantinePolicy){
		"unknown channel":       func(p *steward.QuarantinePolicy) { p.MayPublish = append(p.MayPublish, "shell") },
		"configuration":         func(p *steward.QuarantinePolicy) { p.MaySubscribe = []steward.Channel{steward.ChannelTwinDesired} },
		"negative threshold":    func(p *steward.QuarantinePolicy) { p.Rules.ACLDenied.Threshold = -1 },
		"negative window":       func(p *steward.QuarantinePolicy) { p.Rules.AuthFailed.Window = steward.Duration(-time.Minute) },
		"unknown webhook":       func(p *steward.QuarantinePolicy) { p.WebhookChannel = "ch-nosuch" },
		"email, not webhook":    func(p *steward.QuarantinePolicy) { p.WebhookChannel = "ch-mail" },
		"another tenant's hook": func(p *steward.QuarantinePolicy) { p.WebhookChannel = "ch-foreign" },
		"duplicate channel":     func(p *steward.QuarantinePolicy) { p.MayPublish = []steward.Channel{"events", "events"} },
		"threshold over the cap": func(p *steward.QuarantinePolicy) {
			p.Rules.SuspectedClone.Threshold = steward.MaxQuarantineThreshold + 1
		},
	} {
		t.Run(name, func(t *testing.T) {
			p := steward.DefaultQuarantinePolicy(tenant)
			bad(&p)
			if _, err := e.svc.SetPolicy(ctx, p, "token:t-2"); steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("SetPolicy = %v, want invalid", err)
			}
			got, err := e.svc.Policy(ctx, tenant)
			if err != nil {
				t.Fatal(err)
			}
			if got.Rules.ACLDenied.Threshold != 7 || got.UpdatedBy != "token:t-1" || got.WebhookChannel != "" {
				t.Fatalf("a refused policy changed the stored one: %+v", got)
			}
		})
	}
}

// TestAllowance: a tenant without a policy gets the fixed defaults; a
// policy change applies at once on this node, only to its tenant.
func TestAllowance(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	pub, sub := e.svc.QuarantineAllowance(ctx, tenant)
	if !slices.Equal(pub, steward.QuarantineMayPublish) || !slices.Equal(sub, steward.QuarantineMaySubscribe) {
		t.Fatalf("default allowance = %v %v", pub, sub)
	}
	p := steward.DefaultQuarantinePolicy(tenant)
	p.MayPublish = []steward.Channel{steward.ChannelAttributes, steward.ChannelTelemetry}
	p.MaySubscribe = []steward.Channel{}
	if _, err := e.svc.SetPolicy(ctx, p, "token:t-1"); err != nil {
		t.Fatal(err)
	}
	pub, sub = e.svc.QuarantineAllowance(ctx, tenant)
	if !slices.Equal(pub, p.MayPublish) || len(sub) != 0 {
		t.Fatalf("allowance after the change = %v %v", pub, sub)
	}
	pub, _ = e.svc.QuarantineAllowance(ctx, "other")
	if !slices.Equal(pub, steward.QuarantineMayPublish) {
		t.Fatalf("another tenant's allowance changed: %v", pub)
	}
}

// TestWebhookEvent: a quarantine and a release, by an operator, enqueue
// the event for the policy's webhook channel with the device's identity.
func TestWebhookEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	hook := steward.NotificationChannel{ID: "ch-fw", TenantID: tenant, Name: "firewall", Kind: steward.ChannelWebhook, Enabled: true, CreatedAt: t0,
		Webhook: &steward.WebhookConfig{URL: "http://127.0.0.1:9/hook", Secret: "s3cret"}}
	if err := e.store.CreateChannel(ctx, hook); err != nil {
		t.Fatal(err)
	}
	e.device(t, "d-1", steward.StateActive, t0)
	// Without a webhook in the policy, nothing is enqueued.
	if _, err := e.fleet.Quarantine(ctx, tenant, "d-1", "first", "token:t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet.Release(ctx, tenant, "d-1", "token:t-1"); err != nil {
		t.Fatal(err)
	}
	if ds, err := e.store.ListDeliveries(ctx, tenant, steward.DeliveryFilter{}); err != nil || len(ds) != 0 {
		t.Fatalf("deliveries without a webhook: %+v, %v", ds, err)
	}
	p := steward.DefaultQuarantinePolicy(tenant)
	p.WebhookChannel = "ch-fw"
	if _, err := e.svc.SetPolicy(ctx, p, "token:t-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet.Quarantine(ctx, tenant, "d-1", "suspicious traffic", "token:t-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.fleet.Release(ctx, tenant, "d-1", "token:t-3"); err != nil {
		t.Fatal(err)
	}
	ds, err := e.store.ListDeliveries(ctx, tenant, steward.DeliveryFilter{ChannelID: "ch-fw"})
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 2 {
		t.Fatalf("%d deliveries, want 2: %+v", len(ds), ds)
	}
	var got []steward.QuarantineEvent
	for _, d := range ds {
		var ev steward.QuarantineEvent
		if err := json.Unmarshal(d.Payload, &ev); err != nil {
			t.Fatal(err)
		}
		if d.Status != steward.DeliveryPending {
			t.Errorf("delivery %s is %s, want pending", d.ID, d.Status)
		}
		got = append(got, ev)
	}
	slices.SortFunc(got, func(a, b steward.QuarantineEvent) int { return strings.Compare(string(a.Type), string(b.Type)) })
	q, r := got[0], got[1]
	if q.Type != steward.QuarantineEventQuarantined || q.Reason != "suspicious traffic" || q.Actor != "token:t-2" || q.DeviceID != "d-1" ||
		q.TenantID != tenant || q.Serial != "SN-d-1" || !q.At.Equal(t0) {
		t.Errorf("quarantine event = %+v", q)
	}
	if r.Type != steward.QuarantineEventReleased || r.Actor != "token:t-3" || r.DeviceID != "d-1" {
		t.Errorf("release event = %+v", r)
	}
}

// TestConfigChangeReport: a device's telemetry sample sec.config.changes
// above 0, however old its own time, is recorded as config_changed and
// quarantines it through Run; a sample of 0 does nothing.
func TestConfigChangeReport(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	e.device(t, "d-quiet", steward.StateActive, t0)
	e.device(t, "d-changed", steward.StateActive, t0)
	e.clock.Add(time.Hour)
	go e.svc.Run(ctx)
	// One queue, in order: the zero sample is evaluated before the other.
	e.svc.ObserveSamples(ctx, []steward.Sample{{TenantID: tenant, DeviceID: "d-quiet", Metric: steward.MetricSecConfigChanges, Value: 0, At: t0}})
	e.svc.ObserveSamples(ctx, []steward.Sample{
		{TenantID: tenant, DeviceID: "d-changed", Metric: "cpu", Value: 3, At: t0},
		{TenantID: tenant, DeviceID: "d-changed", Metric: steward.MetricSecConfigChanges, Value: 2, At: t0.Add(-48 * time.Hour)},
	})
	deadline := time.Now().Add(60 * time.Second)
	for e.state(t, "d-changed").State != steward.StateQuarantined {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the quarantine")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d := e.state(t, "d-changed")
	if !strings.Contains(d.StateReason, "config_changed") || !strings.Contains(d.StateReason, "sec.config.changes = 2") {
		t.Errorf("reason %q", d.StateReason)
	}
	evs, err := e.store.ListSecurityEvents(ctx, tenant, steward.SecurityEventFilter{DeviceID: "d-changed", Kind: steward.SecConfigChanged})
	if err != nil || len(evs) != 1 || !evs[0].At.Equal(e.clock.Now()) {
		t.Fatalf("config_changed events %+v, %v", evs, err)
	}
	if q := e.state(t, "d-quiet"); q.State != steward.StateActive {
		t.Fatalf("a sample of 0 quarantined: %+v", q)
	}
	if evs, _ := e.store.ListSecurityEvents(ctx, tenant, steward.SecurityEventFilter{DeviceID: "d-quiet"}); len(evs) != 0 {
		t.Fatalf("a sample of 0 recorded %+v", evs)
	}
}
