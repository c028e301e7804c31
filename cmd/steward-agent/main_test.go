package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/agent/agenttest"
	"github.com/steward-iot/steward/internal/syncbuf"
	"github.com/steward-iot/steward/internal/testpki"
)

func TestParse(t *testing.T) {
	t.Parallel()
	req := []string{"--server-ca", "ca.pem", "--factory-cert", "f.pem", "--factory-key", "k.pem"}
	tests := []struct {
		name         string
		args         []string
		err          string
		estURL, mqtt string
		state        string
	}{
		{name: "server", args: append([]string{"--server", "steward.example"}, req...), estURL: "https://steward.example:8443", mqtt: "steward.example:8883", state: "/var/lib/steward-agent"},
		{name: "IPv6 server", args: append([]string{"--server", "::1"}, req...), estURL: "https://[::1]:8443", mqtt: "[::1]:8883", state: "/var/lib/steward-agent"},
		{name: "explicit addresses win", args: append([]string{"--server", "a", "--est-url", "https://b:1", "--mqtt-addr", "c:2", "--state", "/tmp/s"}, req...), estURL: "https://b:1", mqtt: "c:2", state: "/tmp/s"},
		{name: "no server", args: req, err: "missing --server (or --est-url), --server (or --mqtt-addr)"},
		{name: "no files", args: []string{"--server", "a"}, err: "missing --server-ca, --factory-cert, --factory-key"},
		{name: "bad interval", args: append([]string{"--server", "a", "--telemetry-interval", "0s"}, req...), err: "--telemetry-interval must be positive"},
		{name: "stray argument", args: append(append([]string{"--server", "a"}, req...), "go"), err: "unexpected arguments: go"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			o, err := parse(tt.args, &stderr)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("parse: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.estURL != tt.estURL || o.mqttAddr != tt.mqtt || o.state != tt.state {
				t.Fatalf("est %q mqtt %q state %q", o.estURL, o.mqttAddr, o.state)
			}
		})
	}
}

func TestHelpExplainsRebootExit(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stderr); code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"-reboot-command", "exits with status 75", "Restart=on-failure"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, stderr.String())
		}
	}
}

func TestRunRefusesBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"usage", []string{"--server", "a"}, exitUsage, "missing --server-ca"},
		{"bad log level", []string{"--server", "a", "--server-ca", notPEM, "--factory-cert", notPEM, "--factory-key", notPEM, "--log-level", "loud"}, exitUsage, "--log-level"},
		{"missing CA file", []string{"--server", "a", "--server-ca", filepath.Join(dir, "nope"), "--factory-cert", notPEM, "--factory-key", notPEM}, exitError, "read server CA"},
		{"CA not PEM", []string{"--server", "a", "--server-ca", notPEM, "--factory-cert", notPEM, "--factory-key", notPEM}, exitError, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			state := filepath.Join(t.TempDir(), "state")
			var stderr bytes.Buffer
			if code := run(context.Background(), append(tt.args, "--state", state), &stderr); code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Fatalf("stderr %q, want %q", stderr.String(), tt.want)
			}
			if _, err := os.Stat(state); err == nil {
				t.Fatal("a refused start created the state directory")
			}
		})
	}
}

// agentFiles starts an EST server and a broker and writes the files the
// agent's flags name.
func agentFiles(t *testing.T) (args []string, broker *agenttest.Broker, dir string) {
	t.Helper()
	serverCA := testpki.NewCA(t, "server CA")
	est := agenttest.NewEST(t, serverCA)
	broker = agenttest.NewBroker(t, serverCA.ServerCert(t), est.DevicePool())
	factory, err := est.Enroller.FactoryIdentity("SN-CLI-1")
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	keyDER, err := x509.MarshalPKCS8PrivateKey(factory.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"server-ca.pem":   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: serverCA.Cert.Raw}),
		"factory.pem":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: factory.Leaf.Raw}),
		"factory-key.pem": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args = []string{
		"--est-url", est.URL, "--mqtt-addr", broker.Addr(),
		"--server-ca", filepath.Join(dir, "server-ca.pem"),
		"--factory-cert", filepath.Join(dir, "factory.pem"), "--factory-key", filepath.Join(dir, "factory-key.pem"),
		"--state", filepath.Join(dir, "state"), "--model", "gw-100", "--firmware", "1.0.0",
		"--telemetry-interval", "50ms",
	}
	return args, broker, dir
}

// deviceID waits for the agent's attributes and returns its device ID.
func deviceID(t *testing.T, b *agenttest.Broker) string {
	t.Helper()
	var id string
	b.WaitFor("attributes", func() bool {
		for _, topic := range b.Topics() {
			if rest, ok := strings.CutSuffix(topic, "/"+string(steward.ChannelAttributes)); ok {
				id = strings.TrimPrefix(rest, "dev/")
				return true
			}
		}
		return false
	})
	return id
}

func TestRunExitsForRebootWithoutCommand(t *testing.T) {
	t.Parallel()
	args, b, dir := agentFiles(t)
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(context.Background(), args, &stderr) }()
	id := deviceID(t, b)
	var attrs map[string]any
	if err := json.Unmarshal(b.Messages(steward.Topic(id, steward.ChannelAttributes))[0], &attrs); err != nil {
		t.Fatal(err)
	}
	if attrs["serial"] != "SN-CLI-1" || attrs["model"] != "gw-100" || attrs["kernel"] == nil {
		t.Errorf("attributes %v: want the factory serial, the model flag and the host's kernel", attrs)
	}
	b.Send(steward.Topic(id, steward.ChannelCmdReq), []byte(`{"id":"r-1","name":"reboot"}`))
	select {
	case code := <-done:
		if code != exitReboot {
			t.Fatalf("exit %d, want %d: %s", code, exitReboot, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not exit for the reboot")
	}
	var res steward.CommandResult
	if err := json.Unmarshal(b.Messages(steward.Topic(id, steward.ChannelCmdRes))[0], &res); err != nil || res.Status != steward.CommandOK {
		t.Fatalf("answer %+v (%v)", res, err)
	}
	if st, err := os.Stat(filepath.Join(dir, "state", agent.IdentityFile)); err != nil || st.Mode() != 0o600 {
		t.Fatalf("identity file: %v %v", st, err)
	}
}

func TestRunRebootCommand(t *testing.T) {
	t.Parallel()
	args, b, dir := agentFiles(t)
	marker := filepath.Join(dir, "rebooted")
	args = append(args, "--reboot-command", "echo yes > '"+marker+"'")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncbuf.Buffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, &stderr) }()
	id := deviceID(t, b)
	b.Send(steward.Topic(id, steward.ChannelCmdReq), []byte(`{"id":"r-2","name":"reboot"}`))
	b.WaitFor("reboot command", func() bool { _, err := os.Stat(marker); return err == nil })
	// The agent goes on until stopped.
	b.Send(steward.Topic(id, steward.ChannelCmdReq), []byte(`{"id":"p-1","name":"ping"}`))
	b.WaitFor("ping answer", func() bool { return len(b.Messages(steward.Topic(id, steward.ChannelCmdRes))) == 2 })
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
	}
}
