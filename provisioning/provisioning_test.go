package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/lifecycle"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/sqlite"
)

type env struct {
	svc   *Service
	store steward.Store
	bus   *inproc.Bus
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "s.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.CreateTenant(ctx, steward.Tenant{ID: "t1", Name: "T1", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	key := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(key)
	auth, err := pki.New(ctx, pki.Config{Store: st, MasterKey: key, Clock: steward.SystemClock{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bus := inproc.New(log)
	lc := lifecycle.New(st, bus, steward.SystemClock{}, log)
	svc := New(Config{Store: st, Authority: auth, Bus: bus, Lifecycle: lc, ParseCSR: pki.ParseCSR, Clock: steward.SystemClock{}, Logger: log})
	return &env{svc: svc, store: st, bus: bus}
}

func caPEM(t *testing.T, isCA bool) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "Mfr " + time.Now().String()},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestCreateEnrollmentGroupRefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	good := caPEM(t, true)
	if _, err := e.svc.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{TenantID: "t1", Name: "g1", CAPEM: good}, "test"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		g    steward.EnrollmentGroup
		code steward.Code
	}{
		{"not PEM", steward.EnrollmentGroup{Name: "x", CAPEM: "hello"}, steward.CodeInvalid},
		{"two certificates", steward.EnrollmentGroup{Name: "x", CAPEM: caPEM(t, true) + caPEM(t, true)}, steward.CodeInvalid},
		{"not a CA", steward.EnrollmentGroup{Name: "x", CAPEM: caPEM(t, false)}, steward.CodeInvalid},
		{"garbage DER", steward.EnrollmentGroup{Name: "x", CAPEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")}))}, steward.CodeInvalid},
		{"same CA again", steward.EnrollmentGroup{Name: "g2", CAPEM: good}, steward.CodeConflict},
		{"same name again", steward.EnrollmentGroup{Name: "g1", CAPEM: caPEM(t, true)}, steward.CodeConflict},
		{"strict without serials", steward.EnrollmentGroup{Name: "x", CAPEM: caPEM(t, true), Strict: true}, steward.CodeInvalid},
		{"bad label key", steward.EnrollmentGroup{Name: "x", CAPEM: caPEM(t, true), Labels: map[string]string{"a b": "c"}}, steward.CodeInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.g.TenantID = "t1"
			if _, err := e.svc.CreateEnrollmentGroup(ctx, tt.g, "test"); steward.ErrorCode(err) != tt.code {
				t.Fatalf("err = %v, want %s", err, tt.code)
			}
			gs, _ := e.store.ListEnrollmentGroups(ctx, "t1")
			if len(gs) != 1 {
				t.Fatalf("%d groups stored, want 1", len(gs))
			}
		})
	}
}

// publishAttrs sends an attributes report through the bus as the broker
// would, and returns the ack.
func (e *env) publishAttrs(t *testing.T, id, payload string) error {
	t.Helper()
	got := make(chan error, 1)
	e.bus.PublishInbound(context.Background(), steward.DeviceMessage{TenantID: "t1", DeviceID: id, Channel: steward.ChannelAttributes, Payload: []byte(payload), Received: time.Now()}, func(err error) { got <- err })
	return <-got
}

func TestValidationBeforeActivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	g, err := e.svc.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{TenantID: "t1", Name: "g", CAPEM: caPEM(t, true),
		Models: []string{"gw-100"}, Firmware: map[string][]string{"gw-100": {"1.0.0", "1.1.0"}}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	dev := steward.Device{ID: "d-test1", TenantID: "t1", EnrollmentGroupID: g.ID, FactoryID: "f1", State: steward.StateProvisioned, CreatedAt: now, UpdatedAt: now, StateChangedAt: now}
	if err := e.store.CreateDevice(ctx, dev); err != nil {
		t.Fatal(err)
	}
	state := func() steward.Device {
		d, err := e.store.GetDevice(ctx, "t1", "d-test1")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}

	for _, bad := range []string{`not json`, `[1,2]`, `{"model": 7}`, `null`} {
		if err := e.publishAttrs(t, "d-test1", bad); steward.ErrorCode(err) != steward.CodeInvalid {
			t.Errorf("payload %q: %v, want invalid", bad, err)
		}
	}
	if d := state(); d.State != steward.StateProvisioned || d.Model != "" {
		t.Fatalf("a refused report changed the device: %+v", d)
	}

	steps := []struct {
		payload string
		state   steward.State
		reason  string
	}{
		{`{"model":"gw-100","firmware":"0.9.0"}`, steward.StateQuarantined, `firmware "0.9.0" is not approved`},
		{`{"model":"gw-100","firmware":"1.1.0","extra":{"k":1}}`, steward.StateActive, "validated"},
		{`{"model":"gw-100","firmware":"1.1.0"}`, steward.StateActive, "validated"},
		{`{"model":"cam-9","firmware":"1.1.0"}`, steward.StateQuarantined, `model "cam-9" is not allowed`},
	}
	for i, s := range steps {
		if err := e.publishAttrs(t, "d-test1", s.payload); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		d := state()
		if d.State != s.state || !strings.Contains(d.StateReason, s.reason) {
			t.Fatalf("step %d: %s %q, want %s %q", i, d.State, d.StateReason, s.state, s.reason)
		}
	}
	if d := state(); d.Attributes["extra"] == nil {
		t.Error("unknown attribute keys not kept")
	}
	// An operator's quarantine is not lifted by a good report.
	if _, err := e.svc.cfg.Lifecycle.Release(ctx, "t1", "d-test1", "token:x"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.cfg.Lifecycle.Quarantine(ctx, "t1", "d-test1", "under investigation", "token:x"); err != nil {
		t.Fatal(err)
	}
	if err := e.publishAttrs(t, "d-test1", `{"model":"gw-100","firmware":"1.1.0"}`); err != nil {
		t.Fatal(err)
	}
	if d := state(); d.State != steward.StateQuarantined || d.StateReason != "under investigation" {
		t.Fatalf("a report lifted an operator's quarantine: %s %q", d.State, d.StateReason)
	}
	hist, _ := e.store.ListLifecycleEvents(ctx, "t1", "d-test1")
	var got []string
	for _, h := range hist {
		got = append(got, string(h.To)+"/"+h.Actor)
	}
	want := "quarantined/system active/system quarantined/system active/token:x quarantined/token:x"
	if strings.Join(got, " ") != want {
		t.Errorf("history %q\nwant      %q", strings.Join(got, " "), want)
	}
}
