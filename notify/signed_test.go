package notify

import (
	"context"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// signedHook creates a webhook channel with a secret that posts to a new
// receiver on loopback.
func (e *env) signedHook(t *testing.T, name, secret string) (steward.NotificationChannel, *receiver) {
	t.Helper()
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	ch := e.channel(t, steward.NotificationChannel{Name: name, Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: srv.URL, Secret: secret}})
	return ch, rc
}

// verifySigned checks that every request rc got carries a valid
// HMAC-SHA256 signature under secret (computed here independently, and
// checked with Verify) and that another secret does not verify.
func verifySigned(t *testing.T, rc *receiver, secret string) {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, r := range rc.got {
		ts, sig, body := r.Header.Get("X-Steward-Timestamp"), r.Header.Get("X-Steward-Signature"), rc.bodies[i]
		if want := "sha256=" + hmacHex(t, secret, ts+"."+string(body)); sig != want {
			t.Fatalf("request %d: signature %q, want %q", i, sig, want)
		}
		sec, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			t.Fatalf("request %d: timestamp %q: %v", i, ts, err)
		}
		at := time.Unix(sec, 0)
		if !Verify(secret, sig, ts, body, at, time.Minute) || Verify("not-"+secret, sig, ts, body, at, time.Minute) {
			t.Fatalf("request %d: Verify disagrees with the signature", i)
		}
	}
}

// hasAlert reports whether any message rc got carries the alert.
func hasAlert(t *testing.T, rc *receiver, alertID string) bool {
	t.Helper()
	for _, m := range messages(t, rc) {
		for _, a := range m.Alerts {
			if a.AlertID == alertID {
				return true
			}
		}
	}
	return false
}

// TestSignedPolicyDeliveries runs grouping, repeat, a silence and
// escalation through one policy with a fake clock, and checks what the
// loopback receivers got (HMAC verified) and what they must not get: the
// silenced alert never, the acknowledged alert never on the pager.
func TestSignedPolicyDeliveries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	team, teamRC := e.signedHook(t, "team", "team-secret")
	pager, pagerRC := e.signedHook(t, "pager", "pager-secret")
	e.policy(t, steward.NotificationPolicy{Name: "ops", Channels: []string{team.ID}, GroupBy: []string{"rule"},
		GroupWait: steward.Duration(30 * time.Second), GroupInterval: steward.Duration(5 * time.Minute), RepeatInterval: steward.Duration(time.Hour),
		EscalateAfter: steward.Duration(15 * time.Minute), EscalateChannels: []string{pager.ID}})

	open := e.firingAlert(t, "al-open", false)
	acked := e.firingAlert(t, "al-acked", true)
	muted := e.firingAlert(t, "al-muted", false)
	now := e.clock.Now()
	must(t, e.store.CreateSilence(context.Background(), steward.Silence{ID: "sil-1", TenantID: tenant, CreatedBy: "alice", Comment: "maintenance window",
		Matchers: []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: muted.Rule}}, StartsAt: now.Add(-time.Minute), EndsAt: now.Add(2 * time.Hour), CreatedAt: now}))

	e.notify(t, open)
	e.notify(t, acked)
	ds, s, err := e.n.Notify(context.Background(), muted)
	if err != nil || s == nil || s.ID != "sil-1" || len(ds) != 0 {
		t.Fatalf("silenced Notify = %v, %v, %v; want muted by sil-1", ds, s, err)
	}

	e.pass(t)
	if teamRC.count() != 0 {
		t.Fatalf("sent before group_wait: %d", teamRC.count())
	}
	e.clock.Add(30 * time.Second)
	e.pass(t)
	if teamRC.count() != 2 || !hasAlert(t, teamRC, "al-open") || !hasAlert(t, teamRC, "al-acked") {
		t.Fatalf("after group_wait the team got %d messages, want one per rule group", teamRC.count())
	}

	e.clock.Add(15 * time.Minute)
	e.pass(t)
	if pagerRC.count() != 1 || !hasAlert(t, pagerRC, "al-open") {
		t.Fatalf("after escalate_after the pager got %d messages, want one for al-open", pagerRC.count())
	}
	if teamRC.count() != 2 {
		t.Fatalf("team got %d messages before repeat_interval, want 2", teamRC.count())
	}

	e.clock.Add(45 * time.Minute)
	e.pass(t)
	if teamRC.count() != 4 {
		t.Fatalf("after repeat_interval the team got %d messages, want 4 (both groups repeated)", teamRC.count())
	}

	for _, rc := range []*receiver{teamRC, pagerRC} {
		if hasAlert(t, rc, "al-muted") {
			t.Fatal("the silenced alert was notified")
		}
	}
	if hasAlert(t, pagerRC, "al-acked") {
		t.Fatal("the acknowledged alert was escalated")
	}
	verifySigned(t, teamRC, "team-secret")
	verifySigned(t, pagerRC, "pager-secret")
}
