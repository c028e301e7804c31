package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/quarantine"
)

// TestQuarantinePolicyWindowOutOfRange sends rule windows outside what a
// quarantine rule may have (more than 0, at most
// steward.MaxQuarantineWindow) or that are no duration at all: each is
// refused, naming the window, and the stored policy stays as it was.
func TestQuarantinePolicyWindowOutOfRange(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	log := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e.api.cfg.Quarantine = quarantine.New(quarantine.Config{Store: e.store, Clock: steward.SystemClock{}, Logger: log})
	const path = "/api/v1/quarantine-policy"

	// A stored policy that is not the default, so that a refused change
	// could not pass for one that fell back to the defaults.
	def := steward.DefaultQuarantinePolicy(steward.DefaultTenant)
	rules := def.Rules
	rules.ACLDenied = steward.QuarantineRule{Enabled: true, Threshold: 5, Window: steward.Duration(30 * time.Minute)}
	e.must(t, http.StatusOK, "PUT", path, e.system, QuarantinePolicyRequest{MayPublish: def.MayPublish, MaySubscribe: def.MaySubscribe, Rules: rules})
	before := e.snapshot(t, e.system, path)

	// body puts window (JSON) into one rule of the stored rules.
	body := func(t *testing.T, rule, window string) string {
		t.Helper()
		b, err := json.Marshal(QuarantinePolicyRequest{MayPublish: def.MayPublish, MaySubscribe: def.MaySubscribe, Rules: rules})
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		m["rules"].(map[string]any)[rule].(map[string]any)["window"] = json.RawMessage(window)
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	cases := []struct {
		name, rule, window string
		detail             []string // what the detail must name
	}{
		{"a second over the limit", "acl_denied", `"168h0m1s"`, []string{"acl_denied", "window 168h0m1s", "at most 168h0m0s"}},
		{"a year", "auth_failed", `"8760h"`, []string{"auth_failed", "window 8760h0m0s", "at most 168h0m0s"}},
		{"the largest duration", "suspected_clone", `"2562047h47m16.854775807s"`, []string{"suspected_clone", "window 2562047h47m16.854775807s"}},
		{"zero", "config_changed", `"0s"`, []string{"config_changed", "window 0s", "more than 0"}},
		{"negative", "acl_denied", `"-10m"`, []string{"acl_denied", "window -10m0s", "more than 0"}},
		// Windows that are no duration fail in decoding, with
		// steward.Duration's own message.
		{"beyond a duration", "acl_denied", `"9999999999h"`, []string{`duration "9999999999h"`, `"5m"`}},
		{"no unit", "acl_denied", `"600"`, []string{`duration "600"`}},
		{"a number", "acl_denied", `600`, []string{"duration: want text"}},
		{"words", "acl_denied", `"forever"`, []string{`duration "forever"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t, "PUT", path, e.system, "application/json", strings.NewReader(body(t, tc.rule, tc.window)))
			wantInvalid(t, r, tc.detail...)
		})
	}
	e.sameAs(t, e.system, before, path)

	// The limit itself is a window a rule may have.
	var got steward.QuarantinePolicy
	e.must(t, http.StatusOK, "PUT", path, e.system, json.RawMessage(body(t, "acl_denied", `"168h"`))).decode(t, &got)
	if got.Rules.ACLDenied.Window.D() != steward.MaxQuarantineWindow {
		t.Fatalf("stored window %s, want %s", got.Rules.ACLDenied.Window.D(), steward.MaxQuarantineWindow)
	}
}
