package server

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/metrics"
)

// scrapeMetrics fetches the management plane's /metrics, as Prometheus
// does: no token.
func (n *node) scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(n.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, b)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q, want the text exposition format", ct)
	}
	return string(b)
}

// sample returns the value of one series of an exposition, written as it
// appears there (labels sorted by name), and whether it is there.
func sample(text, series string) (float64, bool) {
	for line := range strings.Lines(text) {
		rest, ok := strings.CutPrefix(line, series+" ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		return v, err == nil
	}
	return 0, false
}

// TestMetrics runs a real agent through enrollment and telemetry and reads
// the node's metrics the way Prometheus would, then has promtool check them.
func TestMetrics(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()

	before := n.scrapeMetrics(t)
	for _, series := range []string{
		"steward_mqtt_sessions_connected",
		`steward_telemetry_samples_written_total`,
		`steward_est_enrollments_total{operation="simpleenroll",outcome="ok"}`,
		`steward_mqtt_messages_received_total{channel="telemetry"}`,
	} {
		if v, ok := sample(before, series); !ok || v != 0 {
			t.Errorf("before any device: %s = %v (present %v), want 0", series, v, ok)
		}
	}

	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)

	// An enrollment the enroller refuses: a factory certificate from a CA
	// no group registered.
	stranger := testpki.NewCA(t, "Stranger")
	if _, err := n.est(ptr(stranger.Factory(t, "SN-X"))).SimpleEnroll(ctx, mustCSR(t)); err == nil {
		t.Fatal("enrolled with an unregistered factory CA")
	}

	a := n.runAgent(t, mfr.Factory(t, "SN-0001"), "gw-100", "1.1.0")
	d := n.waitState(t, a, steward.StateActive)
	eventually(t, "telemetry stored and device online", func() bool {
		s, err := n.admin.LatestTelemetry(ctx, d.ID)
		if err != nil || len(s) == 0 {
			return false
		}
		dd, err := n.admin.GetDevice(ctx, d.ID)
		return err == nil && dd.Presence.Online
	})

	// The fleet statistics of the first scrape are cached: move past that.
	n.clock.Add(metrics.DefaultFleetTTL)
	var text string
	eventually(t, "metrics to show the device", func() bool {
		text = n.scrapeMetrics(t)
		sessions, _ := sample(text, "steward_mqtt_sessions_connected")
		written, _ := sample(text, "steward_telemetry_samples_written_total")
		return sessions == 1 && written > 0
	})
	checks := []struct {
		series string
		ok     func(float64) bool
		want   string
	}{
		{"steward_mqtt_sessions_connected", func(v float64) bool { return v == 1 }, "1"},
		{"steward_mqtt_connects_total", func(v float64) bool { return v >= 1 }, ">= 1"},
		{`steward_mqtt_messages_received_total{channel="telemetry"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
		{`steward_mqtt_messages_received_total{channel="attributes"}`, func(v float64) bool { return v >= 1 }, ">= 1"},
		{`steward_mqtt_messages_refused_total{reason="acl"}`, func(v float64) bool { return v == 0 }, "0"},
		{"steward_telemetry_samples_written_total", func(v float64) bool { return v >= 2 }, ">= 2"}, // two metrics per report
		{"steward_telemetry_batch_commit_seconds_count", func(v float64) bool { return v >= 1 }, ">= 1"},
		{"steward_telemetry_batch_samples_count", func(v float64) bool { return v >= 1 }, ">= 1"},
		{"steward_telemetry_queue_depth", func(v float64) bool { return v >= 0 }, ">= 0"},
		{`steward_est_enrollments_total{operation="simpleenroll",outcome="ok"}`, func(v float64) bool { return v == 1 }, "1"},
		{`steward_est_enrollments_total{operation="simpleenroll",outcome="unauthenticated"}`, func(v float64) bool { return v == 1 }, "1"},
		{`steward_devices{state="active",tenant="default"}`, func(v float64) bool { return v == 1 }, "1"},
		{`steward_devices{state="quarantined",tenant="default"}`, func(v float64) bool { return v == 0 }, "0"},
		{`steward_devices_online{tenant="default"}`, func(v float64) bool { return v == 1 }, "1"},
		{"go_goroutines", func(v float64) bool { return v > 0 }, "> 0"},
		{"process_resident_memory_bytes", func(v float64) bool { return v > 0 }, "> 0"},
	}
	for _, c := range checks {
		v, ok := sample(text, c.series)
		if !ok || !c.ok(v) {
			t.Errorf("%s = %v (present %v), want %s", c.series, v, ok, c.want)
		}
	}
	if t.Failed() {
		t.Logf("scraped:\n%s", text)
	}

	t.Run("promtool", func(t *testing.T) {
		if _, err := exec.LookPath("promtool"); err != nil {
			t.Skip("promtool is not installed (apt-get install prometheus); .ci/run installs it")
		}
		cmd := exec.Command("promtool", "check", "metrics")
		cmd.Stdin = strings.NewReader(text)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool check metrics: %v\n%s", err, out)
		}
	})

	t.Run("refusals are counted", func(t *testing.T) {
		op := n.enroll(t, mfr.Factory(t, "SN-0002"))
		id := op.Leaf.Subject.CommonName
		c, err := n.mqttClient(t, op, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []struct{ topic, payload string }{
			{steward.Topic(d.ID, steward.ChannelTelemetry), `{"metrics":{"cpu":1}}`}, // another device's topic
			{steward.Topic(id, steward.ChannelTelemetry), `not json`},
		} {
			tok := c.Publish(m.topic, 1, false, m.payload)
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish to %s: %v", m.topic, tok.Error())
			}
		}
		if _, err := n.mqttClient(t, stranger.Issue(t, id, "", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), id, nil); err == nil {
			t.Fatal("connected with a certificate from an unknown CA")
		}
		eventually(t, "refusals counted", func() bool {
			text := n.scrapeMetrics(t)
			acl, _ := sample(text, `steward_mqtt_messages_refused_total{reason="acl"}`)
			invalid, _ := sample(text, `steward_mqtt_messages_refused_total{reason="invalid"}`)
			cert, _ := sample(text, `steward_mqtt_connects_refused_total{reason="certificate"}`)
			return acl == 1 && invalid == 1 && cert == 1
		})
	})

	t.Run("the API still needs a token", func(t *testing.T) {
		resp, err := http.Get(n.APIURL() + "/api/v1/devices")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /api/v1/devices without a token: %s", resp.Status)
		}
		resp, err = http.Post(n.APIURL()+"/metrics", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("POST /metrics: %s, want it refused", resp.Status)
		}
	})
}

// TestMetricsOff checks that Config.NoMetrics leaves /metrics to the API,
// which does not know it.
func TestMetricsOff(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.NoMetrics = true })
	if n.Metrics != nil {
		t.Fatal("metrics made with NoMetrics")
	}
	resp, err := http.Get(n.APIURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Errorf("GET /metrics with metrics off: %s", resp.Status)
	}
	// The node still serves devices without the instrumentation.
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	a := n.runAgent(t, mfr.Factory(t, "SN-0002"), "gw-100", "1.1.0")
	n.waitState(t, a, steward.StateActive)
}

func mustCSR(t *testing.T) []byte {
	t.Helper()
	_, der := newCSR(t)
	return der
}
