package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/syncbuf"
	"github.com/steward-iot/steward/internal/testpki"
	"github.com/steward-iot/steward/pki"
)

// secret is one thing that must never be logged, in every form it could be
// logged in.
type secret struct {
	name  string
	forms []string
}

// secretSet collects the secrets a test knows.
type secretSet []secret

// add records a text secret (a token) as it is.
func (s *secretSet) add(name, text string) {
	*s = append(*s, secret{name: name, forms: []string{text}})
}

// addBytes records a binary secret by its hex (both cases), base64 (standard
// and URL-safe, padded or not) and, when it is long, every 16-byte window's
// hex, so that a part of it is found too.
func (s *secretSet) addBytes(name string, b []byte) {
	forms := []string{
		hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
	}
	*s = append(*s, secret{name: name, forms: forms})
}

// addKey records a private key by its DER encodings, every full line of its
// PEM body (so that a log line holding any 48-byte stretch of it is caught),
// the key's scalar in decimal (how %v prints a *big.Int) and hex.
func (s *secretSet) addKey(name string, key any) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	s.addBytes(name+" (PKCS#8 DER)", der)
	body := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if len(l) == 64 {
			lines = append(lines, l)
		}
	}
	*s = append(*s, secret{name: name + " (PEM body)", forms: lines})
	if ec, ok := key.(*ecdsa.PrivateKey); ok {
		d, err := ec.Bytes()
		if err != nil {
			return err
		}
		s.addBytes(name+" (scalar)", d)
		*s = append(*s, secret{name: name + " (scalar, decimal)", forms: []string{new(big.Int).SetBytes(d).String()}})
	}
	return nil
}

// found returns the names of the secrets logs holds, in any form.
func (s secretSet) found(logs string) []string {
	var hits []string
	for _, sec := range s {
		for _, f := range sec.forms {
			if f != "" && strings.Contains(logs, f) {
				hits = append(hits, sec.name)
				break
			}
		}
	}
	return hits
}

// TestNoSecretInLogs runs a node whose log, at debug level, goes to a
// buffer, walks the zero-touch path and the refusals around it, and then
// looks for every secret the test can know in that log: API tokens (given,
// created, guessed), the master key, device and factory private keys, and
// the CA and server private keys sealed in the store.
func TestNoSecretInLogs(t *testing.T) {
	t.Parallel()
	logs := &syncbuf.Buffer{}
	n := startNode(t, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx := context.Background()
	var secrets secretSet
	secrets.add("admin token", n.AdminToken)

	// The zero-touch path with the real agent, whose key stays in its
	// state directory.
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	stateDir := t.TempDir()
	factory := mfr.Factory(t, "SN-LOG-1")
	a := n.runAgentIn(t, stateDir, factory)
	d := n.waitState(t, a, steward.StateActive)
	eventually(t, "telemetry", func() bool {
		s, err := n.admin.LatestTelemetry(ctx, d.ID)
		return err == nil && len(s) > 0
	})
	if res, err := n.admin.SendCommand(ctx, d.ID, "ping", nil, 10*time.Second); err != nil || res.Status != steward.CommandOK {
		t.Fatalf("ping: %+v %v", res, err)
	}
	if err := secrets.addKey("factory key SN-LOG-1", factory.PrivateKey); err != nil {
		t.Fatal(err)
	}

	// Tenants and tokens.
	beta, err := n.admin.CreateTenant(ctx, "beta", "Beta Corp")
	if err != nil {
		t.Fatal(err)
	}
	secrets.add("beta's first token", beta.Token.Secret)
	betaClient := client.New(n.APIURL(), beta.Token.Secret, nil)
	tok, err := betaClient.CreateToken(ctx, "ci", steward.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	secrets.add("beta's created token", tok.Secret)
	tok2, err := n.admin.CreateToken(ctx, "ops", steward.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	secrets.add("default tenant's created token", tok2.Secret)
	// A deleted token, refused afterwards.
	if err := n.admin.DeleteToken(ctx, tok2.ID); err != nil {
		t.Fatal(err)
	}

	// Refused API calls: a guessed token, a near miss of a real one, a
	// deleted one, and a tenant admin asking for a system operation.
	guess, _, err := api.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	nearMiss := n.AdminToken[:len(n.AdminToken)-1] + string(n.AdminToken[len(n.AdminToken)-1]^1)
	secrets.add("guessed token", guess)
	secrets.add("near miss of the admin token", nearMiss)
	for _, bad := range []string{guess, nearMiss, tok2.Secret} {
		if _, err := client.New(n.APIURL(), bad, nil).ListTokens(ctx); !client.IsStatus(err, http.StatusUnauthorized) {
			t.Fatalf("bad token: %v, want 401", err)
		}
	}
	if _, err := betaClient.CreateTenant(ctx, "gamma", "Gamma"); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Fatalf("tenant admin created a tenant: %v", err)
	}

	// Refused enrollments.
	stranger := testpki.NewCA(t, "Stranger Inc")
	strangerFactory := stranger.Factory(t, "SN-LOG-X")
	if err := secrets.addKey("stranger's factory key", strangerFactory.PrivateKey); err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	if _, err := n.est(&strangerFactory).SimpleEnroll(ctx, csr); err == nil {
		t.Fatal("enrolled with an unregistered CA")
	}
	if status, _ := n.rawEnroll(t, ptr(mfr.Factory(t, "SN-LOG-2")), "application/pkcs10", "bm90IGEgY3Ny"); status != http.StatusBadRequest {
		t.Fatalf("malformed CSR: status %d", status)
	}

	// ACL violations on MQTT by a device enrolled here, whose key the test holds.
	op := n.enroll(t, mfr.Factory(t, "SN-LOG-3"))
	if err := secrets.addKey("operational key of "+op.Leaf.Subject.CommonName, op.PrivateKey); err != nil {
		t.Fatal(err)
	}
	opID := op.Leaf.Subject.CommonName
	c, err := n.mqttClient(t, op, opID, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.Publish(steward.Topic(d.ID, steward.ChannelTelemetry), 1, false, []byte(`{"metrics":{"cpu":1}}`)).WaitTimeout(5 * time.Second)
	eventually(t, "acl_denied event", func() bool {
		evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: opID, Kind: steward.SecACLDenied})
		return len(evs) > 0
	})
	if _, err := n.mqttClient(t, op, d.ID, nil); err == nil {
		t.Fatal("connected with another device's client ID")
	}

	// The agent's own key, from its state directory.
	if err := addKeysFromPEMFile(&secrets, "agent key", filepath.Join(stateDir, agent.IdentityFile)); err != nil {
		t.Fatal(err)
	}
	// The master key, and every private key sealed under it in the store.
	masterKey, err := os.ReadFile(filepath.Join(n.cfg.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	secrets.addBytes("master key", masterKey)
	if err := addSealedKeys(&secrets, filepath.Join(n.cfg.DataDir, "steward.db"), masterKey); err != nil {
		t.Fatal(err)
	}

	got := logs.String()
	// The log really was captured at debug level, refusals included.
	for _, want := range []string{"level=DEBUG", "api request refused", "invalid or revoked token", "status=401", "status=403"} {
		if !strings.Contains(got, want) {
			t.Fatalf("the captured log has no %q: the test would prove nothing\n%s", want, got)
		}
	}
	if hits := secrets.found(got); len(hits) > 0 {
		t.Errorf("secrets in the log: %s", strings.Join(hits, "; "))
		for _, line := range strings.Split(got, "\n") {
			if h := secrets.found(line); len(h) > 0 {
				t.Logf("line with %s: %s", strings.Join(h, ", "), line)
			}
		}
	}

	// The scan is not blind: each secret planted in a log line is found.
	t.Run("the scan finds every secret", func(t *testing.T) {
		for _, sec := range secrets {
			if len(sec.forms) == 0 {
				t.Fatalf("%s has no forms", sec.name)
			}
			line := fmt.Sprintf("time=x level=DEBUG msg=oops value=%s\n", sec.forms[len(sec.forms)-1])
			if hits := (secretSet{sec}).found(got + line); len(hits) != 1 {
				t.Errorf("%s planted in the log is not found", sec.name)
			}
		}
		if len(secrets) < 20 {
			t.Errorf("only %d secrets collected", len(secrets))
		}
	})
}

// runAgentIn is runAgent with a state directory the test can read.
func (n *node) runAgentIn(t *testing.T, stateDir string, factory tls.Certificate) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{
		ESTURL: n.DeviceURL(), MQTTAddr: n.MQTTAddr(), ServerCA: n.pool, FactoryCert: factory,
		StateDir: stateDir, Model: "gw-100", Firmware: "1.1.0", Hardware: "revB",
		Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.5} },
		TelemetryInterval: 100 * time.Millisecond,
		BackoffMin:        50 * time.Millisecond, BackoffMax: time.Second,
		Clock:  steward.SystemClock{},
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// addKeysFromPEMFile records every private key of a PEM file.
func addKeysFromPEMFile(s *secretSet, name, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	keys := 0
	for block, rest := pem.Decode(b); block != nil; block, rest = pem.Decode(rest) {
		if !strings.Contains(block.Type, "PRIVATE KEY") {
			continue
		}
		key, err := parseAnyKey(block.Bytes)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if err := s.addKey(name, key); err != nil {
			return err
		}
		keys++
	}
	if keys == 0 {
		return fmt.Errorf("%s holds no private key", path)
	}
	return nil
}

func parseAnyKey(der []byte) (any, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return k, nil
	}
	return x509.ParseECPrivateKey(der)
}

// addSealedKeys opens every sealed secret of the SQLite store with the
// master key and records the private key inside (the certificate next to
// it is public).
func addSealedKeys(s *secretSet, dbPath string, masterKey []byte) error {
	ring, err := pki.NewKeyring(masterKey)
	if err != nil {
		return err
	}
	db, err := sql.Open("sqlite", "file:"+dbPath+"?mode=ro")
	if err != nil {
		return err
	}
	defer db.Close()
	rows, err := db.Query(`SELECT name, value FROM secrets`)
	if err != nil {
		return err
	}
	defer rows.Close()
	opened := 0
	for rows.Next() {
		var name string
		var sealed []byte
		if err := rows.Scan(&name, &sealed); err != nil {
			return err
		}
		plain, err := ring.Open(name, sealed)
		if err != nil {
			return fmt.Errorf("open %s: %w", name, err)
		}
		var rec struct {
			Key []byte `json:"key"`
		}
		if err := json.Unmarshal(plain, &rec); err != nil || len(rec.Key) == 0 {
			return fmt.Errorf("secret %s holds no key record: %v", name, err)
		}
		key, err := x509.ParsePKCS8PrivateKey(rec.Key)
		if err != nil {
			return fmt.Errorf("secret %s: %w", name, err)
		}
		if err := s.addKey("sealed "+name, key); err != nil {
			return err
		}
		opened++
	}
	if err := rows.Err(); err != nil {
		return err
	}
	// The server CA, the default and beta device CAs, the server TLS key.
	if opened < 4 {
		return fmt.Errorf("only %d sealed keys opened", opened)
	}
	return nil
}
