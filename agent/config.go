// Package agent is the device side of Steward: it makes and keeps the
// device's key, enrolls over EST with the factory identity, renews the
// operational certificate, and speaks MQTT over mutual TLS (attributes,
// telemetry, commands). It links no server code: cmd/steward-agent and the
// fleet simulator (package sim) are built on it.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/url"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/config"
)

// Defaults of Config.
const (
	DefaultTelemetryInterval   = time.Minute
	DefaultBackoffMin          = time.Second
	DefaultBackoffMax          = 2 * time.Minute
	DefaultKeepAlive           = 60 * time.Second
	DefaultResubscribeInterval = 5 * time.Minute
	DefaultRenewCheck          = time.Hour
)

// Config says where the server is and who the device is.
type Config struct {
	// ESTURL is the base URL of the device plane's HTTPS listener,
	// "https://host:8443"; EST lives under /.well-known/est/ there.
	ESTURL string
	// ESTLabel is the optional EST label (a tenant ID).
	ESTLabel string
	// MQTTAddr is the broker's TLS listener, "host:8883".
	MQTTAddr string
	// ServerCA verifies the server on both planes.
	ServerCA *x509.CertPool
	// FactoryCert is the factory identity (IDevID) with its private key. It
	// authenticates the first enrollment, and a new one once the
	// operational certificate has expired.
	FactoryCert tls.Certificate
	// StateDir keeps the device's key and operational certificate.
	StateDir string

	// Model, Serial, Firmware and Hardware are reported as attributes; they
	// win over what Attributes returns. Serial defaults to the factory
	// certificate's subject serialNumber.
	Model, Serial, Firmware, Hardware string
	// Attributes returns the inventory to report on each connection. The
	// default reads /etc/os-release and /proc (see Host).
	Attributes func() map[string]any
	// Telemetry returns one sample of metrics. The default reads /proc,
	// /sys and the state directory's file system (see Host).
	Telemetry func() map[string]float64
	// TelemetryInterval is the time between samples (default one minute).
	TelemetryInterval time.Duration
	// TelemetryBuffer is how many samples are kept while the broker cannot
	// be reached; the oldest go first (default 120).
	TelemetryBuffer int

	// ConfigHandlers apply the device twin's desired configuration, one
	// per top-level key (config.Any for every key without its own; see
	// package agent/config). A key without a handler is reported with an
	// error. The applied state is kept in StateDir/twin.json.
	ConfigHandlers map[string]config.Handler

	// Reboot is called after a reboot command has been answered. Nil means
	// the device refuses reboot commands.
	Reboot func() error
	// Installer and Fetcher carry out update jobs (update/job): Fetcher
	// downloads and verifies a target (the TUF client), Installer installs
	// it A/B (abslots.Slots by default in cmd/steward-agent). Without both,
	// the device answers every job "skipped: incompatible".
	Installer Installer
	Fetcher   Fetcher
	// HealthCheck decides whether a newly installed version may stay; it
	// runs after the restart into the new slot, once the device has
	// reached the server again. Nil: reaching the server is enough.
	HealthCheck func(ctx context.Context) error
	// HealthCheckTimeout bounds HealthCheck (default 2 min).
	HealthCheckTimeout time.Duration
	// Restart restarts the device (or the application in the slot) after
	// an install switched slots, and after a rollback. Nil means the new
	// slot is live at once, and the health check runs straight away.
	Restart func() error
	// OnMessage, when set, receives the server's messages on the channels
	// the agent does not handle itself (twin/desired, update/job).
	OnMessage func(ch steward.Channel, payload []byte)

	// BackoffMin and BackoffMax bound the reconnect and re-enroll backoff
	// (defaults 1s and 2 min); StableAfter is how long a connection must
	// last for the backoff to start again from BackoffMin (default
	// BackoffMax).
	BackoffMin, BackoffMax, StableAfter time.Duration
	// KeepAlive is the MQTT keep-alive interval (default 60s).
	KeepAlive time.Duration
	// RenewCheck is the longest the agent waits before looking at its
	// certificate's age again (default 1h); the decision is taken on the
	// Clock, so a device whose clock jumps renews on time.
	RenewCheck time.Duration
	// ResubscribeInterval is how often subscriptions the broker refused
	// (as it does to a quarantined device) are asked for again on the same
	// connection, and, when none was refused, how often the commands
	// subscription is asked for again to learn of a quarantine imposed
	// during the session (default 5 min).
	ResubscribeInterval time.Duration

	// Clock decides certificate renewal and stamps samples (default
	// steward.SystemClock).
	Clock steward.Clock
	// Logger receives the agent's logs (default: discarded).
	Logger *slog.Logger
	// Rand is the source of backoff jitter; the agent serialises its use.
	// Default: a randomly seeded PCG.
	Rand *rand.Rand
}

// withDefaults checks cfg and fills in its defaults.
func (cfg Config) withDefaults() (Config, error) {
	u, err := url.Parse(cfg.ESTURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return cfg, steward.Errorf(steward.CodeInvalid, "EST URL must be https://host[:port], got %q", cfg.ESTURL)
	}
	if _, _, err := net.SplitHostPort(cfg.MQTTAddr); err != nil {
		return cfg, steward.Errorf(steward.CodeInvalid, "MQTT address must be host:port, got %q", cfg.MQTTAddr)
	}
	if cfg.ServerCA == nil {
		return cfg, steward.Errorf(steward.CodeInvalid, "a server CA is needed to verify the server")
	}
	if len(cfg.FactoryCert.Certificate) == 0 || cfg.FactoryCert.PrivateKey == nil {
		return cfg, steward.Errorf(steward.CodeInvalid, "a factory certificate with its key is needed")
	}
	if cfg.FactoryCert.Leaf == nil {
		leaf, err := x509.ParseCertificate(cfg.FactoryCert.Certificate[0])
		if err != nil {
			return cfg, steward.WrapError(steward.CodeInvalid, err, "factory certificate does not parse")
		}
		cfg.FactoryCert.Leaf = leaf
	}
	if cfg.StateDir == "" {
		return cfg, steward.Errorf(steward.CodeInvalid, "a state directory is needed")
	}
	if cfg.Serial == "" {
		cfg.Serial = cfg.FactoryCert.Leaf.Subject.SerialNumber
	}
	if cfg.TelemetryInterval < 0 || cfg.BackoffMin < 0 || cfg.BackoffMax < 0 || cfg.StableAfter < 0 || cfg.KeepAlive < 0 || cfg.ResubscribeInterval < 0 || cfg.RenewCheck < 0 {
		return cfg, steward.Errorf(steward.CodeInvalid, "durations must not be negative")
	}
	if cfg.TelemetryInterval == 0 {
		cfg.TelemetryInterval = DefaultTelemetryInterval
	}
	if cfg.TelemetryBuffer <= 0 {
		cfg.TelemetryBuffer = 120
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = DefaultBackoffMin
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = DefaultBackoffMax
	}
	if cfg.BackoffMax < cfg.BackoffMin {
		return cfg, steward.Errorf(steward.CodeInvalid, "backoff maximum %s is below its minimum %s", cfg.BackoffMax, cfg.BackoffMin)
	}
	if cfg.StableAfter == 0 {
		cfg.StableAfter = cfg.BackoffMax
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.RenewCheck == 0 {
		cfg.RenewCheck = DefaultRenewCheck
	}
	if cfg.ResubscribeInterval == 0 {
		cfg.ResubscribeInterval = DefaultResubscribeInterval
	}
	if cfg.HealthCheckTimeout <= 0 {
		cfg.HealthCheckTimeout = 2 * time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Rand == nil {
		cfg.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	if cfg.Attributes == nil || cfg.Telemetry == nil {
		h, err := NewHost("/", cfg.StateDir, cfg.Clock)
		if err != nil {
			return cfg, fmt.Errorf("read host information: %w", err)
		}
		if cfg.Attributes == nil {
			cfg.Attributes = h.Attributes
		}
		if cfg.Telemetry == nil {
			cfg.Telemetry = h.Telemetry
		}
	}
	return cfg, nil
}
