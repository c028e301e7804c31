package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/testpki"
)

// updateDevice is a device that follows deployments over MQTT/TLS, as the
// protocol asks (docs/protocol.md, "Deployments"): it takes each job from
// its retained update/job topic and reports each step on update/status,
// failing when told to.
type updateDevice struct {
	t    *testing.T
	id   string
	c    paho.Client
	fail string // reason to fail installs with; empty: succeed

	mu   sync.Mutex
	jobs []steward.UpdateJob
}

func (n *node) updateDevice(t *testing.T, mfr *testpki.CA, serial, fail string) *updateDevice {
	t.Helper()
	op := n.enroll(t, mfr.Factory(t, serial))
	d := &updateDevice{t: t, id: op.Leaf.Subject.CommonName, fail: fail}
	c, err := n.mqttClient(t, op, d.id, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.c = c
	d.publish(steward.ChannelAttributes, map[string]any{"model": "gw-100", "serial": serial, "firmware": "1.1.0"})
	return d
}

func (d *updateDevice) publish(ch steward.Channel, v any) {
	d.t.Helper()
	b, _ := json.Marshal(v)
	tok := d.c.Publish(steward.Topic(d.id, ch), 1, false, b)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Errorf("%s: publish %s: %v", d.id, ch, tok.Error())
	}
}

// follow subscribes to the device's jobs and runs each install.
func (d *updateDevice) follow() {
	d.t.Helper()
	tok := d.c.Subscribe(steward.Topic(d.id, steward.ChannelUpdateJob), 1, func(_ paho.Client, m paho.Message) {
		var j steward.UpdateJob
		if len(m.Payload()) == 0 || json.Unmarshal(m.Payload(), &j) != nil {
			return
		}
		d.mu.Lock()
		for _, seen := range d.jobs {
			if seen.DeploymentID == j.DeploymentID && seen.Attempt == j.Attempt && seen.Action == j.Action {
				d.mu.Unlock()
				return // a reminder of a job it already runs
			}
		}
		d.jobs = append(d.jobs, j)
		d.mu.Unlock()
		if j.Action != steward.JobInstall {
			return
		}
		// paho calls handlers in order on one goroutine: report from another.
		go func() {
			st := func(state string, extra map[string]any) {
				v := map[string]any{"deployment_id": j.DeploymentID, "attempt": j.Attempt, "state": state, "at": time.Now().UTC().Format(time.RFC3339Nano)}
				for k, x := range extra {
					v[k] = x
				}
				d.publish(steward.ChannelUpdateStatus, v)
			}
			st("downloading", map[string]any{"progress": 0.5, "previous_version": "1.1.0"})
			st("downloaded", nil)
			st("installing", nil)
			if d.fail != "" {
				st("failed", map[string]any{"reason": d.fail})
				return
			}
			st("rebooting", nil)
			d.publish(steward.ChannelEvents, map[string]any{"type": "reboot", "severity": "notice", "message": "update"})
			st("verifying", nil)
			st("succeeded", map[string]any{"version": j.Target.Version})
		}()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		d.t.Fatalf("%s: subscribe: %v", d.id, tok.Error())
	}
}

func (d *updateDevice) jobsSeen() []steward.UpdateJob {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]steward.UpdateJob(nil), d.jobs...)
}

// TestDeploymentOverMQTT runs a deployment on a whole node to devices
// connected over MQTT/TLS with their own certificates: a canary, then the
// rest; one device fails its install, one subscribes only after its job
// was sent (the retained job reaches it), a malformed status is refused
// and changes nothing, and the API shows progress and each device's
// history.
func TestDeploymentOverMQTT(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	var devs []*updateDevice
	for i := range 5 {
		devs = append(devs, n.updateDevice(t, mfr, fmt.Sprintf("SN-DEP-%d", i), ""))
	}
	// The device with the greatest ID fails its install: the canary is the
	// first by ID, and a failed canary would (rightly) pause the deployment.
	worst := devs[0]
	for _, d := range devs {
		if d.id > worst.id {
			worst = d
		}
	}
	worst.fail = "disk full"
	eventually(t, "5 active devices", func() bool {
		ds, err := n.admin.AllDevices(ctx, "state = active")
		return err == nil && len(ds) == 5
	})
	late := devs[4]
	for _, d := range devs[:4] {
		d.follow()
	}
	dep, err := n.admin.CreateDeployment(ctx, client.DeploymentRequest{Name: "fw 1.2.0", DeploymentSpec: steward.DeploymentSpec{
		Target: steward.DeploymentTarget{Kind: steward.KindArtifact, Name: "gw-firmware", Version: "1.2.0",
			SHA256: strings.Repeat("ab", 32), Length: 4096, TUFPath: "gw-firmware/1.2.0/fw.bin"},
		Query:  `model = "gw-100"`,
		Phases: []steward.Phase{{Name: "canary", Count: 1}, {Name: "rest", Percent: 100, SuccessThreshold: 0.7}}}})
	if err != nil {
		t.Fatal(err)
	}
	if dep.State != steward.DeploymentScheduled {
		t.Fatalf("created %+v", dep.Deployment)
	}
	t.Cleanup(func() {
		if t.Failed() {
			d, err := n.admin.GetDeployment(ctx, dep.ID)
			rows, _, _ := n.admin.ListDeploymentDevices(ctx, dep.ID, steward.DeploymentDeviceFilter{Phase: -1, Limit: 100})
			t.Logf("deployment %+v %v\nprogress %+v\ndevices %+v", d.Deployment, err, d.Progress, rows)
		}
	})
	// The late device is told like the others; its job waits, retained,
	// until it subscribes.
	eventually(t, "the late device's job", func() bool {
		r, err := n.admin.GetDeploymentDevice(ctx, dep.ID, late.id)
		if err == nil && r.State != steward.UpdatePending && r.State != steward.UpdateNotified {
			t.Fatalf("late device %+v", r)
		}
		return err == nil && r.State == steward.UpdateNotified
	})
	// A malformed status is refused and changes nothing.
	late.publish(steward.ChannelUpdateStatus, map[string]any{"deployment_id": dep.ID, "state": "exploded"})
	if r, err := n.admin.GetDeploymentDevice(ctx, dep.ID, late.id); err != nil || r.State != steward.UpdateNotified {
		t.Fatalf("late device after a malformed status: %+v %v", r, err)
	}
	late.follow()
	var final client.Deployment
	eventually(t, "the deployment to complete", func() bool {
		final, err = n.admin.GetDeployment(ctx, dep.ID)
		return err == nil && final.State == steward.DeploymentCompleted
	})
	pr := final.Progress
	if pr.Total != 5 || pr.States[steward.UpdateSucceeded] != 4 || pr.States[steward.UpdateFailed] != 1 || pr.Phases[0].Total != 1 {
		t.Fatalf("progress %+v", pr)
	}
	for _, d := range devs {
		jobs := d.jobsSeen()
		if len(jobs) != 1 || jobs[0].DeploymentID != dep.ID || jobs[0].Target.TUFPath != "gw-firmware/1.2.0/fw.bin" || jobs[0].Attempt != 1 {
			t.Fatalf("%s saw jobs %+v", d.id, jobs)
		}
		dd, err := n.admin.GetDeploymentDevice(ctx, dep.ID, d.id)
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, h := range dd.History {
			steps = append(steps, string(h.State))
		}
		want := "notified,downloading,downloaded,installing,rebooting,verifying,succeeded"
		if d.fail != "" {
			want = "notified,downloading,downloaded,installing,failed"
			if dd.Reason != "disk full" {
				t.Fatalf("failed device %+v", dd.DeploymentDevice)
			}
		}
		if strings.Join(steps, ",") != want || dd.FromVersion != "1.1.0" {
			t.Fatalf("%s history %v (from %q), want %s", d.id, steps, dd.FromVersion, want)
		}
	}
}

// TestDeploymentApprovalsOnNode runs the two-person rule for deployments
// on a whole node, with the approvals service and a tenant policy: the
// creator cannot approve, another operator can, from the deployments API
// or from the approvals API; a rejection aborts the deployment.
func TestDeploymentApprovalsOnNode(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := context.Background()
	if _, err := n.admin.CreateApprovalPolicy(ctx, client.ApprovalPolicyRequest{Name: "every deployment", Action: "deployment.start", Approvals: 1}); err != nil {
		t.Fatal(err)
	}
	token := func(name string) *client.Client {
		t.Helper()
		tok, err := n.admin.CreateToken(ctx, name, steward.RoleAdmin)
		if err != nil {
			t.Fatal(err)
		}
		return client.New(n.APIURL(), tok.Secret, nil)
	}
	alice, bob := token("alice"), token("bob")
	req := client.DeploymentRequest{Name: "cfg", DeploymentSpec: steward.DeploymentSpec{
		Target: steward.DeploymentTarget{Kind: steward.KindArtifact, Name: "gw-firmware", Version: "1.2.0"}, Query: `model = "none"`}}
	create := func() client.Deployment {
		t.Helper()
		d, err := alice.CreateDeployment(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if d.State != steward.DeploymentAwaitingApproval || d.ApprovalID == "" {
			t.Fatalf("created %+v", d.Deployment)
		}
		return d
	}
	d := create()
	if _, err := alice.ApproveDeployment(ctx, d.ID, "mine"); steward.ErrorCode(err) != steward.CodePermissionDenied {
		t.Fatalf("the creator approved: %v", err)
	}
	got, err := bob.ApproveDeployment(ctx, d.ID, "fine")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != steward.DeploymentScheduled && got.State != steward.DeploymentRunning && got.State != steward.DeploymentCompleted {
		t.Fatalf("approved %+v", got.Deployment)
	}
	// Approved on the approvals API: the deployment moves on too.
	d2 := create()
	if _, err := bob.Approve(ctx, d2.ApprovalID, "fine"); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.GetDeployment(ctx, d2.ID); err != nil || got.State == steward.DeploymentAwaitingApproval || got.ApprovedBy == "" {
		t.Fatalf("after approval on the approvals API: %+v %v", got.Deployment, err)
	}
	d3 := create()
	if _, err := bob.Reject(ctx, d3.ApprovalID, "not now"); err != nil {
		t.Fatal(err)
	}
	if got, err := alice.GetDeployment(ctx, d3.ID); err != nil || got.State != steward.DeploymentAborted {
		t.Fatalf("after a rejection: %+v %v", got.Deployment, err)
	}
}
