package api

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/steward-iot/steward"
)

func TestTelemetrySchemas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	var changed []string
	e.api.cfg.TelemetrySchemasChanged = func(tenantID string) {
		mu.Lock()
		changed = append(changed, tenantID)
		mu.Unlock()
	}
	const base = "/api/v1/telemetry-schemas"
	var l List[steward.TelemetrySchema]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("new tenant lists %+v", l.Items)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/gw-100", e.system, nil).problem(t)

	var sc steward.TelemetrySchema
	e.must(t, http.StatusOK, "PUT", base+"/gw-100", e.system, TelemetrySchemaRequest{Allow: []string{"cpu", "memory", "biz.*"}}).decode(t, &sc)
	if sc.TenantID != steward.DefaultTenant || sc.Model != "gw-100" || !slices.Equal(sc.Allow, []string{"cpu", "memory", "biz.*"}) || sc.UpdatedAt.IsZero() {
		t.Fatalf("PUT answered %+v", sc)
	}
	// A model with spaces and non-ASCII characters, in the path escaped.
	odd := "Sensör Unit 2"
	e.must(t, http.StatusOK, "PUT", base+"/"+url.PathEscape(odd), e.system, TelemetrySchemaRequest{Allow: []string{}}).decode(t, &sc)
	if sc.Model != odd || sc.Allow == nil || len(sc.Allow) != 0 {
		t.Fatalf("PUT %q answered %+v", odd, sc)
	}
	e.must(t, http.StatusOK, "GET", base+"/gw-100", e.system, nil).decode(t, &sc)
	if !slices.Equal(sc.Allow, []string{"cpu", "memory", "biz.*"}) {
		t.Fatalf("GET answered %+v", sc)
	}
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 2 || l.Items[0].Model != odd || l.Items[1].Model != "gw-100" {
		t.Fatalf("list = %+v", l.Items)
	}

	// Another tenant sees none of it and cannot delete it.
	other := e.newTenant(t, "other")
	e.must(t, http.StatusOK, "GET", base, other, nil).decode(t, &l)
	if len(l.Items) != 0 {
		t.Fatalf("other tenant lists %+v", l.Items)
	}
	e.must(t, http.StatusNotFound, "GET", base+"/gw-100", other, nil).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", base+"/gw-100", other, nil).problem(t)

	e.must(t, http.StatusNoContent, "DELETE", base+"/gw-100", e.system, nil)
	e.must(t, http.StatusNotFound, "GET", base+"/gw-100", e.system, nil).problem(t)
	e.must(t, http.StatusNotFound, "DELETE", base+"/gw-100", e.system, nil).problem(t)

	mu.Lock()
	defer mu.Unlock()
	if want := []string{steward.DefaultTenant, steward.DefaultTenant, steward.DefaultTenant}; !slices.Equal(changed, want) {
		t.Fatalf("intake told of changes %v, want %v (two puts, one delete)", changed, want)
	}
}

func TestTelemetrySchemasInvalid(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const base = "/api/v1/telemetry-schemas"
	e.must(t, http.StatusOK, "PUT", base+"/gw-100", e.system, TelemetrySchemaRequest{Allow: []string{"cpu"}})
	cases := []struct {
		name, path, ctype, body string
		status                  int
		code                    steward.Code
	}{
		{"bad metric name", "/gw-100", "application/json", `{"allow":["cpu","temp °C"]}`, 400, steward.CodeInvalid},
		{"bare star", "/gw-100", "application/json", `{"allow":["*"]}`, 400, steward.CodeInvalid},
		{"star without dot", "/gw-100", "application/json", `{"allow":["biz*"]}`, 400, steward.CodeInvalid},
		{"duplicate", "/gw-100", "application/json", `{"allow":["cpu","cpu"]}`, 400, steward.CodeInvalid},
		{"too many", "/gw-100", "application/json", manyNames(steward.MaxSchemaAllowLength + 1), 400, steward.CodeInvalid},
		{"allow missing", "/gw-100", "application/json", `{}`, 400, steward.CodeInvalid},
		{"allow null", "/gw-100", "application/json", `{"allow":null}`, 400, steward.CodeInvalid},
		{"allow not a list", "/gw-100", "application/json", `{"allow":"cpu"}`, 400, steward.CodeInvalid},
		{"unknown field", "/gw-100", "application/json", `{"allow":["cpu"],"deny":["x"]}`, 400, steward.CodeInvalid},
		{"not JSON", "/gw-100", "text/plain", `allow=cpu`, 415, steward.CodeUnsupported},
		{"model with spaces around", "/%20gw-100", "application/json", `{"allow":["cpu"]}`, 400, steward.CodeInvalid},
		{"model too long", "/" + strings.Repeat("m", steward.MaxModelLen+1), "application/json", `{"allow":["cpu"]}`, 400, steward.CodeInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t, "PUT", base+tc.path, e.system, tc.ctype, strings.NewReader(tc.body))
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if p := r.problem(t); p.Code != tc.code {
				t.Fatalf("code %q, want %q", p.Code, tc.code)
			}
		})
	}
	// Nothing changed.
	var l List[steward.TelemetrySchema]
	e.must(t, http.StatusOK, "GET", base, e.system, nil).decode(t, &l)
	if len(l.Items) != 1 || !slices.Equal(l.Items[0].Allow, []string{"cpu"}) {
		t.Fatalf("after refused puts the schemas are %+v", l.Items)
	}
	e.must(t, http.StatusBadRequest, "GET", base+"?model=x", e.system, nil).problem(t)
	e.must(t, http.StatusNotFound, "GET", base+"/%20gw", e.system, nil).problem(t)
	e.must(t, http.StatusUnauthorized, "GET", base, "", nil).problem(t)
}

// manyNames is a request body allowing n distinct metrics.
func manyNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf(`"m%04d"`, i)
	}
	return `{"allow":[` + strings.Join(names, ",") + `]}`
}
