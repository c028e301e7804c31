package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"github.com/steward-iot/steward/client"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/server"
	"github.com/steward-iot/steward/sim"
)

// demoGroup is the enrollment group the demo registers.
const demoGroup = "demo-fleet"

// demo runs a node on a demo data directory with a simulated fleet: a
// manufacturer CA registered in an enrollment group, and devices that
// enroll with zero touch, a few of them on firmware the group does not
// approve so that quarantine shows.
func demo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	serverFlags(fs, &cfg, "steward-demo")
	devices := fs.Int("devices", 25, "simulated devices")
	unapproved := fs.Int("unapproved", 3, "devices reporting unapproved firmware (quarantined)")
	interval := fs.Duration("telemetry-interval", 10*time.Second, "telemetry period of each simulated device")
	verbose := fs.Bool("v", false, "log at debug level")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// The demo listens on loopback only unless told otherwise.
	if cfg.MQTTAddr == ":8883" {
		cfg.MQTTAddr = "127.0.0.1:8883"
	}
	if cfg.DeviceAddr == ":8443" {
		cfg.DeviceAddr = "127.0.0.1:8443"
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	cfg.Logger = log
	if err := runDemo(ctx, cfg, *devices, *unapproved, *interval, stdout, log); err != nil {
		fmt.Fprintln(stderr, "steward demo:", err)
		return 1
	}
	return 0
}

func runDemo(ctx context.Context, cfg server.Config, devices, unapproved int, interval time.Duration, stdout io.Writer, log *slog.Logger) error {
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return err
	}
	srv.Start()
	defer srv.Close()

	mfrDir := filepath.Join(cfg.DataDir, "manufacturer")
	mfr, err := sim.LoadManufacturer(mfrDir)
	if errors.Is(err, os.ErrNotExist) {
		if mfr, err = sim.NewManufacturer("Demo Devices Inc."); err == nil {
			err = mfr.Save(mfrDir)
		}
	}
	if err != nil {
		return fmt.Errorf("demo manufacturer: %w", err)
	}
	models := []string{"gw-100", "sensor-20"}
	firmware := map[string][]string{"gw-100": {"1.4.0", "1.4.1"}, "sensor-20": {"2.0.0", "2.1.0"}}
	// The group also approves the release the demo offers to deploy.
	approved := map[string][]string{"gw-100": {"1.4.0", "1.4.1", demoRelease}, "sensor-20": {"2.0.0", "2.1.0"}}
	if err := ensureDemoGroup(ctx, srv, string(mfr.CertPEM()), models, approved); err != nil {
		return err
	}
	token := srv.AdminToken
	if token == "" {
		b, err := os.ReadFile(filepath.Join(cfg.DataDir, "admin.token"))
		if err != nil {
			return fmt.Errorf("read admin token: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	release, err := ensureDemoRelease(ctx, client.New(srv.APIURL(), token, nil))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, `Steward demo is running (%d simulated devices, %d on unapproved firmware).

  management API  %s   (OpenAPI: %s/api/v1/openapi.json)
  device plane    %s (EST)   mqtts://%s
  admin token     %s
  data directory  %s

Try, in another shell:
  export STEWARD_URL=%s STEWARD_TOKEN=%s
  steward devices list
  steward devices list --query 'state = quarantined'
  steward devices list --query 'model = "gw-100" AND firmware >= "1.4.1"'
  steward compliance report

Roll out gw-firmware %s (artifact %s) in a canary and a wave. A tenth of the
devices fail to install it and a tenth fail their health check and roll back
by themselves, so the deployment pauses and says why:
  steward deployments create demo-%s --artifact %s --query 'model = "gw-100"' \
      --canary 2 --soak 20s --waves 100 --success-threshold 0.8 \
      --failure-threshold 0.2 --min-finished 3 --on-failure pause --gate reboots:1
  steward deployments list
  steward deployments get ID

Ctrl-C stops it.
`, devices, unapproved, srv.APIURL(), srv.APIURL(), srv.DeviceURL(), srv.MQTTAddr(), token, cfg.DataDir, srv.APIURL(), token,
		release.Version, release.ID, release.Version, release.ID)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(srv.ServerCAPEM())
	err = sim.Run(ctx, sim.Config{
		Devices:             devices,
		Manufacturer:        mfr,
		ESTURL:              srv.DeviceURL(),
		MQTTAddr:            srv.MQTTAddr(),
		ServerCA:            pool,
		StateDir:            filepath.Join(cfg.DataDir, "devices"),
		Models:              models,
		Firmware:            firmware,
		UnapprovedFirmware:  unapproved,
		InstallFailures:     0.1,
		HealthCheckFailures: 0.1,
		TelemetryInterval:   interval,
		Seed:                1,
		Logger:              log,
		Clock:               steward.SystemClock{},
	})
	if err != nil && ctx.Err() == nil {
		return fmt.Errorf("simulated fleet: %w", err)
	}
	return nil
}

// ensureDemoGroup registers the demo manufacturer's CA once.
func ensureDemoGroup(ctx context.Context, srv *server.Server, caPEM string, models []string, firmware map[string][]string) error {
	groups, err := srv.Prov.ListEnrollmentGroups(ctx, steward.DefaultTenant)
	if err != nil {
		return err
	}
	for _, g := range groups {
		if g.Name == demoGroup {
			return nil
		}
	}
	_, err = srv.Prov.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{
		TenantID: steward.DefaultTenant,
		Name:     demoGroup,
		CAPEM:    caPEM,
		Models:   models,
		Firmware: firmware,
		Labels:   map[string]string{"fleet": "demo"},
	}, "demo")
	return err
}

// demoRelease is the firmware version the demo offers to deploy.
const demoRelease = "1.5.0"

// ensureDemoRelease uploads a gw-100 firmware release once (published as a
// TUF target, as any upload is) and returns it.
func ensureDemoRelease(ctx context.Context, c *client.Client) (steward.Artifact, error) {
	have, _, err := c.ListArtifacts(ctx, steward.ArtifactFilter{Name: "gw-firmware"})
	if err != nil {
		return steward.Artifact{}, fmt.Errorf("list demo artifacts: %w", err)
	}
	for _, a := range have {
		if a.Version == demoRelease {
			return a, nil
		}
	}
	content := []byte(strings.Repeat("Demo Devices Inc. gw-100 firmware "+demoRelease+"\n", 4096))
	a, err := c.UploadArtifact(ctx, client.ArtifactMeta{Name: "gw-firmware", Version: demoRelease, Type: steward.ArtifactFirmware,
		CompatibleModels: []string{"gw-100"}}, bytes.NewReader(content), int64(len(content)), "")
	if err != nil {
		return steward.Artifact{}, fmt.Errorf("upload the demo release: %w", err)
	}
	return a.Artifact, nil
}
