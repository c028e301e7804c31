package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestDeviceTelemetrySeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	id := deviceID("se")
	e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
	base := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	// A sample every 20 s for two hours: 1, 2, 3, … (360 of them), and
	// one 10 minutes ago for the default window.
	var samples []steward.Sample
	for i := range 360 {
		samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: float64(i + 1), At: base.Add(time.Duration(i) * 20 * time.Second)})
	}
	recent := time.Now().UTC().Add(-10 * time.Minute).Truncate(time.Millisecond)
	samples = append(samples, steward.Sample{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: -1, At: recent})
	if err := e.store.WriteSamples(ctx, samples); err != nil {
		t.Fatal(err)
	}
	if err := e.store.RollupSamples(ctx, base, base.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/devices/" + id + "/telemetry"
	get := func(t *testing.T, query string) Series {
		t.Helper()
		var s Series
		e.must(t, http.StatusOK, "GET", path+"?"+query, e.system, nil).decode(t, &s)
		return s
	}

	t.Run("raw", func(t *testing.T) {
		s := get(t, "metric=cpu&from=2026-11-20T10:00:00Z&to=2026-11-20T10:01:00Z")
		if s.Resolution != "raw" || len(s.Points) != 3 || *s.Points[2].Value != 3 || s.Points[0].Min != nil || s.Truncated {
			t.Fatalf("series %+v", s)
		}
	})
	t.Run("default window is the last hour", func(t *testing.T) {
		s := get(t, "metric=cpu")
		if s.Resolution != "raw" || len(s.Points) != 1 || *s.Points[0].Value != -1 || !s.Points[0].At.Equal(recent) {
			t.Fatalf("series %+v", s)
		}
	})
	t.Run("minutes", func(t *testing.T) {
		// from inside a minute: that minute's bucket is included.
		s := get(t, "metric=cpu&from=2026-11-20T10:00:30Z&to=2026-11-20T10:02:00Z&resolution=1m")
		if s.Resolution != "1m" || len(s.Points) != 2 {
			t.Fatalf("series %+v", s)
		}
		p := s.Points[1] // 10:01: samples 4, 5, 6
		if !p.At.Equal(base.Add(time.Minute)) || *p.Min != 4 || *p.Max != 6 || *p.Avg != 5 || *p.Count != 3 || p.Value != nil {
			t.Fatalf("minute 10:01 = %+v", p)
		}
	})
	t.Run("auto picks minutes for a day and hours for a month", func(t *testing.T) {
		s := get(t, "metric=cpu&from=2026-11-20T00:00:00Z&to=2026-11-21T00:00:00Z")
		if s.Resolution != "1m" || len(s.Points) != 120 {
			t.Fatalf("resolution %s, %d points", s.Resolution, len(s.Points))
		}
		s = get(t, "metric=cpu&from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&resolution=auto")
		if s.Resolution != "1h" || len(s.Points) != 2 || *s.Points[0].Count != 180 || *s.Points[1].Max != 360 {
			t.Fatalf("series %+v", s)
		}
	})
	t.Run("capped", func(t *testing.T) {
		s := get(t, "metric=cpu&from=2026-11-20T10:00:00Z&to=2026-11-20T12:00:00Z&resolution=raw&limit=50")
		if len(s.Points) != 50 || !s.Truncated || *s.Points[49].Value != 50 {
			t.Fatalf("%d points, truncated %v", len(s.Points), s.Truncated)
		}
		s = get(t, "metric=cpu&from=2026-11-20T10:00:00Z&to=2026-11-20T12:00:00Z&resolution=raw")
		if len(s.Points) != 360 || s.Truncated {
			t.Fatalf("%d points, truncated %v", len(s.Points), s.Truncated)
		}
	})
	t.Run("unknown metric", func(t *testing.T) {
		if s := get(t, "metric=nope&from=2026-11-20T10:00:00Z&to=2026-11-20T12:00:00Z"); len(s.Points) != 0 {
			t.Fatalf("series %+v", s)
		}
	})

	bad := map[string]string{
		"no metric":        "from=2026-11-20T10:00:00Z",
		"bad metric":       "metric=a%2Fb",
		"unknown param":    "metric=cpu&step=1m",
		"bad resolution":   "metric=cpu&resolution=5m",
		"bad from":         "metric=cpu&from=2h",
		"to before from":   "metric=cpu&from=2026-11-20T11:00:00Z&to=2026-11-20T10:00:00Z",
		"limit 0":          "metric=cpu&limit=0",
		"limit too large":  "metric=cpu&limit=5001",
		"limit not number": "metric=cpu&limit=many",
	}
	for name, query := range bad {
		t.Run(name, func(t *testing.T) {
			r := e.must(t, http.StatusBadRequest, "GET", path+"?"+query, e.system, nil)
			if p := r.problem(t); p.Code != steward.CodeInvalid {
				t.Fatalf("problem %+v", p)
			}
		})
	}
	t.Run("another tenant's device", func(t *testing.T) {
		other := e.newTenant(t, "other-se")
		e.must(t, http.StatusNotFound, "GET", path+"?metric=cpu", other, nil).problem(t)
	})
	t.Run("unknown device", func(t *testing.T) {
		e.must(t, http.StatusNotFound, "GET", fmt.Sprintf("/api/v1/devices/%s/telemetry?metric=cpu", deviceID("none")), e.system, nil).problem(t)
	})
	t.Run("no token", func(t *testing.T) {
		e.must(t, http.StatusUnauthorized, "GET", path+"?metric=cpu", "", nil).problem(t)
	})
}
