package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestPolicies(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()
	ch, err := c.CreateChannel(ctx, client.ChannelRequest{Name: "ops", Kind: steward.ChannelWebhook,
		Webhook: &steward.WebhookConfig{URL: "https://hooks.example.com/x"}})
	if err != nil {
		t.Fatal(err)
	}
	req := client.PolicyRequest{Name: "page", Channels: []string{ch.ID}, GroupWait: steward.Duration(time.Minute)}
	p, err := c.CreatePolicy(ctx, req)
	if err != nil || p.Name != "page" || p.GroupWait.D() != time.Minute {
		t.Fatalf("CreatePolicy = %+v, %v", p, err)
	}
	if _, err := c.CreatePolicy(ctx, client.PolicyRequest{Name: "bad", Actions: []string{"reboot"}}); steward.ErrorCode(err) != steward.CodeInvalid {
		t.Fatalf("bad policy: %v", err)
	}
	req.Order = 7
	if p, err = c.UpdatePolicy(ctx, p.ID, req); err != nil || p.Order != 7 {
		t.Fatalf("UpdatePolicy = %+v, %v", p, err)
	}
	ps, err := c.ListPolicies(ctx)
	if err != nil || len(ps) != 1 || ps[0].ID != p.ID {
		t.Fatalf("ListPolicies = %+v, %v", ps, err)
	}
	if got, err := c.GetPolicy(ctx, p.ID); err != nil || got.Order != 7 {
		t.Fatalf("GetPolicy = %+v, %v", got, err)
	}
	if err := c.DeletePolicy(ctx, p.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPolicy(ctx, p.ID); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("GetPolicy after delete: %v", err)
	}
}
