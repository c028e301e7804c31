package cli_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/cli"
)

// TestTransferCommands runs the transfer to another tenant and its
// acceptance against a server that records what it was sent; usage errors
// are found before anything is sent.
func TestTransferCommands(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string // method, path and body of each request
	now := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	tr := steward.DeviceTransfer{ID: "tr-1", TenantID: "default", DeviceID: "d-1", TargetTenantID: "acme", Reason: "sold", Policy: steward.DataKeep,
		RetentionDays: 30, State: steward.TransferPending, FactoryID: "ab12", Model: "gw-100", Serial: "SN-1", CreatedAt: now, ExpiresAt: now.Add(steward.DefaultTransferTTL)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		b, _ := json.Marshal(body)
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api/v1/devices/d-1/tenant-transfer":
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(steward.TenantTransferResult{Transfer: &tr, Code: "stx-onetime"})
		case "/api/v1/transfer-acceptances":
			_ = json.NewEncoder(w).Encode(steward.TransferAcceptance{Transfer: tr, Device: steward.Device{ID: "d-2", TenantID: "acme", Serial: "SN-1", State: steward.StateRegistered}})
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	requests := func() string {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(got, "\n")
	}
	r := newRunner(srv.URL, "token")

	for _, args := range [][]string{
		{"devices", "transfer", "d-1", "--reason", "sold"},
		{"devices", "transfer", "d-1", "--owner", "x", "--to-tenant", "acme", "--reason", "sold"},
		{"devices", "transfer", "d-1", "--to-tenant", "acme"},
		{"devices", "transfer", "d-1", "--owner", "x", "--reason", "sold", "--data-policy", "keep"},
		{"devices", "accept-transfer"},
		{"devices", "transfers", "tr-1", "--incoming"},
		{"devices", "cancel-transfer"},
	} {
		if res := r.run(t, args...); res.code != cli.ExitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, res.code, cli.ExitUsage, res.stderr)
		}
	}
	if sent := requests(); sent != "" {
		t.Fatalf("usage errors sent requests: %s", sent)
	}

	res := r.run(t, "devices", "transfer", "d-1", "--to-tenant", "acme", "--reason", "sold", "--data-policy", "keep", "--retention-days", "30")
	if res.code != 0 || !strings.Contains(res.stdout, "stx-onetime") || !strings.Contains(res.stderr, "accept-transfer --code") {
		t.Fatalf("transfer: %+v", res)
	}
	out := r.ok(t, "devices", "accept-transfer", "--code", "stx-onetime")
	if !strings.Contains(out, "d-2") {
		t.Errorf("accept: %q", out)
	}
	want := []string{
		`POST /api/v1/devices/d-1/tenant-transfer {"data_policy":"keep","reason":"sold","retention_days":30,"to_tenant":"acme"}`,
		`POST /api/v1/transfer-acceptances {"code":"stx-onetime"}`,
	}
	if sent := requests(); sent != strings.Join(want, "\n") {
		t.Errorf("requests:\n%s\nwant:\n%s", sent, strings.Join(want, "\n"))
	}
}
