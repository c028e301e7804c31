package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/agenttest"
	"github.com/steward-iot/steward/internal/testpki"
)

// fleetEnv is a manufacturer, an EST server trusting it and a broker
// trusting what the EST server issues.
type fleetEnv struct {
	mfr      *Manufacturer
	enroller *agenttest.Enroller
	estURL   string
	broker   *agenttest.Broker
	serverCA *testpki.CA
}

func newFleetEnv(t *testing.T) *fleetEnv {
	t.Helper()
	mfr, err := NewManufacturer("Acme Devices")
	if err != nil {
		t.Fatal(err)
	}
	serverCA := testpki.NewCA(t, "server CA")
	en := agenttest.NewEnroller(t, mfr.Certificate(), 90*24*time.Hour)
	return &fleetEnv{
		mfr: mfr, enroller: en, serverCA: serverCA,
		estURL: agenttest.NewESTServer(t, serverCA, en),
		broker: agenttest.NewBroker(t, serverCA.ServerCert(t), en.DevicePool()),
	}
}

func (e *fleetEnv) config(t *testing.T, dir string, devices int) Config {
	return Config{
		Devices:            devices,
		Manufacturer:       e.mfr,
		ESTURL:             e.estURL,
		MQTTAddr:           e.broker.Addr(),
		ServerCA:           e.serverCA.Pool(),
		StateDir:           dir,
		Models:             []string{"gw-100", "sensor-20"},
		Firmware:           map[string][]string{"gw-100": {"1.4.0", "1.4.1"}},
		UnapprovedFirmware: 2,
		TelemetryInterval:  30 * time.Millisecond,
		Seed:               42,
		ConnectRate:        -1,
		BootTime:           10 * time.Millisecond,
		BackoffMin:         5 * time.Millisecond,
		BackoffMax:         50 * time.Millisecond,
		Logger:             slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// start runs s until the returned stop is called.
func start(t *testing.T, s *Sim) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestConfigRejected(t *testing.T) {
	t.Parallel()
	mfr, _ := NewManufacturer("Acme Devices")
	pool := testpki.NewCA(t, "server CA").Pool()
	good := Config{Devices: 3, Manufacturer: mfr, ESTURL: "https://127.0.0.1:1", MQTTAddr: "127.0.0.1:1", ServerCA: pool}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"no devices", func(c *Config) { c.Devices = 0 }},
		{"no manufacturer", func(c *Config) { c.Manufacturer = nil }},
		{"no server CA", func(c *Config) { c.ServerCA = nil }},
		{"no EST URL", func(c *Config) { c.ESTURL = "" }},
		{"more unapproved than devices", func(c *Config) { c.UnapprovedFirmware = 4 }},
		{"negative unapproved", func(c *Config) { c.UnapprovedFirmware = -1 }},
		{"bad serial prefix", func(c *Config) { c.SerialPrefix = "a/b" }},
		{"empty model", func(c *Config) { c.Models = []string{"gw", " "} }},
		{"empty firmware list", func(c *Config) { c.Firmware = map[string][]string{"gw": nil} }},
		{"negative interval", func(c *Config) { c.TelemetryInterval = -time.Second }},
		{"install failure share above 1", func(c *Config) { c.InstallFailures = 1.5 }},
		{"negative health check failure share", func(c *Config) { c.HealthCheckFailures = -0.1 }},
		{"NaN failure share", func(c *Config) { c.InstallFailures = math.NaN() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := good
			cfg.StateDir = filepath.Join(t.TempDir(), "state")
			tt.mod(&cfg)
			err := Run(context.Background(), cfg)
			if steward.ErrorCode(err) != steward.CodeInvalid {
				t.Fatalf("Run: %v, want CodeInvalid", err)
			}
			if _, err := os.Stat(cfg.StateDir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a refused config wrote its state directory: %v", err)
			}
		})
	}
}

func TestInventoryDraw(t *testing.T) {
	t.Parallel()
	e := &fleetEnv{}
	e.mfr, _ = NewManufacturer("Acme Devices")
	e.serverCA = testpki.NewCA(t, "server CA")
	cfg := Config{
		Devices: 40, Manufacturer: e.mfr, ESTURL: "https://127.0.0.1:1", MQTTAddr: "127.0.0.1:1", ServerCA: e.serverCA.Pool(), StateDir: t.TempDir(),
		Models: []string{"gw-100", "sensor-20"}, Firmware: map[string][]string{"gw-100": {"1.4.0", "1.4.1"}}, UnapprovedFirmware: 7, Seed: 9,
	}
	draw := func(seed int64) []string {
		c := cfg
		c.Seed = seed
		s, err := New(c)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, d := range s.Devices() {
			out = append(out, d.Serial+" "+d.Model+" "+d.Firmware+" "+d.Hardware)
		}
		return out
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	devs := s.Devices()
	unapproved := 0
	models := map[string]int{}
	for i, d := range devs {
		if want := fmt.Sprintf("SIM-%06d", i+1); d.Serial != want {
			t.Fatalf("serial %q, want %q", d.Serial, want)
		}
		models[d.Model]++
		switch {
		case d.Firmware == UnapprovedVersion:
			unapproved++
		case d.Model == "gw-100" && !slices.Contains([]string{"1.4.0", "1.4.1"}, d.Firmware):
			t.Errorf("%s: firmware %q not from the list", d.Serial, d.Firmware)
		case d.Model == "sensor-20" && d.Firmware != DefaultFirmware:
			t.Errorf("%s: firmware %q, want the default", d.Serial, d.Firmware)
		}
		if !slices.Contains([]string{"revA", "revB"}, d.Hardware) {
			t.Errorf("%s: hardware %q", d.Serial, d.Hardware)
		}
	}
	if unapproved != 7 {
		t.Fatalf("%d devices on unapproved firmware, want 7", unapproved)
	}
	if models["gw-100"] == 0 || models["sensor-20"] == 0 {
		t.Fatalf("models not both drawn: %v", models)
	}
	if !slices.Equal(draw(9), draw(9)) {
		t.Fatal("the same seed drew another fleet")
	}
	if slices.Equal(draw(10), draw(9)) {
		t.Fatal("another seed drew the same fleet")
	}
}

// TestUpdateFailureDraw: the failure shares pick devices from the seed,
// and setting them leaves the inventory a seed draws as it was.
func TestUpdateFailureDraw(t *testing.T) {
	t.Parallel()
	mfr, _ := NewManufacturer("Acme Devices")
	base := Config{Devices: 400, Manufacturer: mfr, ESTURL: "https://127.0.0.1:1", MQTTAddr: "127.0.0.1:1",
		ServerCA: testpki.NewCA(t, "server CA").Pool(), StateDir: t.TempDir(), Seed: 3,
		Firmware: map[string][]string{DefaultModel: {"1.0.0", "1.1.0"}}}
	withShares := base
	withShares.InstallFailures, withShares.HealthCheckFailures = 0.25, 0.5
	plain, err := New(base)
	if err != nil {
		t.Fatal(err)
	}
	failing, err := New(withShares)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(plain.Devices(), failing.Devices()) {
		t.Fatal("failure shares changed the inventory drawn")
	}
	var install, health int
	for i, d := range failing.devices {
		if plain.devices[i].failInstall || plain.devices[i].failHealth {
			t.Fatal("a device fails updates with shares of 0")
		}
		if d.failInstall {
			install++
		}
		if d.failHealth {
			health++
		}
	}
	// 400 draws: the counts are near their shares (these bounds are more
	// than five standard deviations wide; the seed makes them exact anyway).
	if install < 60 || install > 140 || health < 150 || health > 250 {
		t.Fatalf("%d install failures and %d health check failures of 400, want about 100 and 200", install, health)
	}
}

func TestFleetEnrollsConnectsAndReports(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	dir := t.TempDir()
	s, err := New(e.config(t, dir, 5))
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, s)
	b := e.broker
	b.WaitFor("five connected devices", func() bool { return s.Stats().Connected == 5 })
	b.WaitFor("telemetry from every device", func() bool {
		for _, d := range s.Devices() {
			if d.Status.TelemetrySent == 0 {
				return false
			}
		}
		return true
	})
	st := s.Stats()
	if st.Devices != 5 || st.Started != 5 || st.Enrolled != 5 || st.TelemetrySent < 5 {
		t.Fatalf("stats %+v", st)
	}
	ids := map[string]string{}
	for _, d := range s.Devices() {
		msgs := b.Messages(steward.Topic(d.DeviceID, steward.ChannelAttributes))
		if len(msgs) == 0 {
			t.Fatalf("%s: no attributes", d.Serial)
		}
		var attrs map[string]any
		if err := json.Unmarshal(msgs[0], &attrs); err != nil {
			t.Fatal(err)
		}
		if attrs["serial"] != d.Serial || attrs["model"] != d.Model || attrs["firmware"] != d.Firmware || attrs["hardware"] != d.Hardware || attrs["simulated"] != true {
			t.Errorf("%s: attributes %v", d.Serial, attrs)
		}
		tel := b.Messages(steward.Topic(d.DeviceID, steward.ChannelTelemetry))
		// One sample is an object; samples taken before the connection
		// was up come as an array.
		type point struct {
			TS      string             `json:"ts"`
			Metrics map[string]float64 `json:"metrics"`
		}
		var ps []point
		if tel[0][0] == '[' {
			if err := json.Unmarshal(tel[0], &ps); err != nil {
				t.Fatal(err)
			}
		} else {
			var p point
			if err := json.Unmarshal(tel[0], &p); err != nil {
				t.Fatal(err)
			}
			ps = []point{p}
		}
		for _, p := range ps {
			if _, err := time.Parse(time.RFC3339, p.TS); err != nil {
				t.Errorf("%s: ts %q", d.Serial, p.TS)
			}
			for _, k := range []string{"cpu", "memory", "temperature", "disk", "uptime"} {
				if _, ok := p.Metrics[k]; !ok {
					t.Errorf("%s: telemetry lacks %s: %v", d.Serial, k, p.Metrics)
				}
			}
			if p.Metrics["cpu"] < 0 || p.Metrics["cpu"] > 1 {
				t.Errorf("%s: cpu %v", d.Serial, p.Metrics["cpu"])
			}
		}
		st, err := os.Stat(filepath.Join(dir, d.Serial, factoryFile))
		if err != nil || st.Mode() != 0o600 {
			t.Errorf("%s: factory identity file: %v %v", d.Serial, st, err)
		}
		ids[d.Serial] = d.DeviceID
	}
	stop()

	// A restarted simulator is the same fleet: no new enrollment.
	issued := e.enroller.Issued()
	s2, err := New(e.config(t, dir, 5))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s2)
	b.WaitFor("fleet back", func() bool { return s2.Stats().Connected == 5 })
	for _, d := range s2.Devices() {
		if ids[d.Serial] != d.DeviceID {
			t.Errorf("%s: device ID %s after restart, was %s", d.Serial, d.DeviceID, ids[d.Serial])
		}
	}
	if n := e.enroller.Issued(); n != issued {
		t.Fatalf("%d certificates issued on restart", n-issued)
	}
}

func TestFleetDeviceReboots(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	s, err := New(e.config(t, t.TempDir(), 2))
	if err != nil {
		t.Fatal(err)
	}
	start(t, s)
	b := e.broker
	b.WaitFor("connected", func() bool { return s.Stats().Connected == 2 })
	d := s.Devices()[0]
	attrs := steward.Topic(d.DeviceID, steward.ChannelAttributes)
	b.Send(steward.Topic(d.DeviceID, steward.ChannelCmdReq), []byte(`{"id":"r1","name":"reboot"}`))
	b.WaitFor("reboot", func() bool { return s.Stats().Reboots == 1 })
	b.WaitFor("back after reboot", func() bool { return len(b.Messages(attrs)) >= 2 && s.Stats().Connected == 2 })
	var res steward.CommandResult
	if err := json.Unmarshal(b.Messages(steward.Topic(d.DeviceID, steward.ChannelCmdRes))[0], &res); err != nil {
		t.Fatal(err)
	}
	if res.ID != "r1" || res.Status != steward.CommandOK {
		t.Fatalf("answer %+v", res)
	}
	if got := s.Devices()[1].Reboots; got != 0 {
		t.Fatalf("the other device rebooted %d times", got)
	}
}

func TestFleetRefusesStateOfAnotherManufacturer(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	dir := t.TempDir()
	cfg := e.config(t, dir, 1)
	cfg.UnapprovedFirmware = 0
	other, _ := NewManufacturer("Other")
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.factoryIdentity(s.devices[0]); err != nil {
		t.Fatal(err)
	}
	cfg.Manufacturer = other
	if err := Run(context.Background(), cfg); steward.ErrorCode(err) != steward.CodeConflict {
		t.Fatalf("Run: %v, want CodeConflict", err)
	}
}
