package sim

import (
	"context"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/syncbuf"
)

func TestMainUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"--help"}, 0, "Usage: steward sim"},
		{"no manufacturer", []string{"--server", "h", "--server-ca", "ca.pem"}, 2, "--manufacturer is required"},
		{"no server", []string{"--manufacturer", "MFR", "--server-ca", "ca.pem"}, 2, "--server (or --est-url and --mqtt-addr) is required"},
		{"no server CA", []string{"--manufacturer", "MFR", "--server", "h"}, 2, "--server-ca is required"},
		{"bad firmware flag", []string{"--firmware", "gw-100"}, 2, "want MODEL=VERSION"},
		{"unknown flag", []string{"--fleet", "3"}, 2, "flag provided but not defined"},
		{"stray argument", []string{"--manufacturer", "MFR", "run"}, 2, "unexpected arguments: run"},
		{"too many unapproved", []string{"--manufacturer", "MFR", "--server", "h", "--server-ca", "CA", "--devices", "2", "--unapproved", "3"}, 2, "unapproved firmware count 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			caFile := filepath.Join(dir, "server-ca.pem")
			if err := os.WriteFile(caFile, pemCert(t), 0o644); err != nil {
				t.Fatal(err)
			}
			args := make([]string, len(tt.args))
			for i, a := range tt.args {
				args[i] = strings.NewReplacer("MFR", filepath.Join(dir, "mfr"), "CA", caFile).Replace(a)
			}
			args = append(args, "--state", filepath.Join(dir, "state"))
			var out, errOut syncbuf.Buffer
			if code := Main(context.Background(), args, &out, &errOut); code != tt.code {
				t.Fatalf("exit %d, want %d; stderr %s", code, tt.code, errOut.String())
			}
			if !strings.Contains(out.String()+errOut.String(), tt.want) {
				t.Fatalf("output %q, want %q", out.String()+errOut.String(), tt.want)
			}
			// A refused command line leaves nothing behind.
			if tt.code != 0 {
				for _, p := range []string{"mfr", "state"} {
					if _, err := os.Stat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s written by a refused command: %v", p, err)
					}
				}
			}
		})
	}
}

func pemCert(t *testing.T) []byte {
	t.Helper()
	m, err := NewManufacturer("Some CA")
	if err != nil {
		t.Fatal(err)
	}
	return m.CertPEM()
}

func TestMainInit(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "mfr")
	var out, errOut syncbuf.Buffer
	if code := Main(context.Background(), []string{"--init", "--manufacturer", dir, "--manufacturer-name", "Acme"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "created manufacturer CA "+filepath.Join(dir, CAFile)) {
		t.Fatalf("stdout %q", out.String())
	}
	m, err := LoadManufacturer(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "Acme" {
		t.Fatalf("name %q", m.Name())
	}
	// Again: the same CA is kept.
	out = syncbuf.Buffer{}
	if code := Main(context.Background(), []string{"--init", "--manufacturer", dir}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	again, err := LoadManufacturer(dir)
	if err != nil || !again.Certificate().Equal(m.Certificate()) {
		t.Fatalf("second --init replaced the CA (%v)", err)
	}
	if !strings.HasPrefix(out.String(), "manufacturer CA ") {
		t.Fatalf("stdout %q", out.String())
	}
}

func TestMainRunsFleet(t *testing.T) {
	t.Parallel()
	e := newFleetEnv(t)
	dir := t.TempDir()
	mfrDir := filepath.Join(dir, "mfr")
	if err := e.mfr.Save(mfrDir); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "server-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.serverCA.Cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut syncbuf.Buffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{
			"--devices", "3", "--unapproved", "1",
			"--est-url", e.estURL, "--mqtt-addr", e.broker.Addr(), "--server-ca", caFile,
			"--manufacturer", mfrDir, "--state", filepath.Join(dir, "state"),
			"--models", "gw-100", "--firmware", "gw-100=1.4.0,1.4.1",
			"--telemetry-interval", "50ms", "--report-interval", "20ms", "--connect-rate", "100",
		}, &out, &errOut)
	}()
	e.broker.WaitFor("three devices reporting", func() bool {
		n := 0
		for _, topic := range e.broker.Topics() {
			if strings.HasSuffix(topic, "/"+string(steward.ChannelAttributes)) {
				n++
			}
		}
		return n == 3
	})
	e.broker.WaitFor("a progress line with three connected", func() bool { return strings.Contains(out.String(), "connected 3") })
	unapproved := 0
	for _, topic := range e.broker.Topics() {
		if strings.HasSuffix(topic, "/attributes") && strings.Contains(string(e.broker.Messages(topic)[0]), UnapprovedVersion) {
			unapproved++
		}
	}
	if unapproved != 1 {
		t.Fatalf("%d devices on unapproved firmware, want 1", unapproved)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Main did not return after cancel")
	}
	if !strings.Contains(out.String(), "manufacturer CA "+filepath.Join(mfrDir, CAFile)) {
		t.Fatalf("stdout %q", out.String())
	}
}
