package server

import (
	"io"
	"net/http"
	"testing"
)

// TestManagementPlaneHeaders checks the security headers on a live node's
// management plane, /metrics (served outside the API) included.
func TestManagementPlaneHeaders(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	want := map[string]string{
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
		"Referrer-Policy":         "no-referrer",
		"Cache-Control":           "no-store",
	}
	for _, c := range []struct {
		name, path, token string
		status            int
	}{
		{"metrics", "/metrics", "", 200},
		{"health", "/healthz", "", 200},
		{"authenticated", "/api/v1/devices", n.AdminToken, 200},
		{"problem", "/api/v1/devices/d-00000000000000000000", n.AdminToken, 404},
		{"unauthenticated", "/api/v1/devices", "", 401},
		{"unrouted", "/nowhere", "", 404},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", n.APIURL()+c.path, nil)
			if c.token != "" {
				req.Header.Set("Authorization", "Bearer "+c.token)
			}
			req.Header.Set("X-Forwarded-Proto", "https") // trusted by nobody: no HSTS
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.status)
			}
			for k, v := range want {
				if got := resp.Header.Values(k); len(got) != 1 || got[0] != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
				t.Errorf("HSTS %q on plain HTTP", h)
			}
		})
	}
}
