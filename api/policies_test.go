package api

import (
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestNotificationPolicies(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var ch Channel
	e.must(t, http.StatusCreated, "POST", "/api/v1/notification-channels", e.system, ChannelRequest{Name: "tickets",
		Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{URL: "https://tickets.example.com/hook"}}).decode(t, &ch)

	const base = "/api/v1/notification-policies"
	req := PolicyRequest{Name: "battery", Order: 10, Channels: []string{ch.ID},
		Matchers:  []steward.Matcher{{Name: "rule", Op: steward.MatchEqual, Value: "battery-low"}},
		GroupBy:   []string{"site"},
		GroupWait: steward.Duration(time.Minute), Actions: []string{"quarantine"}}
	var p steward.NotificationPolicy
	res := e.must(t, http.StatusCreated, "POST", base, e.system, req)
	res.decode(t, &p)
	if p.Name != "battery" || p.Order != 10 || p.Channels[0] != ch.ID || p.GroupWait.D() != time.Minute || p.Actions[0] != "quarantine" ||
		res.header.Get("Location") != base+"/"+p.ID {
		t.Fatalf("created %+v", p)
	}
	e.must(t, http.StatusConflict, "POST", base, e.system, req).problem(t)

	// Bad input: a clear 400 and nothing stored.
	for _, bad := range []PolicyRequest{
		{Name: "x"}, // neither channels nor actions
		{Name: "x", Channels: []string{"ch-nope"}},
		{Name: "x", Channels: []string{ch.ID}, Actions: []string{"reboot"}},
		{Name: "x", Channels: []string{ch.ID}, Matchers: []steward.Matcher{{Name: "rule", Op: "=~", Value: "("}}},
		{Name: "x", Channels: []string{ch.ID}, EscalateAfter: steward.Duration(time.Minute)},
	} {
		if pr := e.must(t, http.StatusBadRequest, "POST", base, e.system, bad).problem(t); pr.Detail == "" {
			t.Fatalf("problem without detail for %+v", bad)
		}
	}
	var l List[steward.NotificationPolicy]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 1 {
		t.Fatalf("list after bad input: %+v", l.Items)
	}

	req.Order, req.Name = 3, "battery-low"
	var up steward.NotificationPolicy
	e.must(t, http.StatusOK, "PUT", base+"/"+p.ID, e.system, req).decode(t, &up)
	if up.Order != 3 || up.Name != "battery-low" || !up.CreatedAt.Equal(p.CreatedAt) {
		t.Fatalf("updated %+v", up)
	}
	e.must(t, http.StatusBadRequest, "PUT", base+"/"+p.ID, e.system, PolicyRequest{Name: "battery-low"}).problem(t)
	var got steward.NotificationPolicy
	e.must(t, http.StatusOK, "GET", base+"/"+p.ID, e.system, nil).decode(t, &got)
	if got.Order != 3 || got.Name != "battery-low" {
		t.Fatalf("after a refused update: %+v", got)
	}

	// Another tenant sees none of it and can touch none of it.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("other tenant lists %+v", l.Items)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/"+p.ID, other, nil).problem(t)
	e.must(t, http.StatusNotFound, "PUT", base+"/"+p.ID, other, req).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", base+"/"+p.ID, other, nil).problem(t)
	e.must(t, http.StatusBadRequest, "POST", base, other, req).problem(t) // A's channel is not B's

	e.must(t, http.StatusNoContent, "DELETE", base+"/"+p.ID, e.system, nil)
	e.must(t, http.StatusNotFound, "GET", base+"/"+p.ID, e.system, nil).problem(t)
}
