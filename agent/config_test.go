package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/agenttest"
	"github.com/steward-iot/steward/internal/testpki"
)

func TestConfigRejected(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "CA")
	factory := factoryCert(t, ca, "SN-1")
	good := func(dir string) Config {
		return Config{
			ESTURL: "https://127.0.0.1:8443", MQTTAddr: "127.0.0.1:8883", ServerCA: ca.Pool(),
			FactoryCert: factory, StateDir: dir,
			Attributes: func() map[string]any { return nil }, Telemetry: func() map[string]float64 { return nil },
		}
	}
	tests := []struct {
		name, want string
		mod        func(*Config)
	}{
		{"http EST URL", "EST URL must be https", func(c *Config) { c.ESTURL = "http://127.0.0.1:8443" }},
		{"EST URL without host", "EST URL must be https", func(c *Config) { c.ESTURL = "https://" }},
		{"MQTT address without port", "MQTT address must be host:port", func(c *Config) { c.MQTTAddr = "127.0.0.1" }},
		{"no server CA", "server CA", func(c *Config) { c.ServerCA = nil }},
		{"no factory certificate", "factory certificate", func(c *Config) { c.FactoryCert = tls.Certificate{} }},
		{"factory certificate without key", "factory certificate", func(c *Config) { c.FactoryCert.PrivateKey = nil }},
		{"factory certificate that does not parse", "does not parse", func(c *Config) {
			c.FactoryCert = tls.Certificate{Certificate: [][]byte{{1, 2, 3}}, PrivateKey: factory.PrivateKey}
		}},
		{"no state directory", "state directory", func(c *Config) { c.StateDir = "" }},
		{"negative interval", "must not be negative", func(c *Config) { c.TelemetryInterval = -time.Second }},
		{"backoff upside down", "below its minimum", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Minute, time.Second }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			cfg := good(dir)
			tt.mod(&cfg)
			_, err := New(cfg)
			if steward.ErrorCode(err) != steward.CodeInvalid || !strings.Contains(steward.ErrorMessage(err), tt.want) {
				t.Fatalf("New: %v, want CodeInvalid with %q", err, tt.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("a refused config touched the state directory: %v", err)
			}
		})
	}
	cfg := good(t.TempDir())
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.cfg.Serial != "SN-1" {
		t.Fatalf("serial %q, want the factory certificate's", a.cfg.Serial)
	}
}

func TestRunStopsOnDamagedIdentity(t *testing.T) {
	t.Parallel()
	serverCA := testpki.NewCA(t, "server CA")
	est := agenttest.NewEST(t, serverCA)
	factory, err := est.Enroller.FactoryIdentity("SN-2")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	damaged := []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
	if err := os.WriteFile(filepath.Join(dir, IdentityFile), damaged, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		ESTURL: est.URL, MQTTAddr: "127.0.0.1:1", ServerCA: serverCA.Pool(), FactoryCert: factory, StateDir: dir,
		Attributes: func() map[string]any { return nil }, Telemetry: func() map[string]float64 { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "remove "+filepath.Join(dir, IdentityFile)+" to enroll again") {
		t.Fatalf("Run: %v, want an error naming the damaged file", err)
	}
	// No new key went to the server (it would look like a clone), and the
	// file is left for someone to look at.
	if n := len(est.Enroller.Requests()); n != 0 {
		t.Fatalf("%d EST requests", n)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, IdentityFile)); string(got) != string(damaged) {
		t.Fatal("damaged identity file was replaced")
	}
}
