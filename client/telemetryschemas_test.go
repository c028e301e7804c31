package client_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/client"
)

func TestTelemetrySchemas(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	c := client.New(env.URL, env.SystemToken, nil)
	ctx := context.Background()

	sc, err := c.PutTelemetrySchema(ctx, "gw 100", []string{"cpu", "biz.*"})
	if err != nil {
		t.Fatal(err)
	}
	if sc.Model != "gw 100" || !slices.Equal(sc.Allow, []string{"cpu", "biz.*"}) {
		t.Fatalf("put = %+v", sc)
	}
	if sc, err = c.PutTelemetrySchema(ctx, "sensor", nil); err != nil || sc.Allow == nil || len(sc.Allow) != 0 {
		t.Fatalf("put with nil allow = %+v, %v; want an empty list", sc, err)
	}
	got, err := c.GetTelemetrySchema(ctx, "gw 100")
	if err != nil || got.Model != "gw 100" || !slices.Equal(got.Allow, []string{"cpu", "biz.*"}) {
		t.Fatalf("get = %+v, %v", got, err)
	}
	all, err := c.ListTelemetrySchemas(ctx)
	if err != nil || len(all) != 2 || all[0].Model != "gw 100" || all[1].Model != "sensor" {
		t.Fatalf("list = %+v, %v", all, err)
	}

	_, err = c.PutTelemetrySchema(ctx, "gw 100", []string{"no good"})
	if steward.ErrorCode(err) != steward.CodeInvalid || !client.IsStatus(err, http.StatusBadRequest) {
		t.Fatalf("bad allow: %v", err)
	}
	if err := c.DeleteTelemetrySchema(ctx, "gw 100"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetTelemetrySchema(ctx, "gw 100"); !client.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if err := c.DeleteTelemetrySchema(ctx, "gw 100"); steward.ErrorCode(err) != steward.CodeNotFound {
		t.Fatalf("delete again: %v", err)
	}
}
