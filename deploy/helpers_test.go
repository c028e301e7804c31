package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/steward-iot/steward/internal/testclock"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/sqlite"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

const tenant = "acme"

// env is an engine over a real SQLite store and the in-process bus, whose
// outbound messages (the jobs) the test keeps.
type env struct {
	t      testing.TB
	store  steward.Store
	clock  *testclock.Clock
	bus    *inproc.Bus
	engine *Engine
	audit  *auditLog

	mu      sync.Mutex
	jobs    map[string][]steward.UpdateJob // device → jobs, in order
	cleared map[string]int                 // device → retained jobs cleared
}

// auditLog keeps the audit records.
type auditLog struct {
	mu      sync.Mutex
	records []steward.AuditRecord
}

func (a *auditLog) Record(_ context.Context, r steward.AuditRecord) error {
	a.mu.Lock()
	a.records = append(a.records, r)
	a.mu.Unlock()
	return nil
}

func (a *auditLog) actions() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, r := range a.records {
		out = append(out, r.Action+"/"+r.Outcome)
	}
	return out
}

func newEnv(t testing.TB, devices int, edit ...func(*Config)) *env {
	t.Helper()
	s, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "s.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return newEnvOn(t, s, devices, edit...)
}

func newEnvOn(t testing.TB, s steward.Store, devices int, edit ...func(*Config)) *env {
	t.Helper()
	must(t, s.CreateTenant(t.Context(), steward.Tenant{ID: tenant, Name: "Acme", CreatedAt: t0}))
	e := &env{t: t, store: s, clock: testclock.New(t0), bus: inproc.New(nil), audit: &auditLog{}, jobs: map[string][]steward.UpdateJob{}, cleared: map[string]int{}}
	e.bus.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		if m.Channel != steward.ChannelUpdateJob {
			return nil // the twin's desired state, in the configuration tests
		}
		if !m.Retain || m.QoS != 1 {
			t.Errorf("job sent with retain=%v qos=%d", m.Retain, m.QoS)
		}
		if len(m.Payload) == 0 { // the retained job cleared
			e.mu.Lock()
			e.cleared[m.DeviceID]++
			e.mu.Unlock()
			return nil
		}
		var j steward.UpdateJob
		if err := json.Unmarshal(m.Payload, &j); err != nil {
			t.Errorf("job payload: %v", err)
		}
		e.mu.Lock()
		e.jobs[m.DeviceID] = append(e.jobs[m.DeviceID], j)
		e.mu.Unlock()
		return nil
	})
	for i := range devices {
		e.addDevice(dev(i), "berlin", map[string]string{"ring": "b"})
	}
	must(t, s.CreateArtifact(t.Context(), steward.Artifact{ID: "a-1", TenantID: tenant, Name: "gw-firmware", Version: "1.5.0",
		Type: steward.ArtifactFirmware, SHA256: strings.Repeat("ab", 32), Size: 4096, CreatedBy: "user:alice", CreatedAt: t0}))
	cfg := Config{Store: s, Bus: e.bus, Clock: e.clock, Auditor: e.audit, Node: "node-1", JoinInterval: time.Minute}
	for _, f := range edit {
		f(&cfg)
	}
	e.engine = New(cfg)
	return e
}

func dev(i int) string { return fmt.Sprintf("d-%04d", i) }

func (e *env) addDevice(id, site string, labels map[string]string) {
	e.t.Helper()
	must(e.t, e.store.CreateDevice(e.t.Context(), steward.Device{ID: id, TenantID: tenant, Model: "gw-100", Firmware: "1.4.1",
		Location: steward.Location{Site: site}, Labels: labels, State: steward.StateActive,
		StateChangedAt: t0, CreatedAt: t0, UpdatedAt: t0}))
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// create creates a deployment of gw-firmware 1.5.0 to every device.
func (e *env) create(spec steward.DeploymentSpec) steward.Deployment {
	e.t.Helper()
	if spec.Target.Kind == "" {
		// The rest of the target comes from the artifact.
		spec.Target = steward.DeploymentTarget{Kind: steward.KindArtifact, ArtifactID: "a-1"}
	}
	d, err := e.engine.Create(e.t.Context(), tenant, "user:alice", CreateRequest{Name: "fw 1.5.0", DeploymentSpec: spec})
	must(e.t, err)
	return d
}

// tick runs one tick and returns the deployment as stored after it.
func (e *env) tick(id string) steward.Deployment {
	e.t.Helper()
	if _, err := e.engine.Tick(e.t.Context()); err != nil {
		e.t.Fatalf("tick: %v", err)
	}
	return e.get(id)
}

func (e *env) get(id string) steward.Deployment {
	e.t.Helper()
	d, err := e.store.GetDeployment(e.t.Context(), tenant, id)
	must(e.t, err)
	return d
}

// report is a device's status message, through the decoder the intake uses.
func (e *env) report(depID, device, payload string) bool {
	e.t.Helper()
	if depID != "" {
		payload = fmt.Sprintf(`{"deployment_id": %q, %s}`, depID, payload)
	}
	u, err := DecodeStatus([]byte(payload), tenant, device, e.clock.Now())
	must(e.t, err)
	ok, err := e.store.UpdateDeploymentDevices(e.t.Context(), []steward.DeploymentDeviceUpdate{u})
	must(e.t, err)
	return ok[0]
}

// finish reports devices' whole update: downloading … succeeded (or
// failed with reason when fail is set).
func (e *env) finish(depID string, fail string, devices ...string) {
	e.t.Helper()
	for _, d := range devices {
		e.report(depID, d, `"state": "downloading"`)
		e.report(depID, d, `"state": "installing"`)
		if fail != "" {
			if !e.report(depID, d, fmt.Sprintf(`"state": "failed", "reason": %q`, fail)) {
				e.t.Fatalf("%s: failed did not apply", d)
			}
			continue
		}
		if !e.report(depID, d, `"state": "succeeded", "version": "1.5.0"`) {
			e.t.Fatalf("%s: succeeded did not apply", d)
		}
	}
}

// devices returns the deployment's devices in the states given (all for none).
func (e *env) devices(depID string, states ...steward.UpdateState) []steward.DeploymentDevice {
	e.t.Helper()
	rows, err := e.store.ListDeploymentDevices(e.t.Context(), tenant, depID, steward.DeploymentDeviceFilter{Phase: -1, States: states, Limit: 10000})
	must(e.t, err)
	return rows
}

func ids(rows []steward.DeploymentDevice) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.DeviceID
	}
	return out
}

// stateCounts counts the deployment's devices by state.
func (e *env) stateCounts(depID string) map[steward.UpdateState]int {
	e.t.Helper()
	pr, err := e.engine.Progress(e.t.Context(), e.get(depID))
	must(e.t, err)
	return pr.States
}

func (e *env) jobsOf(device string) []steward.UpdateJob {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]steward.UpdateJob(nil), e.jobs[device]...)
}

func (e *env) wantState(d steward.Deployment, want steward.DeploymentState) {
	e.t.Helper()
	if d.State != want {
		e.t.Fatalf("deployment is %s (%s), want %s", d.State, d.StateReason, want)
	}
}

func (e *env) wantCounts(depID string, want map[steward.UpdateState]int) {
	e.t.Helper()
	got := e.stateCounts(depID)
	for st, n := range want {
		if got[st] != n {
			e.t.Fatalf("%s: %d devices, want %d (all: %v)", st, got[st], n, got)
		}
	}
}
