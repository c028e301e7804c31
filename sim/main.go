package sim

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// firmwareFlag collects --firmware MODEL=V1,V2 flags.
type firmwareFlag map[string][]string

// String implements flag.Value.
func (f firmwareFlag) String() string {
	var parts []string
	for m, v := range f {
		parts = append(parts, m+"="+strings.Join(v, ","))
	}
	return strings.Join(parts, " ")
}

// Set implements flag.Value: one MODEL=V1,V2.
func (f firmwareFlag) Set(s string) error {
	model, versions, ok := strings.Cut(s, "=")
	model = strings.TrimSpace(model)
	if !ok || model == "" {
		return errors.New("want MODEL=VERSION[,VERSION…]")
	}
	for _, v := range strings.Split(versions, ",") {
		if v = strings.TrimSpace(v); v != "" {
			f[model] = append(f[model], v)
		}
	}
	if len(f[model]) == 0 {
		return fmt.Errorf("no versions for model %q", model)
	}
	return nil
}

// Main is `steward sim`: it runs a simulated fleet against a Steward
// server until ctx ends, printing progress to stdout and logs to stderr.
// It returns the process exit status.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("steward sim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		devices      = fs.Int("devices", 10, "number of simulated devices")
		server       = fs.String("server", "", "Steward server `host`: EST at https://HOST:8443, MQTT at HOST:8883")
		estURL       = fs.String("est-url", "", "EST base `URL` (overrides --server)")
		mqttAddr     = fs.String("mqtt-addr", "", "MQTT over TLS `address` (overrides --server)")
		label        = fs.String("tenant", "", "EST label: the `tenant` ID, when the server needs one")
		serverCA     = fs.String("server-ca", "", "PEM `file` of the CA that signed the server's certificates (required)")
		mfrDir       = fs.String("manufacturer", "", "`directory` of the manufacturer CA; created when empty (required)")
		mfrName      = fs.String("manufacturer-name", "Steward Simulated Devices", "`name` of a manufacturer created by --manufacturer")
		initOnly     = fs.Bool("init", false, "only create (or load) the manufacturer CA, print its path and exit")
		stateDir     = fs.String("state", "steward-sim", "`directory` of the devices' keys and certificates")
		prefix       = fs.String("serial-prefix", DefaultSerialPrefix, "serial number `prefix`")
		models       = fs.String("models", DefaultModel, "comma-separated `models` to draw from")
		hardware     = fs.String("hardware", "revA,revB", "comma-separated hardware `revisions` to draw from")
		unapproved   = fs.Int("unapproved", 0, "how many devices report firmware "+UnapprovedVersion)
		failInstall  = fs.Float64("install-failures", 0, "share (0 to 1) of devices whose update installs fail")
		failHealth   = fs.Float64("health-failures", 0, "share (0 to 1) of devices whose new version fails its health check and is rolled back")
		interval     = fs.Duration("telemetry-interval", DefaultTelemetryInterval, "time between each device's telemetry samples")
		seed         = fs.Int64("seed", 1, "seed of the inventory draw, telemetry and jitter")
		rate         = fs.Float64("connect-rate", DefaultConnectRate, "devices started per second (negative: all at once)")
		reportEvery  = fs.Duration("report-interval", 10*time.Second, "time between progress lines")
		logLevel     = fs.String("log-level", "warn", "log `level`: debug, info, warn, error")
		firmwareVers = firmwareFlag{}
	)
	fs.Var(firmwareVers, "firmware", "firmware versions of a model to draw from, `MODEL=V1,V2` (repeatable; default 1.0.0)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: steward sim --devices N --server HOST --server-ca FILE --manufacturer DIR [flags]\n\n"+
			"Runs N simulated devices, each a real agent that enrolls over EST with a factory\n"+
			"certificate from the manufacturer CA and reports over MQTT. Register the CA\n"+
			"(DIR/%s) in an enrollment group first; `steward sim --init --manufacturer DIR`\n"+
			"creates it.\n\nFlags:\n", CAFile)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "steward sim: "+format+" (see --help)\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *mfrDir == "" {
		return usage("--manufacturer is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usage("--log-level: %v", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	if !*initOnly {
		if *server != "" {
			if *estURL == "" {
				*estURL = "https://" + net.JoinHostPort(*server, "8443")
			}
			if *mqttAddr == "" {
				*mqttAddr = net.JoinHostPort(*server, "8883")
			}
		}
		switch {
		case *estURL == "" || *mqttAddr == "":
			return usage("--server (or --est-url and --mqtt-addr) is required")
		case *serverCA == "":
			return usage("--server-ca is required")
		case *reportEvery <= 0:
			return usage("--report-interval must be positive")
		}
	}

	// A new manufacturer is saved only once the rest has been checked, so
	// that a mistyped command leaves nothing behind.
	mfr, created, err := loadOrNew(*mfrDir, *mfrName)
	if err != nil {
		fmt.Fprintf(stderr, "steward sim: %v\n", err)
		return 1
	}
	caPath := filepath.Join(*mfrDir, CAFile)
	saveNew := func() bool {
		if !created {
			fmt.Fprintf(stdout, "manufacturer CA %s\n", caPath)
			return true
		}
		if err := mfr.Save(*mfrDir); err != nil {
			fmt.Fprintf(stderr, "steward sim: %v\n", err)
			return false
		}
		fmt.Fprintf(stdout, "created manufacturer CA %s: register it in an enrollment group\n", caPath)
		return true
	}
	if *initOnly {
		if !saveNew() {
			return 1
		}
		return 0
	}

	caPEM, err := os.ReadFile(*serverCA)
	if err != nil {
		fmt.Fprintf(stderr, "steward sim: read server CA: %v\n", err)
		return 1
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		fmt.Fprintf(stderr, "steward sim: %s holds no PEM certificate\n", *serverCA)
		return 1
	}

	s, err := New(Config{
		Devices:             *devices,
		Manufacturer:        mfr,
		ESTURL:              *estURL,
		ESTLabel:            *label,
		MQTTAddr:            *mqttAddr,
		ServerCA:            pool,
		StateDir:            *stateDir,
		SerialPrefix:        *prefix,
		Models:              splitList(*models),
		Firmware:            firmwareVers,
		Hardware:            splitList(*hardware),
		UnapprovedFirmware:  *unapproved,
		InstallFailures:     *failInstall,
		HealthCheckFailures: *failHealth,
		TelemetryInterval:   *interval,
		Seed:                *seed,
		ConnectRate:         *rate,
		Logger:              logger,
		Clock:               steward.SystemClock{},
	})
	if err != nil {
		if steward.ErrorCode(err) == steward.CodeInvalid {
			return usage("%s", steward.ErrorMessage(err))
		}
		fmt.Fprintf(stderr, "steward sim: %v\n", err)
		return 1
	}
	if !saveNew() {
		return 1
	}

	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t := time.NewTicker(*reportEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			printStats(stdout, s.Stats())
		case err := <-done:
			printStats(stdout, s.Stats())
			if err != nil {
				fmt.Fprintf(stderr, "steward sim: %v\n", err)
				return 1
			}
			return 0
		}
	}
}

// loadOrNew loads the manufacturer saved in dir, or makes a new one (not
// saved yet; created reports it).
func loadOrNew(dir, name string) (m *Manufacturer, created bool, err error) {
	m, err = LoadManufacturer(dir)
	if err == nil {
		return m, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	if m, err = NewManufacturer(name); err != nil {
		return nil, false, err
	}
	return m, true, nil
}

func printStats(w io.Writer, st Stats) {
	fmt.Fprintf(w, "devices %d  started %d  enrolled %d  connected %d  quarantined %d  telemetry %d  commands %d  reboots %d\n",
		st.Devices, st.Started, st.Enrolled, st.Connected, st.Restricted, st.TelemetrySent, st.Commands, st.Reboots)
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
