package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/steward-iot/steward"
)

// benchEnv is a test server with 100 devices in the default tenant.
func benchEnv(b *testing.B) *testEnv {
	b.Helper()
	e := newEnv(b)
	for i := range 100 {
		e.addDevice(b, steward.DefaultTenant, deviceID(fmt.Sprintf("b%03d", i)), "gw-100", map[string]string{"n": fmt.Sprint(i)})
	}
	return e
}

// BenchmarkGetDevice is one authenticated read through the whole handler
// chain (request ID, token lookup, service, store, JSON), in process.
func BenchmarkGetDevice(b *testing.B) {
	e := benchEnv(b)
	path := "/api/v1/devices/" + deviceID("b042")
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("Authorization", "Bearer "+e.system)
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkListDevices is a page of 100 devices over loopback HTTP, the
// console's and the CLI's most common call.
func BenchmarkListDevices(b *testing.B) {
	e := benchEnv(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/api/v1/devices?limit=100", nil)
		req.Header.Set("Authorization", "Bearer "+e.system)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("status %d", resp.StatusCode)
		}
	}
}

// BenchmarkRefusedToken is the cost of turning away a bad token, which an
// attacker can make the server pay at will.
func BenchmarkRefusedToken(b *testing.B) {
	e := newEnv(b)
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest("GET", "/api/v1/devices", nil)
		req.Header.Set("Authorization", "Bearer stw_not-a-token")
		rec := httptest.NewRecorder()
		e.api.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			b.Fatalf("status %d", rec.Code)
		}
	}
}
