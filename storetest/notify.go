package storetest

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func webhookChannel(tenant, id, name string) steward.NotificationChannel {
	return steward.NotificationChannel{ID: id, TenantID: tenant, Name: name, Kind: steward.ChannelWebhook, Enabled: true,
		Webhook:   &steward.WebhookConfig{URL: "https://hooks.example.com/x", Secret: "s3cret", Headers: map[string]string{"Authorization": "Bearer t"}},
		CreatedAt: t0}
}

func emailChannel(tenant, id, name string) steward.NotificationChannel {
	return steward.NotificationChannel{ID: id, TenantID: tenant, Name: name, Kind: steward.ChannelEmail,
		Email: &steward.EmailConfig{To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: "smtp.example.com:587",
			Username: "u", Password: "p"},
		CreatedAt: t0}
}

func sameChannel(t *testing.T, got, want steward.NotificationChannel) {
	t.Helper()
	want.CreatedAt = stored(want.CreatedAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("channel differs:\n got %+v\nwant %+v", got, want)
	}
}

func testChannels(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	wh, em := webhookChannel(tenantA, "ch-1", "ops hook"), emailChannel(tenantA, "ch-2", "email")
	must(t, s.CreateChannel(c, wh))
	must(t, s.CreateChannel(c, em))
	got, err := s.GetChannel(c, tenantA, "ch-1")
	must(t, err)
	sameChannel(t, got, wh)
	list, err := s.ListChannels(c, tenantA)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListChannels = %+v", list)
	}
	sameChannel(t, list[0], em) // by name
	sameChannel(t, list[1], wh)
	wantCode(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-3", "ops hook")), steward.CodeConflict)
	wantCode(t, s.CreateChannel(c, webhookChannel(tenantB, "ch-1", "other")), steward.CodeConflict)

	// Isolation: B sees nothing, deletes nothing; B may use A's names.
	_, err = s.GetChannel(c, tenantB, "ch-1")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteChannel(c, tenantB, "ch-1"), steward.CodeNotFound)
	list, err = s.ListChannels(c, tenantB)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists %+v", list)
	}
	must(t, s.CreateChannel(c, webhookChannel(tenantB, "ch-b", "ops hook")))

	// An update rewrites the settings and keeps the creation time; a bad
	// one, a taken name, another tenant's or an unknown channel changes
	// nothing.
	upd := wh
	upd.Name, upd.Enabled, upd.CreatedAt = "ops hook 2", false, at(time.Hour)
	upd.Webhook = &steward.WebhookConfig{URL: "https://hooks.example.com/v2", Secret: "sealed:new", Headers: map[string]string{"X-Team": "ops"}}
	must(t, s.UpdateChannel(c, upd))
	got, err = s.GetChannel(c, tenantA, "ch-1")
	must(t, err)
	upd.CreatedAt = wh.CreatedAt
	sameChannel(t, got, upd)
	bad := upd
	bad.Webhook = &steward.WebhookConfig{URL: "ftp://x"}
	wantCode(t, s.UpdateChannel(c, bad), steward.CodeInvalid)
	taken := upd
	taken.Name = "email"
	wantCode(t, s.UpdateChannel(c, taken), steward.CodeConflict)
	other := upd
	other.TenantID = tenantB
	wantCode(t, s.UpdateChannel(c, other), steward.CodeNotFound)
	unknown := upd
	unknown.ID = "ch-none"
	wantCode(t, s.UpdateChannel(c, unknown), steward.CodeNotFound)
	got, err = s.GetChannel(c, tenantA, "ch-1")
	must(t, err)
	sameChannel(t, got, upd)

	must(t, s.DeleteChannel(c, tenantA, "ch-1"))
	_, err = s.GetChannel(c, tenantA, "ch-1")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteChannel(c, tenantA, "ch-1"), steward.CodeNotFound)
}

func testChannelsInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	cases := []struct {
		name string
		edit func(*steward.NotificationChannel)
		code steward.Code
	}{
		{"no id", func(x *steward.NotificationChannel) { x.ID = "" }, steward.CodeInvalid},
		{"unknown tenant", func(x *steward.NotificationChannel) { x.TenantID = "nobody" }, steward.CodeNotFound},
		{"no name", func(x *steward.NotificationChannel) { x.Name = " " }, steward.CodeInvalid},
		{"bad kind", func(x *steward.NotificationChannel) { x.Kind = "sms" }, steward.CodeInvalid},
		{"ftp url", func(x *steward.NotificationChannel) { x.Webhook.URL = "ftp://example.com/" }, steward.CodeInvalid},
		{"relative url", func(x *steward.NotificationChannel) { x.Webhook.URL = "/hook" }, steward.CodeInvalid},
		{"url with password", func(x *steward.NotificationChannel) { x.Webhook.URL = "https://u:p@example.com/" }, steward.CodeInvalid},
		{"header newline", func(x *steward.NotificationChannel) { x.Webhook.Headers = map[string]string{"X-A": "a\r\nB: c"} }, steward.CodeInvalid},
		{"reserved header", func(x *steward.NotificationChannel) {
			x.Webhook.Headers = map[string]string{"X-Steward-Signature": "x"}
		}, steward.CodeInvalid},
		{"both settings", func(x *steward.NotificationChannel) { x.Email = emailChannel(tenantA, "x", "x").Email }, steward.CodeInvalid},
		{"email without settings", func(x *steward.NotificationChannel) { x.Kind = steward.ChannelEmail }, steward.CodeInvalid},
		{"bad recipient", func(x *steward.NotificationChannel) {
			*x = emailChannel(tenantA, "ch-x", "x")
			x.Email.To = []string{"Ops <ops@example.com>"}
		}, steward.CodeInvalid},
		{"no smtp port", func(x *steward.NotificationChannel) {
			*x = emailChannel(tenantA, "ch-x", "x")
			x.Email.SMTPAddr = "smtp.example.com"
		}, steward.CodeInvalid},
		{"half auth", func(x *steward.NotificationChannel) {
			*x = emailChannel(tenantA, "ch-x", "x")
			x.Email.Password = ""
		}, steward.CodeInvalid},
		{"no time", func(x *steward.NotificationChannel) { x.CreatedAt = time.Time{} }, steward.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ch := webhookChannel(tenantA, "ch-x", "x")
			tc.edit(&ch)
			wantCode(t, s.CreateChannel(c, ch), tc.code)
		})
	}
	for _, tenant := range []string{tenantA, tenantB} {
		list, err := s.ListChannels(c, tenant)
		must(t, err)
		if len(list) != 0 {
			t.Fatalf("refused channels stored: %+v", list)
		}
	}
}

func silence(tenant, id string, from, to time.Duration) steward.Silence {
	return steward.Silence{ID: id, TenantID: tenant,
		Matchers: []steward.Matcher{{Name: "site", Value: "paris", Op: steward.MatchEqual}, {Name: "model", Value: "gw-.*", Op: steward.MatchRegexp}},
		StartsAt: at(from), EndsAt: at(to), CreatedBy: "alice", Comment: "maintenance", CreatedAt: t0}
}

func sameSilence(t *testing.T, got, want steward.Silence) {
	t.Helper()
	want.StartsAt, want.EndsAt, want.CreatedAt = stored(want.StartsAt), stored(want.EndsAt), stored(want.CreatedAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("silence differs:\n got %+v\nwant %+v", got, want)
	}
}

func testSilences(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	now := silence(tenantA, "sil-now", -time.Hour, time.Hour)
	later := silence(tenantA, "sil-later", time.Hour, 2*time.Hour)
	later.CreatedAt = at(time.Minute)
	past := silence(tenantA, "sil-past", -2*time.Hour, -time.Hour)
	for _, x := range []steward.Silence{now, later, past} {
		must(t, s.CreateSilence(c, x))
	}
	got, err := s.GetSilence(c, tenantA, "sil-now")
	must(t, err)
	sameSilence(t, got, now)
	list, err := s.ListSilences(c, tenantA)
	must(t, err)
	if len(list) != 3 || list[0].ID != "sil-later" {
		t.Fatalf("ListSilences = %+v", list)
	}
	active, err := s.ActiveSilences(c, tenantA, t0)
	must(t, err)
	if len(active) != 1 || active[0].ID != "sil-now" {
		t.Fatalf("ActiveSilences = %+v", active)
	}
	active, err = s.ActiveSilences(c, tenantA, at(time.Hour)) // the end is exclusive, the start inclusive
	must(t, err)
	if len(active) != 1 || active[0].ID != "sil-later" {
		t.Fatalf("ActiveSilences at the boundary = %+v", active)
	}

	// Expiring ends it now; an expired one stays as it was.
	exp, err := s.ExpireSilence(c, tenantA, "sil-now", at(time.Minute))
	must(t, err)
	if !exp.EndsAt.Equal(stored(at(time.Minute))) {
		t.Fatalf("expired silence ends %v", exp.EndsAt)
	}
	exp, err = s.ExpireSilence(c, tenantA, "sil-past", t0)
	must(t, err)
	sameSilence(t, exp, past)
	// One not started yet ends before it starts.
	exp, err = s.ExpireSilence(c, tenantA, "sil-later", t0)
	must(t, err)
	if exp.Active(t0) || exp.Active(at(time.Hour)) || !exp.EndsAt.After(exp.StartsAt) {
		t.Fatalf("expired future silence %+v", exp)
	}
	active, err = s.ActiveSilences(c, tenantA, at(2*time.Minute))
	must(t, err)
	if len(active) != 0 {
		t.Fatalf("after expiry ActiveSilences = %+v", active)
	}

	// Isolation.
	_, err = s.GetSilence(c, tenantB, "sil-now")
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.ExpireSilence(c, tenantB, "sil-later", t0)
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.CreateSilence(c, silence(tenantB, "sil-b", -time.Hour, time.Hour)))
	active, err = s.ActiveSilences(c, tenantA, at(2*time.Minute))
	must(t, err)
	if len(active) != 0 {
		t.Fatalf("tenant A sees %+v", active)
	}
	list, err = s.ListSilences(c, tenantB)
	must(t, err)
	if len(list) != 1 || list[0].ID != "sil-b" {
		t.Fatalf("tenant B lists %+v", list)
	}
}

func testSilencesInvalid(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	cases := []struct {
		name string
		edit func(*steward.Silence)
		code steward.Code
	}{
		{"no id", func(x *steward.Silence) { x.ID = "" }, steward.CodeInvalid},
		{"unknown tenant", func(x *steward.Silence) { x.TenantID = "nobody" }, steward.CodeNotFound},
		{"no matchers", func(x *steward.Silence) { x.Matchers = nil }, steward.CodeInvalid},
		{"bad op", func(x *steward.Silence) { x.Matchers[0].Op = "~" }, steward.CodeInvalid},
		{"bad regex", func(x *steward.Silence) { x.Matchers[1].Value = "gw-(" }, steward.CodeInvalid},
		{"bad label", func(x *steward.Silence) { x.Matchers[0].Name = "a b" }, steward.CodeInvalid},
		{"end before start", func(x *steward.Silence) { x.EndsAt = at(-2 * time.Hour) }, steward.CodeInvalid},
		{"end at start", func(x *steward.Silence) { x.EndsAt = x.StartsAt }, steward.CodeInvalid},
		{"no creator", func(x *steward.Silence) { x.CreatedBy = "" }, steward.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			x := silence(tenantA, "sil-x", -time.Hour, time.Hour)
			x.Matchers = append([]steward.Matcher(nil), x.Matchers...)
			tc.edit(&x)
			wantCode(t, s.CreateSilence(c, x), tc.code)
		})
	}
	list, err := s.ListSilences(c, tenantA)
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("refused silences stored: %+v", list)
	}
	_, err = s.ExpireSilence(c, tenantA, "nope", t0)
	wantCode(t, err, steward.CodeNotFound)
}

// byID orders claimed deliveries, which come in no particular order.
func byID(ds []steward.Delivery) {
	slices.SortFunc(ds, func(a, b steward.Delivery) int { return strings.Compare(a.ID, b.ID) })
}

func delivery(tenant, id, channel, key string, due time.Duration) steward.Delivery {
	return steward.Delivery{ID: id, TenantID: tenant, ChannelID: channel, NotificationKey: key,
		Payload: json.RawMessage(`{"key":"` + key + `","value":1.5}`), Status: steward.DeliveryPending,
		NextAttemptAt: at(due), CreatedAt: at(due)}
}

func testDeliveries(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-a", "a")))
	must(t, s.CreateChannel(c, webhookChannel(tenantB, "ch-b", "b")))
	d1 := delivery(tenantA, "dl-1", "ch-a", "k1", 0)
	d2 := delivery(tenantA, "dl-2", "ch-a", "k2", time.Minute)
	d3 := delivery(tenantB, "dl-3", "ch-b", "k1", -time.Minute)
	for _, d := range []steward.Delivery{d1, d2, d3} {
		must(t, s.EnqueueDelivery(c, d))
	}
	wantCode(t, s.EnqueueDelivery(c, delivery(tenantA, "dl-9", "ch-a", "k1", 0)), steward.CodeConflict)
	wantCode(t, s.EnqueueDelivery(c, delivery(tenantA, "dl-9", "ch-b", "k9", 0)), steward.CodeNotFound) // B's channel
	wantCode(t, s.EnqueueDelivery(c, delivery(tenantA, "dl-9", "ch-none", "k9", 0)), steward.CodeNotFound)
	bad := delivery(tenantA, "dl-9", "ch-a", "k9", 0)
	bad.Payload = json.RawMessage(`{`)
	wantCode(t, s.EnqueueDelivery(c, bad), steward.CodeInvalid)
	bad = delivery(tenantA, "dl-9", "ch-a", "", 0)
	wantCode(t, s.EnqueueDelivery(c, bad), steward.CodeInvalid)
	_, err := s.GetDelivery(c, tenantA, "dl-9")
	wantCode(t, err, steward.CodeNotFound)

	got, err := s.GetDelivery(c, tenantA, "dl-1")
	must(t, err)
	if string(got.Payload) != string(d1.Payload) || got.Status != steward.DeliveryPending || !got.NextAttemptAt.Equal(stored(t0)) || got.DeliveredAt != nil {
		t.Fatalf("GetDelivery = %+v", got)
	}
	_, err = s.GetDelivery(c, tenantB, "dl-1")
	wantCode(t, err, steward.CodeNotFound)

	// Claim at t0: A's and B's, across tenants; not the later one.
	claimed, err := s.ClaimDeliveries(c, t0, time.Minute, 10)
	must(t, err)
	byID(claimed)
	if len(claimed) != 2 || claimed[0].ID != "dl-1" || claimed[1].ID != "dl-3" || claimed[0].Attempt != 1 ||
		!claimed[0].NextAttemptAt.Equal(stored(at(time.Minute))) {
		t.Fatalf("ClaimDeliveries = %+v", claimed)
	}
	again, err := s.ClaimDeliveries(c, at(30*time.Second), time.Minute, 10)
	must(t, err)
	if len(again) != 0 {
		t.Fatalf("leased deliveries claimed again: %+v", again)
	}
	_, err = s.ClaimDeliveries(c, t0, time.Minute, 0)
	wantCode(t, err, steward.CodeInvalid)

	// Outcomes.
	done := claimed[0]
	deliveredAt := at(time.Second)
	done.Status, done.HTTPStatus, done.DeliveredAt, done.NextAttemptAt = steward.DeliveryDelivered, 204, &deliveredAt, deliveredAt
	must(t, s.RecordDelivery(c, done))
	got, err = s.GetDelivery(c, tenantA, "dl-1")
	must(t, err)
	if got.Status != steward.DeliveryDelivered || got.HTTPStatus != 204 || got.DeliveredAt == nil || !got.DeliveredAt.Equal(stored(deliveredAt)) || got.Attempt != 1 {
		t.Fatalf("recorded %+v", got)
	}
	other := claimed[1]
	other.TenantID = tenantA // A cannot record B's delivery
	other.Status = steward.DeliveryFailed
	wantCode(t, s.RecordDelivery(c, other), steward.CodeNotFound)
	other.TenantID, other.Status = tenantB, "lost"
	wantCode(t, s.RecordDelivery(c, other), steward.CodeInvalid)
	other.Status, other.Error, other.NextAttemptAt = steward.DeliveryPending, "boom", at(2*time.Minute)
	must(t, s.RecordDelivery(c, other))

	// A delivered one is never claimed again; a pending one when due.
	claimed, err = s.ClaimDeliveries(c, at(2*time.Minute), time.Minute, 10)
	must(t, err)
	byID(claimed)
	if len(claimed) != 2 || claimed[0].ID != "dl-2" || claimed[1].ID != "dl-3" || claimed[1].Attempt != 2 || claimed[1].Error != "boom" {
		t.Fatalf("second claim = %+v", claimed)
	}

	// The log, newest first, filtered, per tenant.
	log, err := s.ListDeliveries(c, tenantA, steward.DeliveryFilter{})
	must(t, err)
	if len(log) != 2 || log[0].ID != "dl-2" || log[1].ID != "dl-1" {
		t.Fatalf("ListDeliveries = %+v", log)
	}
	log, err = s.ListDeliveries(c, tenantA, steward.DeliveryFilter{Status: steward.DeliveryDelivered, ChannelID: "ch-a"})
	must(t, err)
	if len(log) != 1 || log[0].ID != "dl-1" {
		t.Fatalf("ListDeliveries delivered = %+v", log)
	}
	log, err = s.ListDeliveries(c, tenantA, steward.DeliveryFilter{ChannelID: "ch-b"})
	must(t, err)
	if len(log) != 0 {
		t.Fatalf("A lists B's channel's deliveries: %+v", log)
	}
	_, err = s.ListDeliveries(c, tenantA, steward.DeliveryFilter{Status: "lost"})
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.ListDeliveries(c, tenantA, steward.DeliveryFilter{Limit: 1001})
	wantCode(t, err, steward.CodeInvalid)

	// Deleting a channel deletes its deliveries.
	must(t, s.DeleteChannel(c, tenantA, "ch-a"))
	log, err = s.ListDeliveries(c, tenantA, steward.DeliveryFilter{})
	must(t, err)
	if len(log) != 0 {
		t.Fatalf("deliveries of a deleted channel: %+v", log)
	}
}

// testDeliveriesClaimConcurrent has claimers race for the same due
// deliveries: each must be handed out once.
func testDeliveriesClaimConcurrent(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateChannel(c, webhookChannel(tenantA, "ch-a", "a")))
	const n = 60
	for i := range n {
		must(t, s.EnqueueDelivery(c, delivery(tenantA, did("dl-", i), "ch-a", did("k", i), 0)))
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				ds, err := s.ClaimDeliveries(c, t0, time.Hour, 7)
				if err != nil {
					errs <- err
					return
				}
				if len(ds) == 0 {
					return
				}
				mu.Lock()
				for _, d := range ds {
					seen[d.ID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Fatalf("claimed %d distinct deliveries, want %d", len(seen), n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("delivery %s claimed %d times", id, k)
		}
	}
}
