package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/server"
	"github.com/steward-iot/steward/sqlite"
)

// serverFlags registers the flags that configure a node.
func serverFlags(fs *flag.FlagSet, cfg *server.Config, defaultData string) {
	fs.StringVar(&cfg.DataDir, "data", defaultData, "data directory (SQLite store, master key, admin token)")
	fs.StringVar(&cfg.StoreURL, "store", "", "store URL: empty for SQLite in the data directory, or postgres://…")
	cfg.SQLiteCacheSize = sqlite.DefaultCacheSize
	fs.Func("sqlite-cache-size", fmt.Sprintf("most memory in bytes the SQLite writer's page cache uses (default %d; docs/operations.md)", sqlite.DefaultCacheSize),
		func(v string) error {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < minSQLiteCache {
				return fmt.Errorf("want a number of bytes, at least %d (1 MiB)", minSQLiteCache)
			}
			cfg.SQLiteCacheSize = n
			return nil
		})
	fs.StringVar(&cfg.APIAddr, "api-addr", "127.0.0.1:8080", "management plane address (REST API)")
	fs.StringVar(&cfg.MQTTAddr, "mqtt-addr", ":8883", "device plane MQTT over TLS address")
	fs.StringVar(&cfg.DeviceAddr, "device-addr", ":8443", "device plane HTTPS address (EST)")
	fs.Func("device-host", "extra host name for the server certificate (repeatable)", func(v string) error {
		cfg.DeviceHosts = append(cfg.DeviceHosts, v)
		return nil
	})
	fs.IntVar(&cfg.MaxPayload, "max-payload", 256<<10, "largest MQTT payload in bytes")
	fs.Int64Var(&cfg.MaxArtifactSize, "max-artifact-size", 4<<30, "largest artifact an upload may be, in bytes")
	fs.DurationVar(&cfg.CertValidity, "cert-validity", 90*24*time.Hour, "validity of device certificates")
	fs.DurationVar(&cfg.TwinGrace, "drift-grace", 10*time.Minute, "how long a device's reported configuration may differ from its desired one before it counts as drifted")
	fs.StringVar(&cfg.AuditArchive, "audit-archive", "", "directory where the audit log's retention writes the records whose bodies it removes (default: not kept)")
	fs.DurationVar(&cfg.Telemetry.Day, "retention-day-rollups", 0, "how long day rollups of telemetry are kept (0: 5 years)")
	fs.BoolVar(&cfg.Operators.SecureCookies, "secure-cookies", false, "mark session cookies Secure on every answer (behind a TLS-terminating proxy)")
	fs.Func("oidc-providers", "JSON file of the tenants' OpenID Connect providers (docs/security.md)", func(path string) (err error) {
		cfg.Operators.OIDC, err = api.LoadOIDCProviders(path)
		return err
	})
	fs.Var(offSwitch{&cfg.NoMetrics}, "metrics", "serve Prometheus metrics at GET /metrics on the management plane (--metrics=false to turn off)")
}

// minSQLiteCache is the smallest --sqlite-cache-size: below it the
// writer would read most pages of a batch from the file again.
const minSQLiteCache = 1 << 20

// offSwitch is a boolean flag, true by default, that sets the bool it
// points to when turned off: --metrics=false sets Config.NoMetrics.
type offSwitch struct{ off *bool }

func (o offSwitch) String() string {
	if o.off == nil {
		return "true"
	}
	return strconv.FormatBool(!*o.off)
}

func (o offSwitch) Set(v string) error {
	on, err := strconv.ParseBool(v)
	if err != nil {
		return err
	}
	*o.off = !on
	return nil
}

func (o offSwitch) IsBoolFlag() bool { return true }

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg server.Config
	serverFlags(fs, &cfg, "steward-data")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	srv, err := server.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "steward serve:", err)
		return 1
	}
	if srv.AdminToken != "" {
		fmt.Fprintf(stdout, "First start: admin token (shown once, also in %s/admin.token):\n%s\n", cfg.DataDir, srv.AdminToken)
	}
	srv.Start()
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintln(stderr, "steward serve: close:", err)
		return 1
	}
	return 0
}
