package api

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// wantSecurityHeaders are the headers every management plane answer carries.
var wantSecurityHeaders = map[string]string{
	"X-Content-Type-Options":  "nosniff",
	"X-Frame-Options":         "DENY",
	"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
	"Referrer-Policy":         "no-referrer",
	"Cache-Control":           "no-store",
}

// checkSecurityHeaders fails the test unless h has every security header,
// and HSTS exactly when the request came over TLS. cache is the expected
// Cache-Control when it is not no-store (the public OpenAPI document may be
// cached).
func checkSecurityHeaders(t *testing.T, h http.Header, overTLS bool, cache string) {
	t.Helper()
	for k, v := range wantSecurityHeaders {
		if k == "Cache-Control" && cache != "" {
			v = cache
		}
		if got := h.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	hsts := h.Get("Strict-Transport-Security")
	if overTLS && hsts != "max-age=31536000" {
		t.Errorf("Strict-Transport-Security = %q over TLS, want max-age=31536000", hsts)
	}
	if !overTLS && hsts != "" {
		t.Errorf("Strict-Transport-Security = %q over plain HTTP, want none", hsts)
	}
}

// TestSecurityHeaders checks the headers on representative answers: public,
// authenticated, problems from handlers, from authentication and from the
// router; over plain HTTP and over TLS.
func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tlsSrv := httptest.NewTLSServer(e.api)
	t.Cleanup(tlsSrv.Close)
	routes := []struct {
		name, method, path, token string
		status                    int
		cache                     string
	}{
		{"health", "GET", "/healthz", "", 200, ""},
		{"readiness", "GET", "/readyz", "", 200, ""},
		{"openapi", "GET", "/api/v1/openapi.json", "", 200, "public, max-age=300"},
		{"authenticated list", "GET", "/api/v1/devices", e.system, 200, ""},
		{"not found problem", "GET", "/api/v1/devices/" + deviceID("none"), e.system, 404, ""},
		{"no token", "GET", "/api/v1/devices", "", 401, ""},
		{"bad token", "GET", "/api/v1/tokens", "stw_wrong", 401, ""},
		{"bad body", "POST", "/api/v1/tokens", e.system, 415, ""},
		{"router 404", "GET", "/nowhere", "", 404, ""},
		{"router 405", "PUT", "/api/v1/devices", e.system, 405, ""},
	}
	for _, rt := range routes {
		t.Run(rt.name, func(t *testing.T) {
			r := e.raw(t, rt.method, rt.path, rt.token, "", nil)
			if r.status != rt.status {
				t.Fatalf("status %d, want %d: %s", r.status, rt.status, r.body)
			}
			checkSecurityHeaders(t, r.header, false, rt.cache)
		})
		t.Run(rt.name+" over TLS", func(t *testing.T) {
			req, _ := http.NewRequest(rt.method, tlsSrv.URL+rt.path, nil)
			if rt.token != "" {
				req.Header.Set("Authorization", "Bearer "+rt.token)
			}
			resp, err := tlsSrv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != rt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, rt.status)
			}
			checkSecurityHeaders(t, resp.Header, true, rt.cache)
		})
	}
}

// TestSecurityHeadersMiddleware checks the exported middleware on a handler
// that is not the API (the node wraps /metrics with it), and that a
// forwarding header claiming https does not bring HSTS.
func TestSecurityHeadersMiddleware(t *testing.T) {
	t.Parallel()
	h := SecurityHeaders(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "metrics 1\n")
	}))
	for _, overTLS := range []bool{false, true} {
		req := httptest.NewRequest("GET", "/metrics", nil)
		req.Header.Set("X-Forwarded-Proto", "https") // trusted by nobody
		if overTLS {
			req.TLS = &tls.ConnectionState{}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), "metrics") {
			t.Fatalf("answer %d %q", rec.Code, rec.Body)
		}
		checkSecurityHeaders(t, rec.Header(), overTLS, "")
	}
}
