package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestNotifications(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	t.Cleanup(hook.Close)

	ch, err := c.CreateChannel(ctx, client.ChannelRequest{Name: "ops", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: hook.URL, Secret: "k"}})
	if err != nil || ch.Webhook == nil || !ch.Webhook.SecretSet || !ch.Enabled {
		t.Fatalf("CreateChannel = %+v, %v", ch, err)
	}
	if _, err := c.CreateChannel(ctx, client.ChannelRequest{Name: "bad", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: "ftp://x"}}); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("bad channel: %v", err)
	}
	chs, err := c.ListChannels(ctx)
	if err != nil || len(chs) != 1 || chs[0].ID != ch.ID {
		t.Fatalf("ListChannels = %+v, %v", chs, err)
	}
	d, err := c.TestChannel(ctx, ch.ID)
	if err != nil || d.Status != steward.DeliveryPending || d.HTTPStatus != 503 || d.Error == "" {
		t.Fatalf("TestChannel = %+v, %v", d, err)
	}
	ds, err := c.ListDeliveries(ctx, steward.DeliveryFilter{ChannelID: ch.ID, Status: steward.DeliveryPending})
	if err != nil || len(ds) != 1 || ds[0].ID != d.ID {
		t.Fatalf("ListDeliveries = %+v, %v", ds, err)
	}

	s, err := c.CreateSilence(ctx, client.SilenceRequest{Matchers: []steward.Matcher{{Name: "site", Op: "=", Value: "paris"}},
		EndsAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	active, err := c.ListSilences(ctx, true)
	if err != nil || len(active) != 1 {
		t.Fatalf("ListSilences = %+v, %v", active, err)
	}
	if _, err := c.ExpireSilence(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	if active, err = c.ListSilences(ctx, true); err != nil || len(active) != 0 {
		t.Fatalf("after expiry = %+v, %v", active, err)
	}
	if err := c.DeleteChannel(ctx, ch.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetChannel(ctx, ch.ID); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("GetChannel after delete: %v", err)
	}
}
