package agent

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/agenttest"
	"github.com/steward-iot/steward/internal/testpki"
)

// agentEnv is an agent with a provisioned identity and a broker.
type agentEnv struct {
	t      *testing.T
	broker *agenttest.Broker
	agent  *Agent
	id     *Identity
	dir    string
	cancel context.CancelFunc
	done   chan error
}

const testDeviceID = "d-0123456789abcdefghij"

// newAgentEnv starts an agent; mod changes its Config, setup prepares the
// broker before the agent connects.
func newAgentEnv(t *testing.T, mod func(*Config), setup ...func(*agenttest.Broker)) *agentEnv {
	t.Helper()
	serverCA, deviceCA, factoryCA := testpki.NewCA(t, "server CA"), testpki.NewCA(t, "device CA"), testpki.NewCA(t, "factory CA")
	b := agenttest.NewBroker(t, serverCA.ServerCert(t), deviceCA.Pool())
	for _, f := range setup {
		f(b)
	}
	dir := t.TempDir()
	id := deviceIdentity(t, deviceCA, testDeviceID, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	if err := stateDir(dir).saveIdentity(id); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		ESTURL:            "https://127.0.0.1:1", // not used: the identity is fresh
		MQTTAddr:          b.Addr(),
		ServerCA:          serverCA.Pool(),
		FactoryCert:       factoryCert(t, factoryCA, "SN-0042"),
		StateDir:          dir,
		Model:             "gw-100",
		Firmware:          "1.2.0",
		Hardware:          "revB",
		Attributes:        func() map[string]any { return map[string]any{"os": "testos", "model": "overridden"} },
		Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.25} },
		TelemetryInterval: 20 * time.Millisecond,
		BackoffMin:        5 * time.Millisecond,
		BackoffMax:        20 * time.Millisecond,
		StableAfter:       time.Hour,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Rand:              rand.New(rand.NewPCG(1, 1)),
	}
	if mod != nil {
		mod(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	env := &agentEnv{t: t, broker: b, agent: a, id: id, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { env.done <- a.Run(ctx) }()
	t.Cleanup(env.stop)
	return env
}

// stop cancels the agent and waits for Run to return.
func (e *agentEnv) stop() {
	e.t.Helper()
	e.cancel()
	select {
	case err, ok := <-e.done:
		if ok && err != nil {
			e.t.Errorf("Run: %v", err)
		}
		close(e.done)
	case <-time.After(20 * time.Second):
		e.t.Fatal("Run did not return after cancel")
	}
}

func (e *agentEnv) topic(ch steward.Channel) string { return steward.Topic(e.id.DeviceID, ch) }

// command sends a command and returns the device's answer to it.
func (e *agentEnv) command(payload string, id string) steward.CommandResult {
	e.t.Helper()
	e.broker.Send(e.topic(steward.ChannelCmdReq), []byte(payload))
	var res steward.CommandResult
	e.broker.WaitFor("answer to "+id, func() bool {
		for _, m := range e.broker.Messages(e.topic(steward.ChannelCmdRes)) {
			var r steward.CommandResult
			if json.Unmarshal(m, &r) == nil && r.ID == id {
				res = r
				return true
			}
		}
		return false
	})
	return res
}

func TestAgentReportsAttributesAndTelemetry(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t, nil)
	b := e.broker
	b.WaitFor("attributes", func() bool { return len(b.Messages(e.topic(steward.ChannelAttributes))) > 0 })
	var attrs map[string]any
	if err := json.Unmarshal(b.Messages(e.topic(steward.ChannelAttributes))[0], &attrs); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"model": "gw-100", "serial": "SN-0042", "firmware": "1.2.0", "hardware": "revB", "os": "testos"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("attribute %s = %v, want %v", k, attrs[k], v)
		}
	}
	subs := b.Subscribes()
	wantSubs := []string{e.topic(steward.ChannelCmdReq), e.topic(steward.ChannelTwinDesired), e.topic(steward.ChannelUpdateJob)}
	slices.Sort(wantSubs)
	if len(subs) != 1 || !slices.Equal(subs[0], wantSubs) {
		t.Errorf("subscriptions %v, want one SUBSCRIBE of %v", subs, wantSubs)
	}

	b.WaitFor("two telemetry messages", func() bool { return len(b.Messages(e.topic(steward.ChannelTelemetry))) >= 2 })
	for _, m := range b.Messages(e.topic(steward.ChannelTelemetry)) {
		// One sample is an object, several (after an outage) an array.
		var points []point
		if m[0] == '{' {
			var p point
			if err := json.Unmarshal(m, &p); err != nil {
				t.Fatal(err)
			}
			points = []point{p}
		} else if err := json.Unmarshal(m, &points); err != nil {
			t.Fatal(err)
		}
		for _, p := range points {
			if _, err := time.Parse(time.RFC3339, p.TS); err != nil {
				t.Errorf("ts %q: %v", p.TS, err)
			}
			if p.Metrics["cpu"] != 0.25 {
				t.Errorf("metrics %v", p.Metrics)
			}
		}
	}
	b.WaitFor("status to count telemetry", func() bool { return e.agent.Status().TelemetrySent >= 2 })
	st := e.agent.Status()
	if !st.Connected || !st.Enrolled || st.DeviceID != testDeviceID || st.Connects != 1 || len(st.Refused) != 0 {
		t.Errorf("status %+v", st)
	}
	if bad := b.BadClientIDs(); len(bad) != 0 {
		t.Errorf("client IDs not matching the certificate: %v", bad)
	}
}

func TestAgentAnswersCommands(t *testing.T) {
	t.Parallel()
	var (
		reboots   atomic.Int32
		answered  atomic.Bool
		rebootEnv *agentEnv
	)
	e := newAgentEnv(t, func(c *Config) {
		c.Reboot = func() error {
			// The answer must have reached the broker before the reboot.
			for _, m := range rebootEnv.broker.Messages(rebootEnv.topic(steward.ChannelCmdRes)) {
				var r steward.CommandResult
				if json.Unmarshal(m, &r) == nil && r.ID == "c-reboot" {
					answered.Store(true)
				}
			}
			reboots.Add(1)
			return nil
		}
	})
	rebootEnv = e
	e.broker.WaitFor("connection", func() bool { return e.agent.Status().Connected })

	tests := []struct {
		name, payload, id, status, errText string
		check                              func(t *testing.T, r steward.CommandResult)
	}{
		{
			name: "ping", payload: `{"id":"c-ping","name":"ping","sent_at":"2026-01-01T00:00:00Z"}`, id: "c-ping", status: steward.CommandOK,
			check: func(t *testing.T, r steward.CommandResult) {
				if r.Result["pong"] != true {
					t.Errorf("result %v", r.Result)
				}
				if _, err := time.Parse(time.RFC3339Nano, r.Result["time"].(string)); err != nil {
					t.Errorf("time: %v", err)
				}
			},
		},
		{name: "unknown", payload: `{"id":"c-x","name":"format-disk"}`, id: "c-x", status: steward.CommandRejected, errText: `unknown command "format-disk"`},
		{name: "wrong field type", payload: `{"id":"c-bad","name":7}`, id: "c-bad", status: steward.CommandRejected, errText: `malformed command: field "name" has the wrong type`},
		{name: "unknown keys ignored", payload: `{"id":"c-extra","name":"ping","priority":9}`, id: "c-extra", status: steward.CommandOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.command(tt.payload, tt.id)
			if r.Status != tt.status || r.Error != tt.errText {
				t.Fatalf("answer %+v, want status %q error %q", r, tt.status, tt.errText)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}

	t.Run("reboot after the answer, once", func(t *testing.T) {
		r := e.command(`{"id":"c-reboot","name":"reboot"}`, "c-reboot")
		if r.Status != steward.CommandOK {
			t.Fatalf("answer %+v", r)
		}
		e.broker.WaitFor("reboot", func() bool { return reboots.Load() == 1 })
		if !answered.Load() {
			t.Fatal("Reboot was called before the answer reached the broker")
		}
		// The same command delivered again (as after a restart) is
		// answered but not carried out twice.
		n := len(e.broker.Messages(e.topic(steward.ChannelCmdRes)))
		e.broker.Send(e.topic(steward.ChannelCmdReq), []byte(`{"id":"c-reboot","name":"reboot"}`))
		e.broker.WaitFor("second answer", func() bool { return len(e.broker.Messages(e.topic(steward.ChannelCmdRes))) > n })
		var again steward.CommandResult
		msgs := e.broker.Messages(e.topic(steward.ChannelCmdRes))
		if err := json.Unmarshal(msgs[len(msgs)-1], &again); err != nil {
			t.Fatal(err)
		}
		if again.Status != steward.CommandOK || again.Result["already_done"] != true {
			t.Fatalf("repeated reboot answered %+v", again)
		}
		// A ping answered after it shows the inbox moved on without a
		// second reboot.
		e.command(`{"id":"c-after","name":"ping"}`, "c-after")
		if n := reboots.Load(); n != 1 {
			t.Fatalf("Reboot called %d times", n)
		}
	})

	t.Run("no ID, no answer", func(t *testing.T) {
		n := len(e.broker.Messages(e.topic(steward.ChannelCmdRes)))
		e.broker.Send(e.topic(steward.ChannelCmdReq), []byte(`{"name":"ping"}`))
		e.broker.Send(e.topic(steward.ChannelCmdReq), []byte(`not json`))
		e.command(`{"id":"c-last","name":"ping"}`, "c-last")
		if got := len(e.broker.Messages(e.topic(steward.ChannelCmdRes))); got != n+1 {
			t.Fatalf("%d answers, want only the one to c-last", got-n)
		}
	})
}

func TestAgentRefusesRebootWithoutHook(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t, nil)
	e.broker.WaitFor("connection", func() bool { return e.agent.Status().Connected })
	r := e.command(`{"id":"c-r","name":"reboot"}`, "c-r")
	if r.Status != steward.CommandRejected || r.Error != "reboot is not supported on this device" {
		t.Fatalf("answer %+v", r)
	}
	if _, err := os.Stat(stateDir(e.dir).path(rebootFile)); err == nil {
		t.Fatal("a refused reboot was recorded")
	}
}

func TestAgentReconnectsAndKeepsTelemetry(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t, nil)
	b := e.broker
	b.WaitFor("first connection", func() bool { return e.agent.Status().TelemetrySent >= 1 })
	b.Kick(e.id.DeviceID)
	b.WaitFor("second connection", func() bool { return e.agent.Status().Connects >= 2 && e.agent.Status().Connected })
	b.WaitFor("attributes again", func() bool { return len(b.Messages(e.topic(steward.ChannelAttributes))) >= 2 })
	// A command sent while the device was away is kept in its session and
	// answered after the reconnection.
	b.Kick(e.id.DeviceID)
	b.Send(e.topic(steward.ChannelCmdReq), []byte(`{"id":"c-offline","name":"ping"}`))
	if r := e.command(`{"id":"c-online","name":"ping"}`, "c-online"); r.Status != steward.CommandOK {
		t.Fatalf("answer %+v", r)
	}
	// Redelivery from the session may come after the new command.
	b.WaitFor("answer to the command sent while offline", func() bool {
		for _, m := range b.Messages(e.topic(steward.ChannelCmdRes)) {
			var r steward.CommandResult
			if json.Unmarshal(m, &r) == nil && r.ID == "c-offline" {
				return true
			}
		}
		return false
	})
	if st := e.agent.Status(); st.TelemetryDropped != 0 {
		t.Fatalf("samples dropped: %+v", st)
	}
}

func TestAgentRefusedSubscriptionDoesNotLoop(t *testing.T) {
	t.Parallel()
	var cmdReq, desired string
	var samples atomic.Int64
	e := newAgentEnv(t, func(c *Config) {
		c.ResubscribeInterval = 30 * time.Millisecond
		c.Telemetry = func() map[string]float64 { samples.Add(1); return map[string]float64{"cpu": 0.25} }
	}, func(b *agenttest.Broker) {
		// As for a quarantined device: commands and desired configuration
		// refused, update jobs allowed.
		cmdReq, desired = steward.Topic(testDeviceID, steward.ChannelCmdReq), steward.Topic(testDeviceID, steward.ChannelTwinDesired)
		b.SetRefused(cmdReq, desired)
	})
	b := e.broker
	b.WaitFor("a retry", func() bool { return len(b.Subscribes()) >= 2 })
	taken := samples.Load()
	b.WaitFor("two more retries", func() bool { return len(b.Subscribes()) >= 4 })
	// Samples of the quarantine are not taken, so not sent after it.
	if n := samples.Load(); n != taken {
		t.Fatalf("%d samples taken while quarantined", n-taken)
	}
	st := e.agent.Status()
	if !st.Connected || st.Connects != 1 {
		t.Fatalf("a refused subscription cost the connection: %+v", st)
	}
	if want := []steward.Channel{steward.ChannelTwinDesired, steward.ChannelCmdReq}; !slices.Equal(st.Refused, want) {
		t.Fatalf("refused %v, want %v", st.Refused, want)
	}
	retries := b.Subscribes()[1:]
	for _, filters := range retries {
		if !slices.Equal(filters, []string{cmdReq, desired}) {
			t.Fatalf("a retry asked for %v, want only the refused %v", filters, []string{cmdReq, desired})
		}
	}
	if n := len(b.Messages(e.topic(steward.ChannelAttributes))); n != 1 {
		t.Fatalf("%d attribute reports, want 1", n)
	}
	if n := len(b.Messages(e.topic(steward.ChannelTelemetry))); n != 0 {
		t.Fatalf("%d telemetry messages from a restricted device", n)
	}

	// Released: the next retry is granted and telemetry flows.
	b.SetRefused()
	b.WaitFor("subscriptions granted", func() bool { return len(e.agent.Status().Refused) == 0 })
	b.WaitFor("telemetry", func() bool { return e.agent.Status().TelemetrySent >= 2 })
	if st := e.agent.Status(); st.Connects != 1 {
		t.Fatalf("release cost the connection: %+v", st)
	}
	if r := e.command(`{"id":"c-1","name":"ping"}`, "c-1"); r.Status != steward.CommandOK {
		t.Fatalf("answer %+v", r)
	}
}

func TestAgentBuffersTelemetryWhileBrokerRefuses(t *testing.T) {
	t.Parallel()
	e := newAgentEnv(t, nil)
	b := e.broker
	b.WaitFor("first telemetry", func() bool { return e.agent.Status().TelemetrySent >= 1 })
	b.SetDown(true)
	b.Kick(e.id.DeviceID)
	b.WaitFor("samples buffered", func() bool { return e.agent.Status().TelemetryPending >= 3 })
	sent := e.agent.Status().TelemetrySent
	b.SetDown(false)
	b.WaitFor("buffer sent", func() bool { st := e.agent.Status(); return st.TelemetrySent >= sent+3 })
	// The backlog went out as a JSON array of samples.
	var batch []point
	for _, m := range b.Messages(e.topic(steward.ChannelTelemetry)) {
		var ps []point
		if m[0] == '[' && json.Unmarshal(m, &ps) == nil && len(ps) >= 3 {
			batch = ps
		}
	}
	if batch == nil {
		t.Fatal("no batch of buffered samples")
	}
	for i := 1; i < len(batch); i++ {
		if batch[i].TS < batch[i-1].TS {
			t.Fatalf("samples out of order: %v", batch)
		}
	}
	if st := e.agent.Status(); st.TelemetryDropped != 0 || st.Connects < 2 {
		t.Fatalf("status %+v", st)
	}
}
