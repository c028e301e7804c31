package health_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/health"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// healthy is an active, online device with fresh, unremarkable telemetry.
func healthy() health.Input {
	d := steward.Device{
		ID: "d-0123456789abcdefghij", TenantID: steward.DefaultTenant, State: steward.StateActive,
		StateChangedAt: now.Add(-48 * time.Hour), CreatedAt: now.Add(-72 * time.Hour),
		Presence: steward.Presence{Online: true, ConnectedSince: now.Add(-5 * time.Hour), LastSeen: now.Add(-30 * time.Second)},
	}
	var latest []steward.Sample
	for _, m := range []struct {
		name  string
		value float64
	}{{"temperature", 45}, {"battery", 0.9}, {"disk", 0.5}, {"memory", 0.5}, {"cpu", 0.2}, {"load1", 9}} {
		latest = append(latest, steward.Sample{TenantID: d.TenantID, DeviceID: d.ID, Metric: m.name, Value: m.value, At: now.Add(-time.Minute)})
	}
	return health.Input{Device: d, Latest: latest, Now: now,
		Presence: steward.PresenceSummary{Online: true, From: now.Add(-24 * time.Hour), To: now}}
}

// metric sets the latest value of a metric.
func metric(name string, v float64) func(*health.Input) {
	return func(in *health.Input) {
		for i := range in.Latest {
			if in.Latest[i].Metric == name {
				in.Latest[i].Value = v
				return
			}
		}
		panic("no metric " + name)
	}
}

func offlineFor(d time.Duration) func(*health.Input) {
	return func(in *health.Input) {
		in.Device.Presence.Online = false
		in.Device.Presence.LastSeen = now.Add(-d)
	}
}

func events(evs ...steward.DeviceEvent) func(*health.Input) {
	return func(in *health.Input) { in.Events = append(in.Events, evs...) }
}

func event(sev steward.Severity, ago time.Duration) steward.DeviceEvent {
	return steward.DeviceEvent{Type: "crash", Severity: sev, Message: "segfault in collector", At: now.Add(-ago), Received: now.Add(-ago)}
}

func state(s steward.State, reason string) func(*health.Input) {
	return func(in *health.Input) {
		in.Device.State, in.Device.StateReason = s, reason
		in.Device.StateChangedAt = now.Add(-2 * time.Hour)
	}
}

// got shows a health summary as "level: code/level code/level…".
func got(h steward.DeviceHealth) string {
	var parts []string
	for _, r := range h.Reasons {
		parts = append(parts, r.Code+"/"+string(r.Level))
	}
	return string(h.Level) + ": " + strings.Join(parts, " ")
}

func TestEvaluate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mods []func(*health.Input)
		want string
		msg  string // in the first reason's message, when set
	}{
		{"healthy", nil, "ok: ", ""},

		{"temperature under degraded", []func(*health.Input){metric("temperature", 69.9)}, "ok: ", ""},
		{"temperature at degraded", []func(*health.Input){metric("temperature", 70)}, "degraded: temperature_high/degraded", "temperature 70 °C at 2026-11-27T11:59:00Z (degraded at ≥ 70 °C)"},
		{"temperature under critical", []func(*health.Input){metric("temperature", 84.9)}, "degraded: temperature_high/degraded", ""},
		{"temperature at critical", []func(*health.Input){metric("temperature", 85)}, "critical: temperature_high/critical", "temperature 85 °C at 2026-11-27T11:59:00Z (critical at ≥ 85 °C)"},

		{"battery over degraded", []func(*health.Input){metric("battery", 0.21)}, "ok: ", ""},
		{"battery at degraded", []func(*health.Input){metric("battery", 0.2)}, "degraded: battery_low/degraded", "battery 20% at 2026-11-27T11:59:00Z (degraded at ≤ 20%)"},
		{"battery over critical", []func(*health.Input){metric("battery", 0.11)}, "degraded: battery_low/degraded", ""},
		{"battery at critical", []func(*health.Input){metric("battery", 0.1)}, "critical: battery_low/critical", "battery 10% at 2026-11-27T11:59:00Z (critical at ≤ 10%)"},
		{"battery empty", []func(*health.Input){metric("battery", 0)}, "critical: battery_low/critical", ""},

		{"disk under degraded", []func(*health.Input){metric("disk", 0.849)}, "ok: ", ""},
		{"disk at degraded", []func(*health.Input){metric("disk", 0.85)}, "degraded: disk_full/degraded", "disk 85% at"},
		{"disk under critical", []func(*health.Input){metric("disk", 0.949)}, "degraded: disk_full/degraded", ""},
		{"disk at critical", []func(*health.Input){metric("disk", 0.95)}, "critical: disk_full/critical", "disk 95% at"},

		{"memory under degraded", []func(*health.Input){metric("memory", 0.949)}, "ok: ", ""},
		{"memory at degraded", []func(*health.Input){metric("memory", 0.95)}, "degraded: memory_high/degraded", "memory 95% at"},
		{"memory full is only degraded", []func(*health.Input){metric("memory", 1)}, "degraded: memory_high/degraded", ""},
		{"cpu under degraded", []func(*health.Input){metric("cpu", 0.949)}, "ok: ", ""},
		{"cpu at degraded", []func(*health.Input){metric("cpu", 0.95)}, "degraded: cpu_high/degraded", "cpu 95% at"},

		{"offline briefly", []func(*health.Input){offlineFor(15 * time.Minute)}, "ok: offline/ok", "offline since 2026-11-27T11:45:00Z"},
		{"offline too long", []func(*health.Input){offlineFor(15*time.Minute + time.Second)}, "critical: offline/critical",
			"offline since 2026-11-27T11:44:59Z (more than 15m)"},
		{"never connected, new", []func(*health.Input){func(in *health.Input) {
			in.Device.Presence = steward.Presence{}
			in.Device.CreatedAt = now.Add(-10 * time.Minute)
			in.Latest = nil
		}}, "ok: offline/ok no_telemetry/ok", "not connected yet"},
		{"never connected, long ago", []func(*health.Input){func(in *health.Input) {
			in.Device.Presence = steward.Presence{}
			in.Latest = nil
		}}, "critical: offline/critical no_telemetry/ok", "never connected since it was created at 2026-11-24T12:00:00Z"},

		{"telemetry an hour old", []func(*health.Input){func(in *health.Input) {
			for i := range in.Latest {
				in.Latest[i].At = now.Add(-time.Hour)
			}
		}}, "ok: ", ""},
		{"stale telemetry", []func(*health.Input){func(in *health.Input) {
			for i := range in.Latest {
				in.Latest[i].At = now.Add(-time.Hour - time.Second)
			}
		}}, "degraded: stale_telemetry/degraded", "online, but no telemetry since 2026-11-27T10:59:59Z (more than 1h)"},
		{"one fresh metric is enough", []func(*health.Input){func(in *health.Input) {
			for i := range in.Latest[1:] {
				in.Latest[i+1].At = now.Add(-5 * time.Hour)
			}
		}}, "ok: ", ""},
		{"old telemetry of an offline device is not stale", []func(*health.Input){offlineFor(3 * time.Hour), func(in *health.Input) {
			for i := range in.Latest {
				in.Latest[i].At = now.Add(-3 * time.Hour)
			}
		}}, "critical: offline/critical", ""},
		{"no telemetry", []func(*health.Input){func(in *health.Input) { in.Latest = nil }}, "ok: no_telemetry/ok", "no telemetry reported"},

		{"reconnects under the rate", []func(*health.Input){func(in *health.Input) { in.Presence.Reconnects, in.Presence.ReconnectsPerHour = 143, 143.0/24 }}, "ok: ", ""},
		{"reconnects at the rate", []func(*health.Input){func(in *health.Input) { in.Presence.Reconnects, in.Presence.ReconnectsPerHour = 144, 6 }},
			"degraded: reconnects/degraded", "6 reconnects per hour over the last 24h (144 in all; degraded at 6)"},

		{"a critical event in the last hour", []func(*health.Input){events(event(steward.SeverityCritical, 59*time.Minute))},
			"critical: critical_events/critical", "1 critical event(s) in the last 1h, the latest at 2026-11-27T11:01:00Z: crash: segfault in collector"},
		{"a critical event at the window's start", []func(*health.Input){events(event(steward.SeverityCritical, time.Hour))}, "critical: critical_events/critical", ""},
		{"a critical event before the window", []func(*health.Input){events(event(steward.SeverityCritical, time.Hour+time.Second))}, "ok: ", ""},
		{"two error events", []func(*health.Input){events(event(steward.SeverityError, time.Minute), event(steward.SeverityError, 2*time.Minute),
			event(steward.SeverityError, 2*time.Hour), event(steward.SeverityWarning, time.Minute))}, "ok: ", ""},
		{"three error events", []func(*health.Input){events(event(steward.SeverityError, time.Minute), event(steward.SeverityError, 2*time.Minute),
			event(steward.SeverityError, 3*time.Minute))}, "degraded: error_events/degraded", "3 error events in the last 1h (degraded at 3)"},

		{"quarantined", []func(*health.Input){state(steward.StateQuarantined, "firmware 0.9 not allowed")}, "critical: quarantined/critical",
			"quarantined since 2026-11-27T10:00:00Z: firmware 0.9 not allowed"},
		{"maintenance", []func(*health.Input){state(steward.StateMaintenance, "battery swap")}, "ok: maintenance/ok", "in maintenance since 2026-11-27T10:00:00Z: battery swap"},
		{"maintenance excuses connection trouble", []func(*health.Input){state(steward.StateMaintenance, ""), offlineFor(5 * time.Hour),
			func(in *health.Input) { in.Presence.ReconnectsPerHour = 20 }}, "ok: maintenance/ok", ""},
		{"maintenance does not excuse heat", []func(*health.Input){state(steward.StateMaintenance, ""), metric("temperature", 90)},
			"critical: temperature_high/critical maintenance/ok", ""},
		{"decommissioned is not monitored", []func(*health.Input){state(steward.StateDecommissioned, ""), offlineFor(50 * time.Hour), metric("temperature", 99)},
			"ok: decommissioned/ok", "decommissioned since"},
		{"registered is not monitored", []func(*health.Input){state(steward.StateRegistered, ""), offlineFor(50 * time.Hour)}, "ok: not_enrolled/ok", ""},

		{"worst wins, reasons worst first", []func(*health.Input){
			state(steward.StateMaintenance, ""), metric("cpu", 0.99), metric("disk", 0.97), metric("temperature", 75),
			events(event(steward.SeverityError, time.Minute), event(steward.SeverityError, time.Minute), event(steward.SeverityError, time.Minute)),
		}, "critical: disk_full/critical temperature_high/degraded cpu_high/degraded error_events/degraded maintenance/ok", ""},
		{"all critical", []func(*health.Input){
			state(steward.StateQuarantined, "isolated"), offlineFor(time.Hour), metric("battery", 0.05),
			events(event(steward.SeverityCritical, time.Minute)),
		}, "critical: quarantined/critical offline/critical battery_low/critical critical_events/critical", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			in := healthy()
			for _, m := range tt.mods {
				m(&in)
			}
			h := health.Evaluate(in, health.DefaultRules())
			if g := got(h); g != tt.want {
				t.Fatalf("got %q, want %q\nreasons: %+v", g, tt.want, h.Reasons)
			}
			if h.DeviceID != in.Device.ID || !h.EvaluatedAt.Equal(now) || h.Reasons == nil {
				t.Fatalf("summary %+v", h)
			}
			if tt.msg != "" && !strings.Contains(h.Reasons[0].Message, tt.msg) {
				t.Fatalf("message %q does not say %q", h.Reasons[0].Message, tt.msg)
			}
		})
	}
}

// TestEvaluateRulesAreData checks that the thresholds come from the rules:
// changed rules change the outcome, and a zero rule is off.
func TestEvaluateRulesAreData(t *testing.T) {
	t.Parallel()
	in := healthy()
	metric("temperature", 60)(&in)
	offlineFor(20 * time.Minute)(&in)
	in.Presence.ReconnectsPerHour = 100

	if g := got(health.Evaluate(in, health.Rules{})); g != "ok: " {
		t.Fatalf("zero rules: %s", g)
	}
	r := health.DefaultRules()
	r.OfflineAfter = time.Hour
	r.ReconnectsPerHour = 0
	r.Metrics[0].Limits = []health.Limit{{Level: steward.HealthDegraded, Value: 55}}
	if g := got(health.Evaluate(in, r)); g != "degraded: temperature_high/degraded offline/ok" {
		t.Fatalf("changed rules: %s", g)
	}
	if d := health.DefaultRules(); d.Metrics[0].Limits[0].Value != 85 || d.OfflineAfter != 15*time.Minute {
		t.Fatalf("DefaultRules shares state with an earlier result: %+v", d)
	}
}

func BenchmarkEvaluate(b *testing.B) {
	in := healthy()
	metric("temperature", 75)(&in)
	for i := range 50 {
		in.Events = append(in.Events, event(steward.SeverityError, time.Duration(i)*time.Minute))
	}
	r := health.DefaultRules()
	b.ReportAllocs()
	for b.Loop() {
		if h := health.Evaluate(in, r); h.Level != steward.HealthDegraded {
			b.Fatal(fmt.Sprint(h))
		}
	}
}
