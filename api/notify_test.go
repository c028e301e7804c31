package api

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/notify"
)

func TestNotificationChannels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	var sigs []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		sigs = append(sigs, r.Header.Get("X-Steward-Signature"))
		mu.Unlock()
		if !notify.Verify("hook-secret-1", r.Header.Get("X-Steward-Signature"), r.Header.Get("X-Steward-Timestamp"), body, time.Now(), time.Minute) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(hook.Close)
	e.api.cfg.Notifier = notify.New(notify.Config{Store: e.store})

	const base = "/api/v1/notification-channels"
	var l List[Channel]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("new tenant lists %+v", l.Items)
	}
	req := ChannelRequest{Name: "ops", Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{
		URL: hook.URL, Secret: "hook-secret-1", Headers: map[string]string{"Authorization": "Bearer header-secret-2"}}}
	res := e.must(t, http.StatusCreated, "POST", base, e.system, req)
	var ch Channel
	res.decode(t, &ch)
	if ch.Name != "ops" || !ch.Enabled || ch.Webhook == nil || !ch.Webhook.SecretSet || ch.Webhook.URL != hook.URL ||
		len(ch.Webhook.HeaderNames) != 1 || ch.Webhook.HeaderNames[0] != "Authorization" {
		t.Fatalf("created %+v", ch)
	}
	email := ChannelRequest{Name: "mail", Kind: steward.ChannelEmail, Email: &steward.EmailConfig{To: []string{"ops@example.com"},
		From: "steward@example.com", SMTPAddr: "127.0.0.1:1", Username: "u", Password: "smtp-secret-3"}}
	var em Channel
	e.must(t, http.StatusCreated, "POST", base, e.system, email).decode(t, &em)
	if em.Email == nil || !em.Email.PasswordSet {
		t.Fatalf("created %+v", em)
	}
	e.must(t, http.StatusConflict, "POST", base, e.system, req).problem(t)

	// No answer ever carries a secret.
	for _, path := range []string{base, base + "/" + ch.ID, base + "/" + em.ID} {
		body := string(e.must(t, http.StatusOK, "GET", path, e.system, nil).body)
		for _, secret := range []string{"hook-secret-1", "header-secret-2", "smtp-secret-3"} {
			if strings.Contains(body, secret) {
				t.Fatalf("GET %s returns a secret: %s", path, body)
			}
		}
	}

	// The test sends through the real path: signed, delivered, logged.
	var d steward.Delivery
	e.must(t, http.StatusOK, "POST", base+"/"+ch.ID+"/test", e.system, nil).decode(t, &d)
	if d.Status != steward.DeliveryDelivered || d.HTTPStatus != http.StatusAccepted || d.ChannelID != ch.ID || d.Attempt != 1 {
		t.Fatalf("test delivery %+v", d)
	}
	mu.Lock()
	if len(sigs) != 1 || !strings.HasPrefix(sigs[0], "sha256=") {
		t.Fatalf("hook got signatures %v", sigs)
	}
	mu.Unlock()
	var dl List[steward.Delivery]
	e.must(t, http.StatusOK, "GET", "/api/v1/deliveries?channel="+ch.ID+"&status=delivered", e.system, nil).decode(t, &dl)
	if len(dl.Items) != 1 || dl.Items[0].ID != d.ID {
		t.Fatalf("delivery log %+v", dl.Items)
	}
	e.must(t, http.StatusOK, "GET", "/api/v1/deliveries?status=failed", e.system, nil).decode(t, &dl)
	if len(dl.Items) != 0 {
		t.Fatalf("failed deliveries %+v", dl.Items)
	}
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/deliveries?status=lost", e.system, nil).problem(t)
	e.must(t, http.StatusBadRequest, "GET", "/api/v1/deliveries?nope=1", e.system, nil).problem(t)

	// Another tenant sees none of it and can touch none of it.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("other tenant lists %+v", l.Items)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/"+ch.ID, other, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", base+"/"+ch.ID+"/test", other, nil).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", base+"/"+ch.ID, other, nil).problem(t)
	e.must(t, http.StatusOK, "GET", "/api/v1/deliveries", other, nil).decode(t, &dl)
	if len(dl.Items) != 0 {
		t.Fatalf("other tenant's delivery log %+v", dl.Items)
	}

	e.must(t, http.StatusNoContent, "DELETE", base+"/"+ch.ID, e.system, nil)
	e.must(t, http.StatusNotFound, "GET", base+"/"+ch.ID, e.system, nil).problem(t)
	e.must(t, http.StatusNotFound, "POST", base+"/"+ch.ID+"/test", e.system, nil).problem(t)
}

func TestNotificationChannelsInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/notification-channels"
	cases := []struct {
		name, body string
		status     int
	}{
		{"ftp url", `{"name":"x","kind":"webhook","webhook":{"url":"ftp://example.com/"}}`, 400},
		{"no url", `{"name":"x","kind":"webhook","webhook":{}}`, 400},
		{"no settings", `{"name":"x","kind":"webhook"}`, 400},
		{"bad kind", `{"name":"x","kind":"sms"}`, 400},
		{"no name", `{"kind":"webhook","webhook":{"url":"https://example.com/"}}`, 400},
		{"bad recipient", `{"name":"x","kind":"email","email":{"to":["nobody"],"from":"a@example.com","smtp_addr":"h:25"}}`, 400},
		{"unknown field", `{"name":"x","kind":"webhook","webhook":{"url":"https://example.com/"},"extra":1}`, 400},
		{"not json", `{`, 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, e.raw(t, "POST", base, e.system, "application/json", strings.NewReader(tc.body)), tc.status)
		})
	}
	var l List[Channel]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("refused channels stored: %+v", l.Items)
	}
	// Without a notifier the test endpoint is unavailable, not broken.
	var ch Channel
	e.must(t, http.StatusCreated, "POST", base, e.system, ChannelRequest{Name: "x", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: "https://example.com/"}}).decode(t, &ch)
	e.must(t, http.StatusServiceUnavailable, "POST", base+"/"+ch.ID+"/test", e.system, nil).problem(t)
}

// TestNotificationChannelNameTooLong refuses webhook channels whose name is
// longer than steward.MaxChannelNameLen, and creates none of them.
func TestNotificationChannelNameTooLong(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/notification-channels"
	hook := &steward.WebhookConfig{URL: "https://example.com/hook"}
	e.must(t, http.StatusCreated, "POST", base, e.system, ChannelRequest{Name: "ops", Kind: steward.ChannelWebhook, Webhook: hook})
	before := e.snapshot(t, e.system, base)

	for _, tc := range []struct{ name, channel string }{
		{"one over the limit", strings.Repeat("n", steward.MaxChannelNameLen+1)},
		{"an existing name made long", "ops" + strings.Repeat(" ops", 40)},
		{"64 KiB", strings.Repeat("n", 64<<10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.call(t, "POST", base, e.system, ChannelRequest{Name: tc.channel, Kind: steward.ChannelWebhook, Webhook: hook})
			wantInvalid(t, r, "channel name", fmt.Sprintf("1 to %d bytes", steward.MaxChannelNameLen))
		})
	}
	e.sameAs(t, e.system, before, base)

	// The limit itself is a name a channel may have.
	var ch Channel
	e.must(t, http.StatusCreated, "POST", base, e.system, ChannelRequest{Name: strings.Repeat("n", steward.MaxChannelNameLen),
		Kind: steward.ChannelWebhook, Webhook: hook}).decode(t, &ch)
	if len(ch.Name) != steward.MaxChannelNameLen {
		t.Fatalf("created %+v", ch)
	}
}

func TestSilences(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/silences"
	end := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	var s steward.Silence
	e.must(t, http.StatusCreated, "POST", base, e.system, SilenceRequest{
		Matchers: []steward.Matcher{{Name: "site", Op: "=~", Value: "par.*"}}, EndsAt: end, Comment: "maintenance"}).decode(t, &s)
	if s.ID == "" || !s.EndsAt.Equal(end) || !strings.HasPrefix(s.CreatedBy, "token:") || s.StartsAt.IsZero() {
		t.Fatalf("created %+v", s)
	}
	var l List[steward.Silence]
	e.must(t, http.StatusOK, "GET", base+"?active=true", e.system, nil).decode(t, &l)
	if len(l.Items) != 1 || l.Items[0].ID != s.ID {
		t.Fatalf("active silences %+v", l.Items)
	}
	other := e.newTenant(t, "other")
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("other tenant lists %+v", l.Items)
	}
	e.must(t, http.StatusNotFound, "DELETE", base+"/"+s.ID, other, nil).problem(t)

	var exp steward.Silence
	e.must(t, http.StatusOK, "DELETE", base+"/"+s.ID, e.system, nil).decode(t, &exp)
	if !exp.EndsAt.Before(end) {
		t.Fatalf("expired %+v", exp)
	}
	e.must(t, http.StatusOK, "GET", base+"?active=true", e.system, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("active after expiry %+v", l.Items)
	}
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 1 {
		t.Fatalf("expired silence not kept: %+v", l.Items)
	}

	for name, body := range map[string]string{
		"end before start": `{"matchers":[{"name":"a","op":"=","value":"b"}],"starts_at":"2026-01-02T00:00:00Z","ends_at":"2026-01-01T00:00:00Z"}`,
		"bad regex":        `{"matchers":[{"name":"a","op":"=~","value":"("}],"ends_at":"2099-01-01T00:00:00Z"}`,
		"bad op":           `{"matchers":[{"name":"a","op":"~","value":"b"}],"ends_at":"2099-01-01T00:00:00Z"}`,
		"no matchers":      `{"matchers":[],"ends_at":"2099-01-01T00:00:00Z"}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, e.raw(t, "POST", base, e.system, "application/json", strings.NewReader(body)), http.StatusBadRequest)
		})
	}
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 1 {
		t.Fatalf("refused silences stored: %+v", l.Items)
	}
}

// wantProblem fails unless r has the status and is a problem document.
func wantProblem(t *testing.T, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	r.problem(t)
}
