package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// receiver is a webhook endpoint that answers from a script and keeps
// what it got.
type receiver struct {
	mu      sync.Mutex
	answers []func(w http.ResponseWriter)
	got     []*http.Request
	bodies  [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.got = append(rc.got, r)
	rc.bodies = append(rc.bodies, body)
	if len(rc.answers) == 0 {
		w.WriteHeader(http.StatusOK)
		return
	}
	a := rc.answers[0]
	rc.answers = rc.answers[1:]
	a(w)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func status(code int, hdr ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(hdr); i += 2 {
			w.Header().Set(hdr[i], hdr[i+1])
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("answer " + strconv.Itoa(code)))
	}
}

func webhookEnv(t *testing.T, answers ...func(w http.ResponseWriter)) (*env, *receiver, steward.NotificationChannel) {
	t.Helper()
	rc := &receiver{answers: answers}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	e := newEnv(t, nil)
	ch := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{
		URL: srv.URL + "/hook", Secret: "s3cret", Headers: map[string]string{"Authorization": "Bearer abc"}}})
	return e, rc, ch
}

func TestWebhookSignedDelivery(t *testing.T) {
	t.Parallel()
	e, rc, ch := webhookEnv(t)
	d, err := e.n.Enqueue(t.Context(), ch.ID, note("k1"))
	if err != nil {
		t.Fatal(err)
	}
	e.sendDue(t, 1)
	if rc.count() != 1 {
		t.Fatalf("receiver got %d requests, want 1", rc.count())
	}
	r, body := rc.got[0], rc.bodies[0]
	if r.Method != "POST" || r.URL.Path != "/hook" || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("Authorization") != "Bearer abc" || r.Header.Get("X-Steward-Delivery") != d.ID {
		t.Fatalf("request %s %s headers %v", r.Method, r.URL, r.Header)
	}
	ts := r.Header.Get("X-Steward-Timestamp")
	if ts != strconv.FormatInt(e.clock.Now().Unix(), 10) {
		t.Fatalf("timestamp %q, want the clock's %d", ts, e.clock.Now().Unix())
	}
	// The documented scheme, recomputed here independently of Sign.
	if got, want := r.Header.Get("X-Steward-Signature"), hmacHex(t, "s3cret", ts+"."+string(body)); got != "sha256="+want {
		t.Fatalf("signature %q, want sha256=%s", got, want)
	}
	if !Verify("s3cret", r.Header.Get("X-Steward-Signature"), ts, body, e.clock.Now(), 5*time.Minute) {
		t.Fatal("Verify refuses the signature")
	}
	if Verify("other", r.Header.Get("X-Steward-Signature"), ts, body, e.clock.Now(), 5*time.Minute) ||
		Verify("s3cret", r.Header.Get("X-Steward-Signature"), ts, body, e.clock.Now().Add(6*time.Minute), 5*time.Minute) ||
		Verify("s3cret", r.Header.Get("X-Steward-Signature"), ts, append(body, ' '), e.clock.Now(), 5*time.Minute) {
		t.Fatal("Verify accepts a wrong key, an old timestamp or a changed body")
	}
	var n steward.Notification
	if err := json.Unmarshal(body, &n); err != nil {
		t.Fatal(err)
	}
	if n.Key != "k1" || n.AlertID != "al-1" || n.Labels["site"] != "paris" || n.Value != 97.5 || !n.SentAt.Equal(e.clock.Now()) {
		t.Fatalf("payload %+v", n)
	}
	got := e.get(t, d.ID)
	if got.Status != steward.DeliveryDelivered || got.Attempt != 1 || got.HTTPStatus != 200 || got.DeliveredAt == nil {
		t.Fatalf("delivery %+v", got)
	}
	e.sendDue(t, 0) // nothing left
	// The same key again is the same delivery, not a second message.
	again, err := e.n.Enqueue(t.Context(), ch.ID, note("k1"))
	if err != nil || again.ID != d.ID {
		t.Fatalf("Enqueue again = %+v, %v; want delivery %s", again, err, d.ID)
	}
	e.sendDue(t, 0)
}

func TestWebhookRetries(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		answers []func(http.ResponseWriter)
		// waits are the clock moves between rounds: each round must find
		// the delivery due exactly then, not a microsecond before.
		waits  []time.Duration
		status steward.DeliveryStatus
		http   int
	}{
		{"500 then success", []func(http.ResponseWriter){status(500), status(502), status(204)},
			[]time.Duration{time.Minute, 2 * time.Minute}, steward.DeliveryDelivered, 204},
		{"400 is not retried", []func(http.ResponseWriter){status(400)}, nil, steward.DeliveryFailed, 400},
		{"429 honours Retry-After seconds", []func(http.ResponseWriter){status(429, "Retry-After", "300"), status(200)},
			[]time.Duration{5 * time.Minute}, steward.DeliveryDelivered, 200},
		{"503 honours Retry-After date", []func(http.ResponseWriter){
			func(w http.ResponseWriter) {
				status(503, "Retry-After", time.Date(2026, 11, 27, 10, 7, 0, 0, time.UTC).Format(http.TimeFormat))(w)
			}, status(200)},
			[]time.Duration{7 * time.Minute}, steward.DeliveryDelivered, 200},
		{"gives up after max attempts", []func(http.ResponseWriter){status(500), status(500), status(500), status(500), status(200)},
			[]time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute}, steward.DeliveryFailed, 500},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, rc, ch := webhookEnv(t, tc.answers...)
			d, err := e.n.Enqueue(t.Context(), ch.ID, note("k"))
			if err != nil {
				t.Fatal(err)
			}
			e.sendDue(t, 1)
			for _, w := range tc.waits {
				e.clock.Add(w - time.Second)
				e.sendDue(t, 0) // not due yet
				e.clock.Add(time.Second)
				e.sendDue(t, 1)
			}
			got := e.get(t, d.ID)
			if got.Status != tc.status || got.HTTPStatus != tc.http || got.Attempt != len(tc.waits)+1 || rc.count() != len(tc.waits)+1 {
				t.Fatalf("delivery %+v after %d requests", got, rc.count())
			}
			e.clock.Add(24 * time.Hour)
			e.sendDue(t, 0) // settled: never sent again
			if tc.status == steward.DeliveryFailed && got.Error == "" {
				t.Fatal("a failed delivery has no error")
			}
		})
	}
}

func TestWebhookNetworkErrorRetried(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	e := newEnv(t, nil)
	ch := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{URL: url}})
	d, err := e.n.Enqueue(t.Context(), ch.ID, note("k"))
	if err != nil {
		t.Fatal(err)
	}
	e.sendDue(t, 1)
	got := e.get(t, d.ID)
	if got.Status != steward.DeliveryPending || got.Error == "" || !got.NextAttemptAt.Equal(e.clock.Now().Add(time.Minute)) {
		t.Fatalf("delivery %+v", got)
	}
}

func TestBackoffJitter(t *testing.T) {
	t.Parallel()
	n := New(Config{Store: nil, BaseBackoff: time.Minute, MaxBackoff: 10 * time.Minute, Jitter: func() float64 { return 0.5 }})
	for _, tc := range []struct {
		attempt int
		after   time.Duration
		want    time.Duration
	}{
		{1, 0, 45 * time.Second}, // 1m less a quarter
		{2, 0, 90 * time.Second},
		{5, 0, 7*time.Minute + 30*time.Second}, // 10m cap, less 2.5m
		{9, 0, 7*time.Minute + 30*time.Second},
		{1, 3 * time.Minute, 3 * time.Minute}, // Retry-After as given
		{1, time.Hour, 10 * time.Minute},      // capped
	} {
		if got := n.backoff(tc.attempt, tc.after); got != tc.want {
			t.Errorf("backoff(%d, %v) = %v, want %v", tc.attempt, tc.after, got, tc.want)
		}
	}
}

func TestTestNotification(t *testing.T) {
	t.Parallel()
	e, rc, ch := webhookEnv(t, status(500))
	d, err := e.n.Test(t.Context(), tenant, ch.ID, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if d.Status != steward.DeliveryPending || d.Attempt != 1 || d.HTTPStatus != 500 || rc.count() != 1 {
		t.Fatalf("test delivery %+v", d)
	}
	e.sendDue(t, 0) // the worker leaves it until its backoff
	e.clock.Add(time.Minute)
	e.sendDue(t, 1)
	if got := e.get(t, d.ID); got.Status != steward.DeliveryDelivered || got.Attempt != 2 {
		t.Fatalf("after retry %+v", got)
	}
	_, err = e.n.Test(t.Context(), "tenant-b", ch.ID, "mallory")
	if steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("another tenant's test = %v, want not found", err)
	}
}

func TestRunDelivers(t *testing.T) {
	t.Parallel()
	got := make(chan struct{}, 1)
	e, _, ch := webhookEnv(t, func(w http.ResponseWriter) { got <- struct{}{} })
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.n.Run(ctx) }()
	if _, err := e.n.Enqueue(t.Context(), ch.ID, note("k")); err != nil {
		t.Fatal(err)
	}
	<-got
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestNotifyFansOutAndSilences(t *testing.T) {
	t.Parallel()
	e, rc, _ := webhookEnv(t)
	off := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{URL: "http://127.0.0.1:1/"}})
	must(t, e.store.DeleteChannel(t.Context(), tenant, off.ID))
	ds, s, err := e.n.Notify(t.Context(), note("k"))
	if err != nil || s != nil || len(ds) != 1 {
		t.Fatalf("Notify = %v, %v, %v", ds, s, err)
	}
	sil := steward.Silence{ID: "sil-1", TenantID: tenant, Matchers: []steward.Matcher{{Name: "site", Value: "par.*", Op: steward.MatchRegexp}},
		StartsAt: e.clock.Now(), EndsAt: e.clock.Now().Add(time.Hour), CreatedBy: "alice", CreatedAt: e.clock.Now()}
	must(t, e.store.CreateSilence(t.Context(), sil))
	ds, s, err = e.n.Notify(t.Context(), note("k2"))
	if err != nil || s == nil || s.ID != "sil-1" || len(ds) != 0 {
		t.Fatalf("silenced Notify = %v, %v, %v", ds, s, err)
	}
	e.sendDue(t, 1)
	if rc.count() != 1 {
		t.Fatalf("receiver got %d, want only the unsilenced one", rc.count())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
