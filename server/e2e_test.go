package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/estclient"
	"github.com/steward-iot/steward/internal/testpki"
)

// runAgent starts the real device agent with a factory identity.
func (n *node) runAgent(t *testing.T, factory tls.Certificate, model, firmware string) *agent.Agent {
	t.Helper()
	a, err := agent.New(agent.Config{
		ESTURL:            n.DeviceURL(),
		MQTTAddr:          n.MQTTAddr(),
		ServerCA:          n.pool,
		FactoryCert:       factory,
		StateDir:          t.TempDir(),
		Model:             model,
		Firmware:          firmware,
		Hardware:          "revB",
		Attributes:        func() map[string]any { return map[string]any{"os": "test"} },
		Telemetry:         func() map[string]float64 { return map[string]float64{"temperature": 48.5, "cpu": 0.25} },
		TelemetryInterval: 100 * time.Millisecond,
		BackoffMin:        50 * time.Millisecond,
		BackoffMax:        time.Second,
		Clock:             steward.SystemClock{},
		Logger:            slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
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

// waitState waits until the agent has enrolled and the registry shows its
// device in the given state.
func (n *node) waitState(t *testing.T, a *agent.Agent, want steward.State) steward.DeviceDetail {
	t.Helper()
	var d steward.DeviceDetail
	eventually(t, "device "+string(want), func() bool {
		id := a.DeviceID()
		if id == "" {
			return false
		}
		var err error
		d, err = n.admin.GetDevice(context.Background(), id)
		return err == nil && d.State == want
	})
	return d
}

// TestZeroTouch walks the whole path with the real agent: factory
// certificate → EST enrollment → MQTT with the operational certificate →
// attributes → active → telemetry readable from the API → a command; and
// the same with unapproved firmware → quarantined with its reason.
func TestZeroTouch(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	ctx := context.Background()

	t.Run("approved firmware becomes active", func(t *testing.T) {
		a := n.runAgent(t, mfr.Factory(t, "SN-0001"), "gw-100", "1.1.0")
		d := n.waitState(t, a, steward.StateActive)
		if d.Serial != "SN-0001" || d.Model != "gw-100" || d.Firmware != "1.1.0" || d.Hardware != "revB" || d.Labels["site"] != "plant-7" {
			t.Errorf("inventory: %+v", d.Device)
		}
		if d.Attributes["os"] != "test" {
			t.Errorf("attributes not kept: %v", d.Attributes)
		}
		if len(d.Certificates) != 1 || d.Certificates[0].Revoked() || !strings.HasPrefix(d.ID, "d-") {
			t.Errorf("certificates: %+v", d.Certificates)
		}
		if got := d.Certificates[0].NotAfter.Sub(d.Certificates[0].NotBefore); got < 89*24*time.Hour || got > 91*24*time.Hour {
			t.Errorf("certificate validity %s, want 90 days", got)
		}
		var states []steward.State
		for _, h := range d.History {
			states = append(states, h.To)
		}
		if fmt.Sprint(states) != "[provisioned active]" {
			t.Errorf("history: %v", states)
		}
		eventually(t, "telemetry", func() bool {
			s, err := n.admin.LatestTelemetry(ctx, d.ID)
			return err == nil && len(s) == 2 && (s[0].Metric == "temperature" && s[0].Value == 48.5 || s[1].Metric == "temperature" && s[1].Value == 48.5)
		})
		eventually(t, "presence online", func() bool {
			d, err := n.admin.GetDevice(ctx, d.ID)
			return err == nil && d.Presence.Online && d.Presence.RemoteAddr != "" && !d.Presence.ConnectedSince.IsZero()
		})
		res, err := n.admin.SendCommand(ctx, d.ID, "ping", nil, 10*time.Second)
		if err != nil || res.Status != steward.CommandOK {
			t.Fatalf("ping: %+v %v", res, err)
		}
		active, err := n.admin.AllDevices(ctx, `state = active AND labels.site = "plant-7" AND firmware >= "1.0.0"`)
		if err != nil || len(active) != 1 || active[0].ID != d.ID {
			t.Errorf("query: %v %v", active, err)
		}
	})

	t.Run("unapproved firmware is quarantined", func(t *testing.T) {
		a := n.runAgent(t, mfr.Factory(t, "SN-0002"), "gw-100", "0.9.0")
		d := n.waitState(t, a, steward.StateQuarantined)
		if !strings.Contains(d.StateReason, `firmware "0.9.0" is not approved for model "gw-100"`) {
			t.Errorf("reason %q", d.StateReason)
		}
		// Quarantined: its telemetry is refused, so nothing is stored.
		time.Sleep(500 * time.Millisecond)
		if s, err := n.admin.LatestTelemetry(ctx, d.ID); err != nil || len(s) != 0 {
			t.Errorf("quarantined device's telemetry stored: %v %v", s, err)
		}
		evs, err := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: d.ID})
		if err != nil {
			t.Fatal(err)
		}
		if !hasKind(evs, steward.SecQuarantineRefused) {
			t.Errorf("no quarantine_refused event: %+v", evs)
		}
		// An operator releases it by hand.
		if _, err := n.admin.Release(ctx, d.ID); err != nil {
			t.Fatal(err)
		}
		eventually(t, "telemetry after release", func() bool {
			s, err := n.admin.LatestTelemetry(ctx, d.ID)
			return err == nil && len(s) > 0
		})
		if _, err := n.admin.Quarantine(ctx, d.ID, "investigating"); err != nil {
			t.Fatal(err)
		}
		got, _ := n.admin.GetDevice(ctx, d.ID)
		if got.State != steward.StateQuarantined || got.StateReason != "investigating" || !strings.HasPrefix(got.StateActor, "token:") {
			t.Errorf("after manual quarantine: %s %q %q", got.State, got.StateReason, got.StateActor)
		}
	})
}

func hasKind(evs []steward.SecurityEvent, k steward.SecurityEventKind) bool {
	for _, e := range evs {
		if e.Kind == k {
			return true
		}
	}
	return false
}

// TestEnrollmentRefusals sends what must be refused to EST and checks the
// error and that no device or certificate was written.
func TestEnrollmentRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "strict", mfr, func(g *steward.EnrollmentGroup) {
		g.Serials = []string{"SN-OK-1", "SN-OK-2"}
		g.Strict = true
	})
	stranger := testpki.NewCA(t, "Stranger Inc")

	_, goodCSR := newCSR(t)
	badSig := append([]byte(nil), goodCSR...)
	badSig[len(badSig)-5] ^= 0xff
	expired := mfr.Issue(t, "old", "SN-OK-1", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	okFactory := mfr.Factory(t, "SN-OK-2")

	tests := []struct {
		name    string
		factory *tls.Certificate
		csr     []byte
		status  int
		msg     string
	}{
		{"no client certificate", nil, goodCSR, 401, "factory certificate"},
		{"unregistered CA", ptr(stranger.Factory(t, "SN-OK-1")), goodCSR, 401, "not from a registered manufacturer CA"},
		{"expired factory certificate", &expired, goodCSR, 401, "expired"},
		{"serial not on the allow-list", ptr(mfr.Factory(t, "SN-EVIL")), goodCSR, 403, "allow-list"},
		{"malformed CSR", &okFactory, []byte("not a csr"), 400, "not a well-formed PKCS#10"},
		{"wrongly signed CSR", &okFactory, badSig, 400, "signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Raw HTTP: the EST client would refuse a bad CSR before sending it.
			status, msg := n.rawEnroll(t, tt.factory, "application/pkcs10", base64.StdEncoding.EncodeToString(tt.csr))
			if status != tt.status || !strings.Contains(strings.ToLower(msg), strings.ToLower(tt.msg)) {
				t.Fatalf("got %d %q, want %d containing %q", status, msg, tt.status, tt.msg)
			}
			if c := n.deviceCount(t); c != 0 {
				t.Fatalf("%d devices written", c)
			}
		})
	}

	t.Run("wrong content type", func(t *testing.T) {
		status, _ := n.rawEnroll(t, &okFactory, "application/json", base64.StdEncoding.EncodeToString(goodCSR))
		if status != http.StatusUnsupportedMediaType {
			t.Fatalf("status %d, want 415", status)
		}
		if c := n.deviceCount(t); c != 0 {
			t.Fatalf("%d devices written", c)
		}
	})

	t.Run("clone with a new key is refused and recorded", func(t *testing.T) {
		key, csr := newCSR(t)
		first, err := n.est(&okFactory).SimpleEnroll(ctx, csr)
		if err != nil {
			t.Fatal(err)
		}
		_ = key
		// Same key again: the current certificate.
		again, err := n.est(&okFactory).SimpleEnroll(ctx, csr)
		if err != nil || again.SerialNumber.Cmp(first.SerialNumber) != 0 {
			t.Fatalf("same key again: %v, serial %v want %v", err, again, first.SerialNumber)
		}
		// Another key: a clone.
		_, otherCSR := newCSR(t)
		_, err = n.est(&okFactory).SimpleEnroll(ctx, otherCSR)
		var e *estclient.Error
		if !errors.As(err, &e) || e.StatusCode != 403 || !strings.Contains(e.Message, "clone") {
			t.Fatalf("clone: %v", err)
		}
		d, err := n.admin.GetDevice(ctx, first.Subject.CommonName)
		if err != nil || len(d.Certificates) != 1 {
			t.Fatalf("clone changed the device: %+v %v", d, err)
		}
		evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: d.ID})
		if !hasKind(evs, steward.SecSuspectedClone) {
			t.Errorf("no suspected_clone event: %+v", evs)
		}
		if c := n.deviceCount(t); c != 1 {
			t.Fatalf("%d devices, want 1", c)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// rawEnroll posts a simpleenroll body as is and returns the status and message.
func (n *node) rawEnroll(t *testing.T, factory *tls.Certificate, contentType, body string) (int, string) {
	t.Helper()
	resp, err := n.est(factory).HTTP.Post(n.DeviceURL()+"/.well-known/est/simpleenroll", contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// mqttClient connects a paho MQTT 3.1.1 client with a client certificate.
func (n *node) mqttClient(t *testing.T, cert tls.Certificate, clientID string, lost chan<- error) (paho.Client, error) {
	t.Helper()
	opts := paho.NewClientOptions().
		AddBroker("ssl://" + n.MQTTAddr()).
		SetClientID(clientID).
		SetTLSConfig(&tls.Config{RootCAs: n.pool, Certificates: []tls.Certificate{cert}}).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(10 * time.Second).
		SetProtocolVersion(4)
	if lost != nil {
		opts.SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	}
	c := paho.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(15 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// TestDevicePlaneRefusals checks the device plane with the real gate: what
// is refused at the handshake, at CONNECT, and per topic.
func TestDevicePlaneRefusals(t *testing.T) {
	t.Parallel()
	n := startNode(t, func(c *Config) { c.MaxPayload = 4096 })
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName
	other := n.enroll(t, mfr.Factory(t, "SN-2"))
	otherID := other.Leaf.Subject.CommonName

	c, err := n.mqttClient(t, op, id, nil)
	if err != nil {
		t.Fatalf("own certificate refused: %v", err)
	}
	pub := func(topic string, payload []byte) error {
		tok := c.Publish(topic, 1, false, payload)
		tok.WaitTimeout(5 * time.Second)
		return tok.Error()
	}
	if err := pub(steward.Topic(id, steward.ChannelAttributes), []byte(`{"model":"gw-100","firmware":"1.0.0"}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "active", func() bool { d, err := n.admin.GetDevice(ctx, id); return err == nil && d.State == steward.StateActive })

	t.Run("unknown CA refused at handshake", func(t *testing.T) {
		stranger := testpki.NewCA(t, "Stranger")
		if _, err := n.mqttClient(t, stranger.Issue(t, id, "", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), id, nil); err == nil {
			t.Fatal("connected with a certificate from an unknown CA")
		}
	})
	t.Run("factory certificate refused on MQTT", func(t *testing.T) {
		if _, err := n.mqttClient(t, mfr.Factory(t, "SN-1"), id, nil); err == nil {
			t.Fatal("connected with a factory certificate")
		}
	})
	t.Run("client ID must equal the certificate", func(t *testing.T) {
		if _, err := n.mqttClient(t, op, otherID, nil); err == nil {
			t.Fatal("connected with another device's client ID")
		}
		eventually(t, "client_id_mismatch event", func() bool {
			evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id, Kind: steward.SecClientIDMismatch})
			return len(evs) > 0
		})
	})
	t.Run("subscriptions outside own topics or with wildcards are refused", func(t *testing.T) {
		for _, topic := range []string{"#", "dev/+/cmd/req", "dev/" + otherID + "/cmd/req", "dev/" + id + "/#", "dev/" + id + "/telemetry", "$SYS/#"} {
			tok := c.Subscribe(topic, 1, nil)
			tok.WaitTimeout(5 * time.Second)
			st := tok.(*paho.SubscribeToken)
			if code := st.Result()[topic]; code != 0x80 {
				t.Errorf("subscribe %q: granted %#x, want 0x80", topic, code)
			}
		}
		tok := c.Subscribe(steward.Topic(id, steward.ChannelCmdReq), 1, nil)
		tok.WaitTimeout(5 * time.Second)
		if code := tok.(*paho.SubscribeToken).Result()[steward.Topic(id, steward.ChannelCmdReq)]; code != 1 {
			t.Errorf("own cmd/req: granted %#x", code)
		}
	})
	t.Run("publishing to another device is refused and recorded", func(t *testing.T) {
		_ = pub(steward.Topic(otherID, steward.ChannelTelemetry), []byte(`{"metrics":{"cpu":1}}`))
		_ = pub(steward.Topic(id, steward.ChannelCmdReq), []byte(`{}`)) // wrong direction
		eventually(t, "acl_denied events", func() bool {
			evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id, Kind: steward.SecACLDenied})
			return len(evs) >= 2
		})
		if s, _ := n.admin.LatestTelemetry(ctx, otherID); len(s) != 0 {
			t.Fatalf("telemetry landed on the other device: %v", s)
		}
	})
	t.Run("oversized payload is refused", func(t *testing.T) {
		_ = pub(steward.Topic(id, steward.ChannelTelemetry), []byte(`{"metrics":{"x":1},"pad":"`+strings.Repeat("a", 5000)+`"}`))
		eventually(t, "payload_too_large event", func() bool {
			evs, _ := n.admin.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id, Kind: steward.SecPayloadTooLarge})
			return len(evs) > 0
		})
		if s, _ := n.admin.LatestTelemetry(ctx, id); len(s) != 0 {
			t.Fatalf("oversized telemetry stored: %v", s)
		}
	})
	t.Run("revoking closes the live session and refuses the certificate", func(t *testing.T) {
		lost := make(chan error, 1)
		oc, err := n.mqttClient(t, other, otherID, lost)
		if err != nil {
			t.Fatal(err)
		}
		_ = oc
		if _, err := n.admin.Revoke(ctx, otherID); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lost:
		case <-time.After(10 * time.Second):
			t.Fatal("live session of a revoked device still open")
		}
		if _, err := n.mqttClient(t, other, otherID, nil); err == nil {
			t.Fatal("revoked certificate connected again")
		}
		d, _ := n.admin.GetDevice(ctx, otherID)
		for _, c := range d.Certificates {
			if !c.Revoked() {
				t.Errorf("certificate %s not revoked", c.Serial)
			}
		}
		// Nor can it renew.
		_, csr := newCSR(t)
		if _, err := n.est(&other).SimpleReenroll(ctx, csr); err == nil {
			t.Fatal("revoked certificate renewed")
		}
	})
	t.Run("expired certificate refused", func(t *testing.T) {
		n.clock.Add(91 * 24 * time.Hour)
		defer n.clock.Add(-91 * 24 * time.Hour)
		if _, err := n.mqttClient(t, op, id, nil); err == nil {
			t.Fatal("expired operational certificate connected")
		}
	})
}

// TestRenewal re-enrolls with the operational certificate and a new key and
// connects with the new certificate.
func TestRenewal(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-1")
	op := n.enroll(t, factory)
	key, csr := newCSR(t)
	renewed, err := n.est(&op).SimpleReenroll(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.Subject.CommonName != op.Leaf.Subject.CommonName || renewed.SerialNumber.Cmp(op.Leaf.SerialNumber) == 0 {
		t.Fatalf("renewed certificate: CN %q serial %v", renewed.Subject.CommonName, renewed.SerialNumber)
	}
	if len(renewed.ExtKeyUsage) != 1 || renewed.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || renewed.IsCA {
		t.Errorf("usage: %v CA=%v", renewed.ExtKeyUsage, renewed.IsCA)
	}
	newOp := tls.Certificate{Certificate: [][]byte{renewed.Raw}, PrivateKey: key, Leaf: renewed}
	if _, err := n.mqttClient(t, newOp, renewed.Subject.CommonName, nil); err != nil {
		t.Fatalf("renewed certificate refused: %v", err)
	}
	// The factory identity now answers for the new key, not as a clone.
	again, err := n.est(&factory).SimpleEnroll(ctx, csr)
	if err != nil || again.Subject.CommonName != renewed.Subject.CommonName {
		t.Fatalf("factory re-enroll with the renewed key: %v", err)
	}
	// A factory certificate cannot renew.
	if _, err := n.est(&factory).SimpleReenroll(ctx, csr); err == nil {
		t.Fatal("factory certificate renewed an operational certificate")
	}
}

// TestTenantIsolation checks that a token of one tenant cannot read or
// change another tenant's devices, groups or certificates, by ID or by query.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	group := n.registerGroup(t, n.admin, "gateways", mfr, nil)
	op := n.enroll(t, mfr.Factory(t, "SN-1"))
	id := op.Leaf.Subject.CommonName

	created, err := n.admin.CreateTenant(ctx, "beta", "Beta Corp")
	if err != nil {
		t.Fatal(err)
	}
	beta := client.New(n.APIURL(), created.Token.Secret, nil)

	notFound := func(what string, err error) {
		t.Helper()
		if !steward.IsNotFound(err) {
			t.Errorf("%s: %v, want not found", what, err)
		}
	}
	_, err = beta.GetDevice(ctx, id)
	notFound("get device", err)
	_, err = beta.Quarantine(ctx, id, "hostile")
	notFound("quarantine", err)
	_, err = beta.Revoke(ctx, id)
	notFound("revoke", err)
	_, err = beta.UpdateDevice(ctx, id, steward.DevicePatch{Owner: ptr("mallory")})
	notFound("update", err)
	_, err = beta.LatestTelemetry(ctx, id)
	notFound("telemetry", err)
	_, err = beta.SendCommand(ctx, id, "reboot", nil, time.Second)
	notFound("command", err)
	_, err = beta.GetEnrollmentGroup(ctx, group.ID)
	notFound("get group", err)
	notFound("delete group", beta.DeleteEnrollmentGroup(ctx, group.ID))
	for _, q := range []string{"", `id = "` + id + `"`, `serial = "SN-1"`, `labels.site = "plant-7"`} {
		ds, err := beta.AllDevices(ctx, q)
		if err != nil || len(ds) != 0 {
			t.Errorf("query %q from another tenant: %v %v", q, ds, err)
		}
	}
	if gs, err := beta.ListEnrollmentGroups(ctx); err != nil || len(gs) != 0 {
		t.Errorf("groups: %v %v", gs, err)
	}
	if evs, err := beta.ListSecurityEvents(ctx, steward.SecurityEventFilter{DeviceID: id}); err != nil || len(evs) != 0 {
		t.Errorf("security events: %v %v", evs, err)
	}
	// Beta's device CA is its own.
	aCA, _ := n.admin.DeviceCA(ctx)
	bCA, _ := beta.DeviceCA(ctx)
	if len(bCA) == 0 || string(aCA) == string(bCA) {
		t.Error("tenants share a device CA")
	}
	// Beta cannot register alpha's manufacturer CA again.
	if _, err := beta.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{Name: "steal", CAPEM: mfr.PEM()}); steward.ErrorCode(err) != steward.CodeConflict {
		t.Errorf("second registration of a manufacturer CA: %v", err)
	}
	// Beta cannot create tenants.
	if _, err := beta.CreateTenant(ctx, "gamma", "Gamma"); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Errorf("tenant admin created a tenant: %v", err)
	}
	// Nothing changed.
	d, err := n.admin.GetDevice(ctx, id)
	if err != nil || d.State != steward.StateProvisioned || d.Owner != "" || d.Certificates[0].Revoked() {
		t.Errorf("alpha's device changed: %+v %v", d, err)
	}
	// A command to a device that is not connected says so.
	if _, err := n.admin.SendCommand(ctx, id, "ping", nil, time.Second); steward.ErrorCode(err) != steward.CodeUnavailable || !strings.Contains(err.Error(), "not connected") {
		t.Errorf("command to an offline device: %v", err)
	}
	// And a device of beta cannot enroll through alpha's label.
	var e *estclient.Error
	cl := n.est(ptr(mfr.Factory(t, "SN-2")))
	cl.Label = "beta"
	_, csr := newCSR(t)
	if _, err := cl.SimpleEnroll(ctx, csr); !errors.As(err, &e) || e.StatusCode != 401 {
		t.Errorf("enroll through another tenant's label: %v", err)
	}
}

var _ = atomic.Int64{}
