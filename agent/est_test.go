package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"math/rand/v2"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/agenttest"
	"github.com/steward-iot/steward/est/esttest"
	"github.com/steward-iot/steward/internal/testpki"
)

// offsetClock is the wall clock moved by an offset that tests change.
type offsetClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *offsetClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *offsetClock) set(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset = d
}

// estEnv is a real EST server (the est handler over esttest's Enroller)
// and a broker that trusts what it issues, both on loopback TLS.
type estEnv struct {
	t        *testing.T
	enroller *esttest.Enroller
	url      string
	broker   *agenttest.Broker
	serverCA *testpki.CA
	factory  tls.Certificate
	clock    *offsetClock
	dir      string
}

func newESTEnv(t *testing.T) *estEnv {
	t.Helper()
	serverCA := testpki.NewCA(t, "server CA")
	srv := agenttest.NewEST(t, serverCA, "tenant-a")
	factory, err := srv.Enroller.FactoryIdentity("SN-7")
	if err != nil {
		t.Fatal(err)
	}
	return &estEnv{
		t: t, enroller: srv.Enroller, url: srv.URL, serverCA: serverCA, factory: factory,
		broker: agenttest.NewBroker(t, serverCA.ServerCert(t), srv.DevicePool()),
		clock:  &offsetClock{}, dir: t.TempDir(),
	}
}

func (e *estEnv) config() Config {
	return Config{
		ESTURL:            e.url,
		ESTLabel:          "tenant-a",
		MQTTAddr:          e.broker.Addr(),
		ServerCA:          e.serverCA.Pool(),
		FactoryCert:       e.factory,
		StateDir:          e.dir,
		Model:             "gw-100",
		Attributes:        func() map[string]any { return map[string]any{} },
		Telemetry:         func() map[string]float64 { return map[string]float64{"cpu": 0.5} },
		TelemetryInterval: time.Hour,
		BackoffMin:        5 * time.Millisecond,
		BackoffMax:        20 * time.Millisecond,
		RenewCheck:        10 * time.Millisecond,
		Clock:             e.clock,
		Logger:            slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Rand:              rand.New(rand.NewPCG(5, 5)),
	}
}

// run starts an agent and returns a function that stops it.
func (e *estEnv) run(cfg Config) (*Agent, func()) {
	e.t.Helper()
	a, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("Run: %v", err)
			}
		case <-time.After(20 * time.Second):
			e.t.Fatal("Run did not return after cancel")
		}
	}
	e.t.Cleanup(stop)
	return a, stop
}

func csrKey(t *testing.T, r steward.EnrollRequest) *ecdsa.PublicKey {
	t.Helper()
	csr, err := x509.ParseCertificateRequest(r.CSR)
	if err != nil {
		t.Fatal(err)
	}
	return csr.PublicKey.(*ecdsa.PublicKey)
}

func TestAgentEnrollsConnectsAndReusesIdentity(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	a, stop := e.run(e.config())
	e.broker.WaitFor("connection", func() bool { return a.Status().Connected })
	id := a.DeviceID()
	if !steward.ValidDeviceID(id) {
		t.Fatalf("device ID %q", id)
	}
	reqs := e.enroller.Requests()
	if len(reqs) != 1 || reqs[0].Label != "tenant-a" {
		t.Fatalf("EST requests %+v, want one simpleenroll under the label", reqs)
	}
	if !reqs[0].PeerChain[0].Equal(e.factory.Leaf) {
		t.Fatal("simpleenroll was not authenticated with the factory certificate")
	}
	csr, _ := x509.ParseCertificateRequest(reqs[0].CSR)
	if csr.Subject.SerialNumber != "SN-7" {
		t.Errorf("CSR subject %v, want the factory serial", csr.Subject)
	}
	saved, err := stateDir(e.dir).loadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if saved.DeviceID != id || !saved.Key.PublicKey.Equal(csrKey(t, reqs[0])) {
		t.Fatal("saved identity is not the enrolled one")
	}
	if len(e.broker.Messages(steward.Topic(id, steward.ChannelAttributes))) == 0 {
		t.Fatal("no attributes after enrollment")
	}
	stop()

	// A restart reuses key and certificate: no EST request, same ID.
	a2, _ := e.run(e.config())
	e.broker.WaitFor("second connection", func() bool { return a2.Status().Connected })
	if a2.DeviceID() != id {
		t.Fatalf("device ID after restart %q, want %q", a2.DeviceID(), id)
	}
	if n := len(e.enroller.Requests()); n != 1 {
		t.Fatalf("%d EST requests after restart, want still 1", n)
	}
}

func TestAgentEnrollRetriesWithTheSameKey(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	// As before the operator has registered the manufacturer CA.
	e.enroller.SetFailure(steward.Errorf(steward.CodePermissionDenied, "unknown manufacturer"))
	a, _ := e.run(e.config())
	e.broker.WaitFor("three refused requests", func() bool { return len(e.enroller.Requests()) >= 3 })
	if a.Status().Enrolled {
		t.Fatal("enrolled while the server refused")
	}
	e.enroller.SetFailure(nil)
	e.broker.WaitFor("connection", func() bool { return a.Status().Connected })
	reqs := e.enroller.Requests()
	first := csrKey(t, reqs[0])
	for i, r := range reqs {
		if !csrKey(t, r).Equal(first) {
			t.Fatalf("request %d asked for another key: a server would take it for a clone", i)
		}
	}
	if _, err := os.Stat(stateDir(e.dir).path(PendingKeyFile)); err == nil {
		t.Fatal("pending key left behind after enrollment")
	}
}

func TestAgentRenewsAtTwoThirdsWithANewKey(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	a, _ := e.run(e.config())
	e.broker.WaitFor("connection", func() bool { return a.Status().Connected })
	id := a.DeviceID()
	before, err := stateDir(e.dir).loadIdentity()
	if err != nil {
		t.Fatal(err)
	}

	// Two thirds of 90 days and a day on.
	e.clock.set(61 * 24 * time.Hour)
	e.broker.WaitFor("renewal", func() bool { return a.Status().Renewals >= 1 })
	e.clock.set(0)
	e.broker.WaitFor("reconnection", func() bool { st := a.Status(); return st.Connected && st.Connects >= 2 })

	var re *steward.EnrollRequest
	for _, r := range e.enroller.Requests()[1:] {
		re = &r
		break
	}
	if re == nil {
		t.Fatal("no simplereenroll request")
	}
	if !re.PeerChain[0].Equal(before.Cert) {
		t.Fatal("simplereenroll was not authenticated with the operational certificate")
	}
	if csrKey(t, *re).Equal(&before.Key.PublicKey) {
		t.Fatal("renewal kept the old key")
	}
	after, err := stateDir(e.dir).loadIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if after.DeviceID != id || after.Key.Equal(before.Key) || after.Cert.Equal(before.Cert) {
		t.Fatalf("identity after renewal: id %s, same key %v, same cert %v", after.DeviceID, after.Key.Equal(before.Key), after.Cert.Equal(before.Cert))
	}
}

func TestAgentReenrollsWithFactoryIdentityWhenExpired(t *testing.T) {
	t.Parallel()
	e := newESTEnv(t)
	a, stop := e.run(e.config())
	e.broker.WaitFor("connection", func() bool { return a.Status().Connected })
	stop()
	before, err := stateDir(e.dir).loadIdentity()
	if err != nil {
		t.Fatal(err)
	}

	// The device was off for longer than its certificate's life.
	e.clock.set(91 * 24 * time.Hour)
	a2, _ := e.run(e.config())
	e.broker.WaitFor("new enrollment", func() bool { return len(e.enroller.Requests()) >= 2 })
	e.clock.set(0)
	e.broker.WaitFor("connection", func() bool { return a2.Status().Connected })
	r := e.enroller.Requests()[1]
	if !r.PeerChain[0].Equal(e.factory.Leaf) {
		t.Fatal("expired device did not enroll with its factory certificate")
	}
	// The current key goes with it: a new key for the same factory
	// identity would look like a clone.
	if !csrKey(t, r).Equal(&before.Key.PublicKey) {
		t.Fatal("expired device enrolled with another key")
	}
	if a2.DeviceID() != before.DeviceID {
		t.Fatalf("device ID %s, want %s", a2.DeviceID(), before.DeviceID)
	}
}
