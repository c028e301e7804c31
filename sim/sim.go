// Package sim runs a fleet of simulated devices in one process, each a
// real agent (package agent) with its own factory identity, key, EST
// enrollment and MQTT connection. Its inventory (model, firmware,
// hardware) is drawn from a seed, and its telemetry is a seeded random
// walk, so that a run can be repeated.
package sim

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/renameio/v2"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/abslots"
	"github.com/steward-iot/steward/agent/tufclient"
)

// UnapprovedVersion is the firmware reported by the devices that
// Config.UnapprovedFirmware picks.
const UnapprovedVersion = "0.9.0-unapproved"

// Defaults of Config.
const (
	DefaultSerialPrefix      = "SIM"
	DefaultModel             = "sim-gw"
	DefaultFirmware          = "1.0.0"
	DefaultTelemetryInterval = 30 * time.Second
	DefaultConnectRate       = 50.0
	DefaultBootTime          = 2 * time.Second
)

// factoryFile keeps a device's factory identity in its state directory, so
// that a restarted simulator is the same fleet, not a new one.
const factoryFile = "factory.pem"

// Config describes the simulated fleet.
type Config struct {
	Devices      int            // how many devices (at least 1)
	Manufacturer *Manufacturer  // signs the devices' factory identities
	ESTURL       string         // https://host:8443
	ESTLabel     string         // optional EST label (tenant ID)
	MQTTAddr     string         // host:8883
	ServerCA     *x509.CertPool // verifies the server on both planes
	// StateDir holds one directory per device, named by its serial.
	StateDir string
	// SerialPrefix starts every serial: PREFIX-000001, … (default "SIM").
	SerialPrefix string
	// Models to draw from (default ["sim-gw"]).
	Models []string
	// Firmware lists, per model, the versions to draw from; a model not
	// listed reports "1.0.0".
	Firmware map[string][]string
	// Hardware revisions to draw from (default revA, revB).
	Hardware []string
	// UnapprovedFirmware is how many devices, drawn from the seed, report
	// UnapprovedVersion instead.
	UnapprovedFirmware int
	// TelemetryInterval is each device's sampling period (default 30s).
	TelemetryInterval time.Duration
	// Seed fixes the inventory draw, the telemetry walks and the jitter.
	Seed int64
	// ConnectRate is how many devices start per second, so that a fleet
	// does not arrive as one thundering herd (default 50; negative: all at
	// once).
	ConnectRate float64
	// BootTime is how long a device stays away after a reboot command
	// (default 2s).
	BootTime time.Duration
	// BackoffMin and BackoffMax bound each agent's reconnect and
	// re-enroll backoff (the agent's defaults when 0).
	BackoffMin, BackoffMax time.Duration
	// InstallFailures and HealthCheckFailures are the shares (0 to 1) of
	// devices, drawn from the seed, whose update installs fail, and whose
	// newly installed version fails its health check after the restart
	// (and is rolled back): what deployment thresholds, health gates and
	// rollback are there for. Every device installs updates into A/B slots
	// in its state directory, verified with TUF.
	InstallFailures, HealthCheckFailures float64
	// Logger receives every device's logs, tagged with its serial.
	Logger *slog.Logger
	// Clock is every device's clock (default steward.SystemClock).
	Clock steward.Clock
}

func (cfg Config) withDefaults() (Config, error) {
	switch {
	case cfg.Devices < 1:
		return cfg, steward.Errorf(steward.CodeInvalid, "the fleet needs at least one device")
	case cfg.Manufacturer == nil:
		return cfg, steward.Errorf(steward.CodeInvalid, "a manufacturer is needed to make factory identities")
	case cfg.ServerCA == nil:
		return cfg, steward.Errorf(steward.CodeInvalid, "a server CA is needed to verify the server")
	case cfg.StateDir == "":
		return cfg, steward.Errorf(steward.CodeInvalid, "a state directory is needed")
	case cfg.ESTURL == "" || cfg.MQTTAddr == "":
		return cfg, steward.Errorf(steward.CodeInvalid, "the EST URL and the MQTT address are needed")
	case cfg.UnapprovedFirmware < 0 || cfg.UnapprovedFirmware > cfg.Devices:
		return cfg, steward.Errorf(steward.CodeInvalid, "unapproved firmware count %d must be between 0 and the %d devices", cfg.UnapprovedFirmware, cfg.Devices)
	case cfg.TelemetryInterval < 0 || cfg.BootTime < 0 || cfg.BackoffMin < 0 || cfg.BackoffMax < 0:
		return cfg, steward.Errorf(steward.CodeInvalid, "durations must not be negative")
	case !(cfg.InstallFailures >= 0 && cfg.InstallFailures <= 1) || !(cfg.HealthCheckFailures >= 0 && cfg.HealthCheckFailures <= 1):
		return cfg, steward.Errorf(steward.CodeInvalid, "install and health check failure shares must be between 0 and 1")
	case math.IsNaN(cfg.ConnectRate):
		return cfg, steward.Errorf(steward.CodeInvalid, "connect rate must be a number")
	}
	if u, err := url.Parse(cfg.ESTURL); err != nil || u.Scheme != "https" || u.Host == "" {
		return cfg, steward.Errorf(steward.CodeInvalid, "EST URL must be https://host[:port], got %q", cfg.ESTURL)
	}
	if _, _, err := net.SplitHostPort(cfg.MQTTAddr); err != nil {
		return cfg, steward.Errorf(steward.CodeInvalid, "MQTT address must be host:port, got %q", cfg.MQTTAddr)
	}
	if cfg.SerialPrefix == "" {
		cfg.SerialPrefix = DefaultSerialPrefix
	}
	if !validSerial(fmt.Sprintf("%s-%06d", cfg.SerialPrefix, cfg.Devices)) {
		return cfg, steward.Errorf(steward.CodeInvalid, "serial prefix %q: use letters, digits, '-', '_' or '.'", cfg.SerialPrefix)
	}
	if len(cfg.Models) == 0 {
		cfg.Models = []string{DefaultModel}
	}
	for _, m := range cfg.Models {
		if strings.TrimSpace(m) == "" {
			return cfg, steward.Errorf(steward.CodeInvalid, "a model name is empty")
		}
	}
	for m, versions := range cfg.Firmware {
		if len(versions) == 0 {
			return cfg, steward.Errorf(steward.CodeInvalid, "firmware list of model %q is empty", m)
		}
	}
	if len(cfg.Hardware) == 0 {
		cfg.Hardware = []string{"revA", "revB"}
	}
	if cfg.TelemetryInterval == 0 {
		cfg.TelemetryInterval = DefaultTelemetryInterval
	}
	if cfg.ConnectRate == 0 {
		cfg.ConnectRate = DefaultConnectRate
	}
	if cfg.BootTime == 0 {
		cfg.BootTime = DefaultBootTime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	return cfg, nil
}

// Sim is a running simulated fleet.
type Sim struct {
	cfg     Config
	devices []*device
	started atomic.Int64
}

// device is one simulated device.
type device struct {
	index                             int
	serial, model, firmware, hardware string

	// failInstall and failHealth make this device's updates fail (see
	// Config.InstallFailures).
	failInstall, failHealth bool

	mu      sync.Mutex
	agent   *agent.Agent // the current boot's agent
	reboots int
}

// New checks cfg and draws the fleet's inventory; Run starts it.
func New(cfg Config) (*Sim, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Sim{cfg: cfg}
	r := rand.New(rand.NewPCG(uint64(cfg.Seed), 0x51e0))
	unapproved := map[int]bool{}
	for _, i := range r.Perm(cfg.Devices)[:cfg.UnapprovedFirmware] {
		unapproved[i] = true
	}
	for i := range cfg.Devices {
		d := &device{
			index:    i,
			serial:   fmt.Sprintf("%s-%06d", cfg.SerialPrefix, i+1),
			model:    cfg.Models[r.IntN(len(cfg.Models))],
			hardware: cfg.Hardware[r.IntN(len(cfg.Hardware))],
		}
		if versions := cfg.Firmware[d.model]; len(versions) > 0 {
			d.firmware = versions[r.IntN(len(versions))]
		} else {
			d.firmware = DefaultFirmware
		}
		if unapproved[i] {
			d.firmware = UnapprovedVersion
		}
		s.devices = append(s.devices, d)
	}
	// A separate stream, so that the inventory drawn above stays what it
	// was for a seed.
	fr := rand.New(rand.NewPCG(uint64(cfg.Seed), 0xfa11))
	for _, d := range s.devices {
		d.failInstall = fr.Float64() < cfg.InstallFailures
		d.failHealth = fr.Float64() < cfg.HealthCheckFailures
	}
	return s, nil
}

// Run runs a fleet until ctx ends; see Sim.Run.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// Run prepares every device's factory identity, then starts the devices
// at ConnectRate and runs them until ctx ends. It returns nil when ctx
// ends, or the first error that stops a device for good.
func (s *Sim) Run(ctx context.Context) error {
	if err := os.MkdirAll(s.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	factories := make([]tls.Certificate, len(s.devices))
	for i, d := range s.devices {
		f, err := s.factoryIdentity(d)
		if err != nil {
			return err
		}
		factories[i] = f
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	var tick <-chan time.Time
	if s.cfg.ConnectRate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / s.cfg.ConnectRate))
		defer t.Stop()
		tick = t.C
	}
	s.cfg.Logger.Info("starting simulated fleet", "devices", len(s.devices), "rate", s.cfg.ConnectRate)
start:
	for i, d := range s.devices {
		if i > 0 && tick != nil {
			select {
			case <-tick:
			case <-ctx.Done():
				break start
			}
		}
		s.started.Add(1)
		wg.Go(func() {
			if err := s.runDevice(ctx, d, factories[i]); err != nil {
				cancel(fmt.Errorf("device %s: %w", d.serial, err))
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// runDevice runs one device through its boots until ctx ends.
func (s *Sim) runDevice(ctx context.Context, d *device, factory tls.Certificate) error {
	walk := newWalk(rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(d.index)+1)))
	slots, err := abslots.Open(filepath.Join(s.deviceDir(d), "slots"), abslots.Options{InitialVersion: d.firmware})
	if err != nil {
		return err
	}
	for boot := 0; ; boot++ {
		bootCtx, reboot := context.WithCancel(ctx)
		bootedAt := s.cfg.Clock.Now()
		fetcher := &tufclient.AgentFetcher{BaseURL: s.cfg.ESTURL, Dir: filepath.Join(s.deviceDir(d), "tuf"), Logger: s.cfg.Logger.With("serial", d.serial)}
		var installer agent.Installer = slots
		if d.failInstall {
			installer = failingInstaller{slots}
		}
		var health func(context.Context) error
		if d.failHealth {
			health = func(context.Context) error { return errors.New("simulated: the service crashed after the update") }
		}
		a, err := agent.New(agent.Config{
			ESTURL:            s.cfg.ESTURL,
			ESTLabel:          s.cfg.ESTLabel,
			MQTTAddr:          s.cfg.MQTTAddr,
			ServerCA:          s.cfg.ServerCA,
			FactoryCert:       factory,
			StateDir:          s.deviceDir(d),
			Model:             d.model,
			Firmware:          cmp.Or(slots.ActiveVersion(), d.firmware),
			Hardware:          d.hardware,
			Attributes:        func() map[string]any { return s.attributes(d) },
			Telemetry:         func() map[string]float64 { return walk.sample(s.cfg.Clock.Now().Sub(bootedAt)) },
			TelemetryInterval: s.cfg.TelemetryInterval,
			BackoffMin:        s.cfg.BackoffMin,
			BackoffMax:        s.cfg.BackoffMax,
			// A reboot ends this boot's agent; the loop starts the next.
			Reboot:      func() error { reboot(); return nil },
			Installer:   installer,
			Fetcher:     fetcher,
			HealthCheck: health,
			Restart:     func() error { reboot(); return nil },
			Clock:       s.cfg.Clock,
			Logger:      s.cfg.Logger.With("serial", d.serial),
			Rand:        rand.New(rand.NewPCG(uint64(s.cfg.Seed)^0x9e3779b97f4a7c15, uint64(d.index)<<20|uint64(boot))),
			// The device twin: every key applied as it comes (twin.go).
			ConfigHandlers: s.configHandlers(d),
		})
		if err != nil {
			reboot()
			return err
		}
		fetcher.Agent = a
		d.mu.Lock()
		d.agent = a
		d.mu.Unlock()
		err = a.Run(bootCtx)
		reboot()
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
		d.mu.Lock()
		d.reboots++
		d.mu.Unlock()
		s.cfg.Logger.Info("simulated reboot", "serial", d.serial)
		t := time.NewTimer(s.cfg.BootTime)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil
		}
	}
}

func (s *Sim) deviceDir(d *device) string { return filepath.Join(s.cfg.StateDir, d.serial) }

// attributes is what a simulated device reports beside model, serial,
// firmware and hardware.
func (s *Sim) attributes(d *device) map[string]any {
	return map[string]any{
		"os":         "steward-sim",
		"os_version": "1.0",
		"kernel":     "sim",
		"hostname":   strings.ToLower(d.serial),
		"arch":       runtime.GOARCH,
		"simulated":  true,
	}
}

// factoryIdentity loads the device's factory identity, or makes and saves
// one on its first run.
func (s *Sim) factoryIdentity(d *device) (tls.Certificate, error) {
	path := filepath.Join(s.deviceDir(d), factoryFile)
	data, err := os.ReadFile(path)
	if err == nil {
		c, err := tls.X509KeyPair(data, data)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("%s: %w", path, err)
		}
		if err := c.Leaf.CheckSignatureFrom(s.cfg.Manufacturer.Certificate()); err != nil {
			return tls.Certificate{}, steward.Errorf(steward.CodeConflict, "%s was made by another manufacturer; use another state directory", path)
		}
		return c, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("read factory identity: %w", err)
	}
	c, err := s.cfg.Manufacturer.FactoryIdentity(d.serial)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("encode factory key: %w", err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})...)
	if err := os.MkdirAll(s.deviceDir(d), 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create device directory: %w", err)
	}
	if err := renameio.WriteFile(path, out, 0o600); err != nil {
		return tls.Certificate{}, fmt.Errorf("save factory identity: %w", err)
	}
	return c, nil
}

// Stats is the fleet's progress.
type Stats struct {
	Devices       int   `json:"devices"`        // in the fleet
	Started       int   `json:"started"`        // started so far (see ConnectRate)
	Enrolled      int   `json:"enrolled"`       // holding an operational certificate
	Connected     int   `json:"connected"`      // connected now
	Restricted    int   `json:"restricted"`     // connected, commands refused (quarantined)
	Reboots       int   `json:"reboots"`        // reboot commands carried out
	Commands      int64 `json:"commands"`       // commands answered in the current boots
	TelemetrySent int64 `json:"telemetry_sent"` // samples acknowledged in the current boots
}

// Stats returns the fleet's progress so far.
func (s *Sim) Stats() Stats {
	st := Stats{Devices: len(s.devices), Started: int(s.started.Load())}
	for _, d := range s.devices {
		d.mu.Lock()
		a, reboots := d.agent, d.reboots
		d.mu.Unlock()
		st.Reboots += reboots
		if a == nil {
			continue
		}
		as := a.Status()
		if as.Enrolled {
			st.Enrolled++
		}
		if as.Connected {
			st.Connected++
			if len(as.Refused) > 0 {
				st.Restricted++
			}
		}
		st.Commands += as.Commands
		st.TelemetrySent += as.TelemetrySent
	}
	return st
}

// Device is one simulated device as a caller sees it.
type Device struct {
	Serial, Model, Firmware, Hardware string       // its inventory
	DeviceID                          string       // empty until enrolled
	Status                            agent.Status // of the current boot's agent
	Reboots                           int          // reboot commands carried out
}

// Devices returns the fleet, in serial order.
func (s *Sim) Devices() []Device {
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		d.mu.Lock()
		dev := Device{Serial: d.serial, Model: d.model, Firmware: d.firmware, Hardware: d.hardware, Reboots: d.reboots}
		a := d.agent
		d.mu.Unlock()
		if a != nil {
			dev.Status = a.Status()
			dev.DeviceID = dev.Status.DeviceID
		}
		out = append(out, dev)
	}
	return out
}

// failingInstaller is a device whose installs fail (Config.InstallFailures).
type failingInstaller struct{ *abslots.Slots }

func (failingInstaller) Stage(io.Reader, string, string, string) error {
	return errors.New("simulated: writing the inactive slot failed")
}
