// Command steward-agent is Steward's reference device agent for Linux: it
// enrolls with the device's factory identity, keeps its operational
// certificate renewed, reports attributes and telemetry over MQTT and
// answers commands. See package agent.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/abslots"
	"github.com/steward-iot/steward/agent/tufclient"
)

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
	// exitReboot asks the supervisor to start the agent again after a
	// reboot command when no --reboot-command is set (EX_TEMPFAIL).
	exitReboot = 75
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

// options are the command line.
type options struct {
	server, estURL, mqttAddr, label   string
	serverCA, factoryCert, factoryKey string
	state                             string
	model, serial, firmware, hardware string
	telemetryInterval                 time.Duration
	rebootCommand, logLevel           string
	slots, healthCheck                string
}

func parse(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("steward-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.server, "server", "", "Steward server `host`: EST at https://HOST:8443, MQTT at HOST:8883")
	fs.StringVar(&o.estURL, "est-url", "", "EST base `URL` (overrides --server), e.g. https://steward.example:8443")
	fs.StringVar(&o.mqttAddr, "mqtt-addr", "", "MQTT over TLS `address` (overrides --server), e.g. steward.example:8883")
	fs.StringVar(&o.label, "tenant", "", "EST label: the `tenant` ID, when the server needs one")
	fs.StringVar(&o.serverCA, "server-ca", "", "PEM `file` of the CA that signed the server's certificates (required)")
	fs.StringVar(&o.factoryCert, "factory-cert", "", "PEM `file` of the factory (IDevID) certificate (required)")
	fs.StringVar(&o.factoryKey, "factory-key", "", "PEM `file` of the factory certificate's private key (required)")
	fs.StringVar(&o.state, "state", "/var/lib/steward-agent", "`directory` for the device key and operational certificate")
	fs.StringVar(&o.model, "model", "", "device `model` to report")
	fs.StringVar(&o.serial, "serial", "", "`serial` number to report (default: the factory certificate's subject serialNumber)")
	fs.StringVar(&o.firmware, "firmware", "", "firmware `version` to report")
	fs.StringVar(&o.hardware, "hardware", "", "hardware `revision` to report")
	fs.DurationVar(&o.telemetryInterval, "telemetry-interval", agent.DefaultTelemetryInterval, "time between telemetry samples")
	fs.StringVar(&o.rebootCommand, "reboot-command", "", "shell `command` run for a reboot command; without it the agent\n"+
		fmt.Sprintf("logs the request and exits with status %d so that its supervisor starts it again\n", exitReboot)+
		fmt.Sprintf("(systemd: Restart=on-failure or RestartForceExitStatus=%d)", exitReboot))
	fs.StringVar(&o.slots, "slots", "", "A/B slot `directory` updates are installed into (default STATE/slots; \"off\": refuse updates)")
	fs.StringVar(&o.healthCheck, "health-check", "", "shell `command` that decides, after the restart into a new version, whether it stays\n"+
		"(exit status 0) or is rolled back; without it, reaching the server is enough")
	fs.StringVar(&o.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: steward-agent --server HOST --server-ca FILE --factory-cert FILE --factory-key FILE [flags]\n\n")
		fmt.Fprintf(fs.Output(), "Enrolls the device with Steward, keeps its certificate renewed, reports\nattributes and telemetry over MQTT and answers commands. Logs go to stderr.\nSIGINT and SIGTERM stop it.\n\nExit status: 0 stopped, 1 error, 2 bad usage, %d restart requested (a reboot command, or an update that switched slots).\n\nFlags:\n", exitReboot)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if o.server != "" {
		if o.estURL == "" {
			o.estURL = "https://" + net.JoinHostPort(o.server, "8443")
		}
		if o.mqttAddr == "" {
			o.mqttAddr = net.JoinHostPort(o.server, "8883")
		}
	}
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"--server (or --est-url)", o.estURL}, {"--server (or --mqtt-addr)", o.mqttAddr},
		{"--server-ca", o.serverCA}, {"--factory-cert", o.factoryCert}, {"--factory-key", o.factoryKey},
	} {
		if f.v == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("missing %s", strings.Join(missing, ", "))
	}
	if o.telemetryInterval <= 0 {
		return nil, errors.New("--telemetry-interval must be positive")
	}
	return o, nil
}

// config turns options into an agent configuration, reading the files.
func (o *options) config(logger *slog.Logger) (agent.Config, error) {
	caPEM, err := os.ReadFile(o.serverCA)
	if err != nil {
		return agent.Config{}, fmt.Errorf("read server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return agent.Config{}, fmt.Errorf("server CA %s holds no PEM certificate", o.serverCA)
	}
	factory, err := tls.LoadX509KeyPair(o.factoryCert, o.factoryKey)
	if err != nil {
		return agent.Config{}, fmt.Errorf("load factory identity: %w", err)
	}
	return agent.Config{
		ESTURL:            o.estURL,
		ESTLabel:          o.label,
		MQTTAddr:          o.mqttAddr,
		ServerCA:          pool,
		FactoryCert:       factory,
		StateDir:          o.state,
		Model:             o.model,
		Serial:            o.serial,
		Firmware:          o.firmware,
		Hardware:          o.hardware,
		TelemetryInterval: o.telemetryInterval,
		Logger:            logger,
	}, nil
}

// rebootCommand runs the operator's reboot command through the shell.
func rebootCommand(command string, logger *slog.Logger) func() error {
	return func() error {
		out, err := exec.Command("/bin/sh", "-c", command).CombinedOutput()
		if err != nil {
			return fmt.Errorf("reboot command: %w: %s", err, strings.TrimSpace(string(out)))
		}
		logger.Info("reboot command ran", "output", strings.TrimSpace(string(out)))
		return nil
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) int {
	o, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "steward-agent: %v (see --help)\n", err)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		fmt.Fprintf(stderr, "steward-agent: --log-level: %v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := o.config(logger)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errReboot := errors.New("reboot requested")
	if o.rebootCommand != "" {
		cfg.Reboot = rebootCommand(o.rebootCommand, logger)
	} else {
		cfg.Reboot = func() error {
			logger.Warn("reboot requested; exiting for the supervisor to restart the agent", "status", exitReboot)
			cancel(errReboot)
			return nil
		}
	}
	errRestart := errors.New("restart after an update")
	var fetcher *tufclient.AgentFetcher
	if o.slots != "off" {
		if o.slots == "" {
			o.slots = filepath.Join(o.state, "slots")
		}
		slots, err := abslots.Open(o.slots, abslots.Options{InitialVersion: o.firmware})
		if err != nil {
			logger.Error("cannot start", "err", err)
			return exitError
		}
		if v := slots.ActiveVersion(); v != "" {
			cfg.Firmware = v // what is installed now, not what the flag said at first
		}
		fetcher = &tufclient.AgentFetcher{BaseURL: o.estURL, Dir: filepath.Join(o.state, "tuf"), Logger: logger}
		cfg.Installer, cfg.Fetcher = slots, fetcher
		cfg.Restart = func() error {
			logger.Warn("update switched slots; exiting for the supervisor to start the new version", "status", exitReboot)
			cancel(errRestart)
			return nil
		}
		if o.healthCheck != "" {
			cfg.HealthCheck = healthCheck(o.healthCheck, logger)
		}
	}
	a, err := agent.New(cfg)
	if err != nil {
		logger.Error("cannot start", "err", err)
		return exitError
	}
	if fetcher != nil {
		fetcher.Agent = a
	}
	if err := a.Run(ctx); err != nil {
		logger.Error("agent failed", "err", err)
		return exitError
	}
	if cause := context.Cause(ctx); errors.Is(cause, errReboot) || errors.Is(cause, errRestart) {
		return exitReboot
	}
	return exitOK
}
