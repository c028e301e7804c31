package notify

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
)

// hookChannel creates a webhook channel that posts to a new receiver.
func (e *env) hookChannel(t *testing.T, name string) (steward.NotificationChannel, *receiver) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	ch := e.channel(t, steward.NotificationChannel{Name: name, Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{URL: srv.URL}})
	return ch, rc
}

func (e *env) policy(t *testing.T, p steward.NotificationPolicy) steward.NotificationPolicy {
	t.Helper()
	p.ID, p.TenantID, p.CreatedAt, p.UpdatedAt = newID("np-"), tenant, e.clock.Now(), e.clock.Now()
	if p.Name == "" {
		p.Name = p.ID
	}
	if err := e.store.CreateNotificationPolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	return p
}

// pass runs one routing pass and one delivery round.
func (e *env) pass(t *testing.T) {
	t.Helper()
	if _, err := e.n.FlushDue(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := e.n.SendDue(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) notify(t *testing.T, n steward.Notification) {
	t.Helper()
	ds, s, err := e.n.Notify(context.Background(), n)
	if err != nil || s != nil || len(ds) != 0 {
		t.Fatalf("Notify = %v, %v, %v; want routed to a policy (no delivery at once)", ds, s, err)
	}
}

// messages decodes the group messages a receiver got.
func messages(t *testing.T, rc *receiver) []steward.GroupMessage {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []steward.GroupMessage
	for _, b := range rc.bodies {
		var m steward.GroupMessage
		if err := json.Unmarshal(b, &m); err != nil || m.GroupKey == "" {
			t.Fatalf("body %s is not a group message: %v", b, err)
		}
		out = append(out, m)
	}
	return out
}

func alertNote(alertID, device, state string) steward.Notification {
	n := note(alertID + "/" + state)
	n.AlertID, n.DeviceID, n.State, n.Rule = alertID, device, state, "battery-low"
	n.Labels = map[string]string{"rule": "battery-low", "severity": "critical", "device": device, "site": "paris"}
	return n
}

func alertIDs(m steward.GroupMessage) []string {
	var ids []string
	for _, n := range m.Alerts {
		ids = append(ids, n.AlertID+":"+n.State)
	}
	return ids
}

func TestRouteOrderAndContinue(t *testing.T) {
	t.Parallel()
	labels := map[string]string{"rule": "battery-low", "severity": "minor"}
	ps := []steward.NotificationPolicy{
		{Name: "a", Matchers: []steward.Matcher{{Name: "severity", Op: steward.MatchEqual, Value: "critical"}}},
		{Name: "b", Matchers: []steward.Matcher{{Name: "rule", Op: steward.MatchRegexp, Value: "battery-.*"}}, Continue: true},
		{Name: "c", Matchers: []steward.Matcher{{Name: "severity", Op: steward.MatchNotEqual, Value: "info"}}},
		{Name: "d"},
	}
	tests := []struct {
		name   string
		labels map[string]string
		want   []string
	}{
		{"continue then first stop", labels, []string{"b", "c"}},
		{"first match stops", map[string]string{"severity": "critical"}, []string{"a"}},
		{"catch-all", map[string]string{"severity": "info"}, []string{"d"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var got []string
			for _, p := range Route(ps, tc.labels) {
				got = append(got, p.Name)
			}
			if len(got) != len(tc.want) || (len(got) > 0 && got[0] != tc.want[0]) || (len(got) > 1 && got[1] != tc.want[1]) {
				t.Fatalf("Route = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestGrouping drives a policy's group with a fake clock: group_wait
// batches two alerts into one message, a change waits group_interval, a
// firing group repeats every repeat_interval, and the resolution goes out.
func TestGrouping(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ch, rc := e.hookChannel(t, "maintenance")
	_, other := e.hookChannel(t, "other")
	e.policy(t, steward.NotificationPolicy{Name: "battery", Channels: []string{ch.ID},
		Matchers:  []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "battery-low"}},
		GroupWait: steward.Duration(30 * time.Second), GroupInterval: steward.Duration(5 * time.Minute), RepeatInterval: steward.Duration(time.Hour)})

	e.notify(t, alertNote("al-1", "d-1", "firing"))
	e.clock.Add(10 * time.Second)
	e.notify(t, alertNote("al-2", "d-2", "firing"))
	e.pass(t)
	if rc.count() != 0 {
		t.Fatalf("sent before group_wait: %d", rc.count())
	}
	e.clock.Add(20 * time.Second)
	e.pass(t)
	ms := messages(t, rc)
	if len(ms) != 1 || ms[0].Status != "firing" || ms[0].Policy != "battery" || ms[0].GroupKey != `{rule="battery-low"}` ||
		len(ms[0].Alerts) != 2 || alertIDs(ms[0])[0] != "al-1:firing" || alertIDs(ms[0])[1] != "al-2:firing" {
		t.Fatalf("after group_wait: %+v, want one message with both alerts", ms)
	}
	if other.count() != 0 {
		t.Fatal("a channel outside the policy got the group")
	}

	// A change one minute later waits for group_interval after the last message.
	e.clock.Add(time.Minute)
	e.notify(t, alertNote("al-1", "d-1", "resolved"))
	e.pass(t)
	if rc.count() != 1 {
		t.Fatalf("change sent before group_interval: %d messages", rc.count())
	}
	e.clock.Add(4 * time.Minute)
	e.pass(t)
	ms = messages(t, rc)
	if len(ms) != 2 || ms[1].Status != "firing" || len(ms[1].Alerts) != 2 || alertIDs(ms[1])[0] != "al-1:resolved" {
		t.Fatalf("after group_interval: %+v", ms)
	}

	// Nothing changes: the group, still firing, repeats after repeat_interval.
	e.clock.Add(59 * time.Minute)
	e.pass(t)
	if rc.count() != 2 {
		t.Fatalf("repeated early: %d", rc.count())
	}
	e.clock.Add(time.Minute)
	e.pass(t)
	ms = messages(t, rc)
	if len(ms) != 3 || len(ms[2].Alerts) != 1 || alertIDs(ms[2])[0] != "al-2:firing" {
		t.Fatalf("repeat: %+v, want al-2 alone", ms)
	}

	// The last alert resolves: one resolved message, then the group is gone.
	e.clock.Add(10 * time.Minute)
	e.notify(t, alertNote("al-2", "d-2", "resolved"))
	e.pass(t)
	ms = messages(t, rc)
	if len(ms) != 4 || ms[3].Status != "resolved" || alertIDs(ms[3])[0] != "al-2:resolved" {
		t.Fatalf("resolved: %+v", ms)
	}
	if _, err := e.store.GetNotificationGroup(context.Background(), tenant, ms[3].Alerts[0].TenantID, ms[3].GroupKey); !steward.IsNotFound(err) {
		t.Fatalf("group still stored after resolution: %v", err)
	}
	e.clock.Add(5 * time.Hour)
	e.pass(t)
	if rc.count() != 4 {
		t.Fatalf("%d messages after the group ended, want 4", rc.count())
	}
}

// TestGroupingSurvivesRestart: a new Notifier over the same store sends
// the group a previous one started.
func TestGroupingSurvivesRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ch, rc := e.hookChannel(t, "hook")
	e.policy(t, steward.NotificationPolicy{Name: "all", Channels: []string{ch.ID}, GroupBy: []string{"device"}})
	e.notify(t, alertNote("al-1", "d-1", "firing"))
	e.notify(t, alertNote("al-2", "d-2", "firing"))
	e.n = New(Config{Store: e.store, Clock: e.clock, Jitter: func() float64 { return 0 }})
	e.clock.Add(steward.DefaultGroupWait)
	e.pass(t)
	ms := messages(t, rc)
	if len(ms) != 2 || ms[0].GroupKey == ms[1].GroupKey {
		t.Fatalf("group_by device: %+v, want one message per device", ms)
	}
}

// TestNoPolicyMatchFallsBack: a notification no policy matches goes to
// every enabled channel on its own, as without policies.
func TestNoPolicyMatchFallsBack(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	ch, _ := e.hookChannel(t, "hook")
	e.policy(t, steward.NotificationPolicy{Name: "other", Channels: []string{ch.ID},
		Matchers: []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "nope"}}})
	ds, _, err := e.n.Notify(context.Background(), alertNote("al-1", "d-1", "firing"))
	if err != nil || len(ds) != 1 {
		t.Fatalf("Notify = %v, %v; want one direct delivery", ds, err)
	}
}

// firingAlert stores a firing alert of a new rule, acknowledged or not.
func (e *env) firingAlert(t *testing.T, id string, ack bool) steward.Notification {
	t.Helper()
	ctx := context.Background()
	now := e.clock.Now()
	r := steward.AlertRule{ID: "r-" + id, TenantID: tenant, Name: "rule-" + id, Kind: steward.RuleThreshold, Severity: steward.AlertCritical,
		Enabled: true, Threshold: &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggAvg, Window: steward.Duration(10 * time.Minute),
			Operator: ">", Value: 80}, CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateAlertRule(ctx, r); err != nil {
		t.Fatal(err)
	}
	a, err := e.store.PutAlert(ctx, steward.Alert{ID: id, TenantID: tenant, RuleID: r.ID, State: steward.AlertFiring, Severity: steward.AlertCritical,
		Summary: "silent", StartedAt: now, FiredAt: &now, LastEvaluatedAt: now})
	if err != nil {
		t.Fatal(err)
	}
	if ack {
		if _, err := e.store.AcknowledgeAlert(ctx, tenant, a.ID, "alice", now); err != nil {
			t.Fatal(err)
		}
	}
	n := alertNote(a.ID, "", "firing")
	n.Rule, n.Labels["rule"], n.StartsAt = r.Name, r.Name, now
	return n
}

func TestEscalation(t *testing.T) {
	t.Parallel()
	for _, ack := range []bool{false, true} {
		t.Run(map[bool]string{false: "not acknowledged", true: "acknowledged"}[ack], func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, nil)
			ch, rc := e.hookChannel(t, "team")
			esc, pager := e.hookChannel(t, "pager")
			e.policy(t, steward.NotificationPolicy{Name: "page", Channels: []string{ch.ID},
				EscalateAfter: steward.Duration(15 * time.Minute), EscalateChannels: []string{esc.ID}})
			e.notify(t, e.firingAlert(t, "al-esc", ack))
			e.clock.Add(14 * time.Minute)
			e.pass(t)
			if pager.count() != 0 || rc.count() != 1 {
				t.Fatalf("before escalate_after: pager %d team %d, want 0 and 1", pager.count(), rc.count())
			}
			e.clock.Add(time.Minute)
			e.pass(t)
			e.clock.Add(time.Hour)
			e.pass(t)
			want := 1
			if ack {
				want = 0
			}
			if pager.count() != want {
				t.Fatalf("pager got %d messages, want %d", pager.count(), want)
			}
			if want == 1 {
				if ms := messages(t, pager); ms[0].Status != "firing" || ms[0].Alerts[0].AlertID != "al-esc" {
					t.Fatalf("escalation: %+v", ms)
				}
			}
		})
	}
}

func TestQuarantineAction(t *testing.T) {
	t.Parallel()
	var fleet *lifecycle.Service
	e := newEnv(t, nil)
	fleet = lifecycle.New(e.store, inproc.New(slog.New(slog.DiscardHandler)), e.clock, slog.New(slog.DiscardHandler))
	e.n.cfg.Quarantiner = fleet
	ctx := context.Background()
	now := e.clock.Now()
	dev := steward.Device{ID: "d-00000000000000000001", TenantID: tenant, Model: "gw", Serial: "SN-1", State: steward.StateActive,
		StateChangedAt: now, CreatedAt: now, UpdatedAt: now}
	if err := e.store.CreateDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	ch, rc := e.hookChannel(t, "page")
	e.policy(t, steward.NotificationPolicy{Name: "compromise", Channels: []string{ch.ID}, Actions: []string{steward.PolicyActionQuarantine},
		Matchers: []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "battery-low"}}})
	n := alertNote("al-q", dev.ID, "firing")
	n.Summary = "tamper switch open"
	e.notify(t, n)
	got, err := e.store.GetDevice(ctx, tenant, dev.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.StateQuarantined || got.StateActor != "alert:battery-low" || got.StateReason != "alert battery-low: tamper switch open" {
		t.Fatalf("device after the alert: state %s actor %q reason %q", got.State, got.StateActor, got.StateReason)
	}
	evs, err := e.store.ListLifecycleEvents(ctx, tenant, dev.ID)
	if err != nil || len(evs) != 1 || evs[0].Actor != "alert:battery-low" {
		t.Fatalf("lifecycle events: %+v %v", evs, err)
	}
	// Released by an operator, the same alert notified again (a retried
	// evaluation) does not quarantine it a second time.
	if _, err := fleet.Release(ctx, tenant, dev.ID, "alice"); err != nil {
		t.Fatal(err)
	}
	e.notify(t, n)
	e.clock.Add(time.Hour)
	e.pass(t)
	if got, _ := e.store.GetDevice(ctx, tenant, dev.ID); got.State != steward.StateActive {
		t.Fatalf("quarantined twice by one alert: %s", got.State)
	}
	if rc.count() != 1 {
		t.Fatalf("page channel got %d messages, want 1", rc.count())
	}
}

// TestGroupEmail: an email channel of a policy gets one message listing
// every alert of the group.
func TestGroupEmail(t *testing.T) {
	t.Parallel()
	srv := newSMTPServer(t, nil)
	e := newEnv(t, nil)
	ch := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelEmail, Email: &steward.EmailConfig{
		To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: srv.addr}})
	e.policy(t, steward.NotificationPolicy{Name: "battery", Channels: []string{ch.ID}})
	e.notify(t, alertNote("al-1", "d-1", "firing"))
	e.notify(t, alertNote("al-2", "d-2", "firing"))
	e.clock.Add(steward.DefaultGroupWait)
	e.pass(t)
	msgs := srv.messages()
	if len(msgs) != 1 {
		t.Fatalf("relay got %d messages, want 1", len(msgs))
	}
	for _, want := range []string{"Subject: [FIRING:2] battery {rule=\"battery-low\"}", "Device:    d-1\n", "Device:    d-2\n"} {
		if !strings.Contains(msgs[0].data, want) {
			t.Errorf("message lacks %q:\n%s", want, msgs[0].data)
		}
	}
}

// BenchmarkRoute measures matching a notification against a tenant's
// policies, done for every notification.
func BenchmarkRoute(b *testing.B) {
	ps := make([]steward.NotificationPolicy, 20)
	for i := range ps {
		ps[i] = steward.NotificationPolicy{Name: "p", Matchers: []steward.Matcher{
			{Name: "severity", Op: steward.MatchEqual, Value: "critical"},
			{Name: "rule", Op: steward.MatchRegexp, Value: "battery-.*"}}}
	}
	labels := map[string]string{"rule": "cpu-high", "severity": "critical", "device": "d-1"}
	for b.Loop() {
		Route(ps, labels)
	}
}
