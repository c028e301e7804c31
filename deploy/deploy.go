// Package deploy is the deployment engine: it carries an artifact or a
// configuration version to a fleet in phases (a canary, then waves),
// within each device's maintenance window, at a capped concurrency and
// rate, with retries, timeouts, thresholds, health gates, approvals and
// rollback.
//
// The engine is a reconciler driven by ticks, with an injected clock: each
// Tick leases the deployments that are scheduled or running (the store's
// ClaimDeployments: one node at a time per deployment, so that two nodes
// never start the same device) and moves each one step on from what the
// store holds. Devices report their progress on update/status; the Intake
// writes those reports in batches. Nothing is kept in memory between ticks
// but caches, so any node can take over a deployment.
package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Policy is the built-in approval policy, used when no steward.Approvals
// is wired: which deployments need a second operator.
type Policy struct {
	// MaxDevices: a deployment to more devices needs an approval (0: no
	// limit).
	MaxDevices int
	// ProductionLabel, a selector (steward.ParseMatch): a deployment that
	// reaches a device it matches needs an approval. Default
	// labels.environment=production.
	ProductionLabel string
}

// Config wires an Engine.
type Config struct {
	Store  steward.Store
	Bus    steward.Bus // where jobs go; nil sends nothing (tests of the store side)
	Clock  steward.Clock
	Logger *slog.Logger
	// Auditor records every action (optional).
	Auditor steward.Auditor
	// Approvals decides which deployments need approval and records the
	// decisions (optional; Policy applies without it).
	Approvals steward.Approvals
	Policy    Policy
	// Artifacts grants each device told to install an artifact the right
	// to download it (optional).
	Artifacts steward.ArtifactGrants
	// Configs rolls configuration versions out through the device twins
	// (optional): a configuration deployment then sets each device's
	// desired state and reads whether the device applied it, instead of
	// sending an update job. Target.Name is the template's ID and
	// Target.Version the configuration version's ID.
	Configs steward.ConfigRollout
	// Node names this node as the holder of deployment leases (default:
	// random).
	Node string
	// Lease is how long a claimed deployment stays this node's (default
	// 30s); Interval the time between ticks of Run (default 1s).
	Lease    time.Duration
	Interval time.Duration
	// StartBatch caps the devices one tick starts in one deployment
	// (default 5000, at most 10000).
	StartBatch int
	// JoinInterval is how often a deployment kept open looks for devices
	// that joined (default 1 minute).
	JoinInterval time.Duration
}

// Engine runs deployments.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	clock steward.Clock

	mu       sync.Mutex
	windows  map[string][]*Window // deployment ID → compiled windows
	joinedAt map[string]time.Time // deployment ID → last look for late joiners
}

// New returns an engine.
func New(cfg Config) *Engine {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Node == "" {
		cfg.Node = newID("node-")
	}
	if cfg.Lease <= 0 {
		cfg.Lease = 30 * time.Second
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.StartBatch <= 0 {
		cfg.StartBatch = 5000
	}
	cfg.StartBatch = min(cfg.StartBatch, 10000) // the most one store read returns
	if cfg.JoinInterval <= 0 {
		cfg.JoinInterval = time.Minute
	}
	if cfg.Policy.ProductionLabel == "" {
		cfg.Policy.ProductionLabel = "labels.environment=production"
	}
	return &Engine{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, windows: map[string][]*Window{}, joinedAt: map[string]time.Time{}}
}

// newID returns prefix + 20 random hex characters.
func newID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + hex.EncodeToString(b)
}

// audit records an action; a failure to record is returned, so that an
// action is never acknowledged without its record.
func (e *Engine) audit(ctx context.Context, tenantID, actor, action, id, outcome, detail string, before, after any) error {
	if e.cfg.Auditor == nil {
		return nil
	}
	r := steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: action, Target: "deployment:" + id,
		Outcome: outcome, Detail: detail, At: e.clock.Now()}
	if before != nil {
		r.Before, _ = json.Marshal(before)
	}
	if after != nil {
		r.After, _ = json.Marshal(after)
	}
	if err := e.cfg.Auditor.Record(ctx, r); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// summary is what the audit log keeps of a deployment before and after.
type summary struct {
	State  steward.DeploymentState `json:"state"`
	Phase  int                     `json:"phase"`
	Reason string                  `json:"reason,omitempty"`
}

func sum(d steward.Deployment) summary {
	return summary{State: d.State, Phase: d.Phase, Reason: d.StateReason}
}

// CreateRequest is what an operator asks for.
type CreateRequest struct {
	Name        string
	Description string
	steward.DeploymentSpec
	// Draft keeps the deployment a draft until Resume submits it.
	Draft bool
}

// Create checks and stores a deployment: a draft, awaiting approval when
// the policy demands one, or scheduled (the engine starts it at its start
// time). Bad input is CodeInvalid and stores nothing.
func (e *Engine) Create(ctx context.Context, tenantID, actor string, req CreateRequest) (steward.Deployment, error) {
	now := e.clock.Now()
	d := steward.Deployment{ID: newID("dp-"), TenantID: tenantID, Name: req.Name, Description: req.Description,
		DeploymentSpec: req.DeploymentSpec, CreatedBy: actor, CreatedAt: now, UpdatedAt: now, State: steward.DeploymentDraft}
	if err := e.resolveArtifact(ctx, tenantID, &d.Target); err != nil {
		return d, err
	}
	if err := d.Validate(); err != nil {
		return d, err
	}
	if _, err := compileWindows(d.Windows); err != nil {
		return d, err
	}
	if _, err := e.cfg.Store.CountDevices(ctx, tenantID, steward.DeviceQuery{Query: d.Query}); err != nil {
		return d, fmt.Errorf("target query: %w", err)
	}
	if !req.Draft {
		var err error
		if d, err = e.submit(ctx, d, actor); err != nil {
			return d, err
		}
	}
	if err := e.cfg.Store.CreateDeployment(ctx, d); err != nil {
		return d, err
	}
	detail := ""
	if d.Emergency {
		detail = "emergency"
	}
	if err := e.audit(ctx, tenantID, actor, "deployment.create", d.ID, steward.AuditSuccess, detail, nil, sum(d)); err != nil {
		return d, err
	}
	d.Version = 1
	return d, nil
}

// resolveArtifact fills an artifact target from the artifact it names, so
// that the job carries exactly what was uploaded and signed; a field given
// that disagrees with the artifact is refused.
func (e *Engine) resolveArtifact(ctx context.Context, tenantID string, t *steward.DeploymentTarget) error {
	if t.Kind != steward.KindArtifact || t.ArtifactID == "" {
		return nil
	}
	a, err := e.cfg.Store.GetArtifact(ctx, tenantID, t.ArtifactID)
	if steward.IsNotFound(err) {
		return steward.Errorf(steward.CodeInvalid, "artifact %s not found", t.ArtifactID)
	}
	if err != nil {
		return fmt.Errorf("artifact %s: %w", t.ArtifactID, err)
	}
	for _, f := range []struct {
		name      string
		got, want string
		set       func()
	}{
		{"name", t.Name, a.Name, func() { t.Name = a.Name }},
		{"version", t.Version, a.Version, func() { t.Version = a.Version }},
		{"sha256", t.SHA256, a.SHA256, func() { t.SHA256 = a.SHA256 }},
		{"tuf_path", t.TUFPath, a.TargetPath(), func() { t.TUFPath = a.TargetPath() }},
	} {
		switch {
		case f.got == "":
			f.set()
		case f.got != f.want:
			return steward.Errorf(steward.CodeInvalid, "target %s %q is not artifact %s's (%q)", f.name, f.got, a.ID, f.want)
		}
	}
	switch {
	case t.Length == 0:
		t.Length = a.Size
	case t.Length != a.Size:
		return steward.Errorf(steward.CodeInvalid, "target length %d is not artifact %s's (%d)", t.Length, a.ID, a.Size)
	}
	return nil
}

// submit decides whether d needs an approval and moves it on: to awaiting
// approval (with the request opened) or scheduled.
func (e *Engine) submit(ctx context.Context, d steward.Deployment, actor string) (steward.Deployment, error) {
	n, why, attrs, err := e.required(ctx, d)
	if err != nil {
		return d, err
	}
	d.UpdatedAt = e.clock.Now()
	if n == 0 {
		d.State, d.StateReason = steward.DeploymentScheduled, ""
		return d, nil
	}
	d.State, d.StateReason = steward.DeploymentAwaitingApproval, why
	if e.cfg.Approvals != nil {
		payload, _ := json.Marshal(map[string]any{"name": d.Name, "target": d.Target, "query": d.Query, "emergency": d.Emergency, "attributes": attrs})
		r, err := e.cfg.Approvals.Request(ctx, steward.ApprovalRequest{TenantID: d.TenantID, Action: "deployment.start",
			Target: "deployment:" + d.ID, Payload: payload, Reason: why, Requester: actor, Attributes: attrs, Approvals: n,
			CreatedAt: d.UpdatedAt, ExpiresAt: d.UpdatedAt.Add(7 * 24 * time.Hour)})
		if err != nil {
			return d, fmt.Errorf("request approval: %w", err)
		}
		d.ApprovalID = r.ID
	}
	return d, nil
}

// required returns how many approvals d needs and why. An emergency
// always needs one: skipping windows and the canary's soak takes a second
// operator.
func (e *Engine) required(ctx context.Context, d steward.Deployment) (int, string, map[string]string, error) {
	count, err := e.cfg.Store.CountDevices(ctx, d.TenantID, steward.DeviceQuery{Query: d.Query})
	if err != nil {
		return 0, "", nil, fmt.Errorf("target query: %w", err)
	}
	prod := 0
	if k, v, err := steward.ParseMatch(e.cfg.Policy.ProductionLabel); err == nil {
		q := fmt.Sprintf("%s = %q", k, v)
		if strings.TrimSpace(d.Query) != "" {
			q = "(" + d.Query + ") AND " + q
		}
		if prod, err = e.cfg.Store.CountDevices(ctx, d.TenantID, steward.DeviceQuery{Query: q}); err != nil {
			return 0, "", nil, fmt.Errorf("count production devices: %w", err)
		}
	}
	attrs := map[string]string{"device_count": fmt.Sprint(count), "emergency": fmt.Sprint(d.Emergency),
		"production_devices": fmt.Sprint(prod), "kind": string(d.Target.Kind)}
	var n int
	var why []string
	if e.cfg.Approvals != nil {
		m, w, err := e.cfg.Approvals.Required(ctx, d.TenantID, "deployment.start", "deployment:"+d.ID, attrs)
		if err != nil {
			return 0, "", nil, fmt.Errorf("approval policy: %w", err)
		}
		if m > 0 {
			n, why = m, append(why, w)
		}
	} else {
		if e.cfg.Policy.MaxDevices > 0 && count > e.cfg.Policy.MaxDevices {
			n, why = 1, append(why, fmt.Sprintf("%d devices, more than %d", count, e.cfg.Policy.MaxDevices))
		}
		if prod > 0 {
			n, why = 1, append(why, fmt.Sprintf("%d production devices (%s)", prod, e.cfg.Policy.ProductionLabel))
		}
	}
	if d.Emergency && n == 0 {
		n, why = 1, append(why, "emergency")
	}
	return n, strings.Join(why, "; "), attrs, nil
}

// Approve records actor's approval of a deployment awaiting one. The
// creator may not approve their own deployment (CodePermissionDenied,
// recorded as denied).
func (e *Engine) Approve(ctx context.Context, tenantID, id, actor, comment string) (steward.Deployment, error) {
	d, err := e.cfg.Store.GetDeployment(ctx, tenantID, id)
	if err != nil {
		return d, err
	}
	if d.State != steward.DeploymentAwaitingApproval {
		return d, steward.Errorf(steward.CodeFailedPrecondition, "deployment %s is %s, not awaiting approval", id, d.State)
	}
	if actor == d.CreatedBy {
		if aerr := e.audit(ctx, tenantID, actor, "deployment.approve", id, steward.AuditDenied, "the creator cannot approve", nil, nil); aerr != nil {
			return d, aerr
		}
		return d, steward.Errorf(steward.CodePermissionDenied, "the creator of a deployment cannot approve it; another operator must")
	}
	before := sum(d)
	if e.cfg.Approvals != nil && d.ApprovalID != "" {
		r, err := e.cfg.Approvals.Decide(ctx, tenantID, d.ApprovalID, steward.Decision{Approver: actor, Approve: true, Comment: comment, At: e.clock.Now()})
		if err != nil {
			return d, err
		}
		if r.State != steward.ApprovalApproved {
			// More approvers needed: nothing changes yet.
			return d, e.audit(ctx, tenantID, actor, "deployment.approve", id, steward.AuditSuccess,
				fmt.Sprintf("%d of %d approvals", len(r.Decisions), r.Approvals), before, before)
		}
		// The approvals service may already have told ApprovalDecided.
		if err := e.ApprovalDecided(ctx, r); err != nil {
			return d, err
		}
		return e.cfg.Store.GetDeployment(ctx, tenantID, id)
	}
	d.ApprovedBy = actor
	d.State, d.StateReason, d.UpdatedAt = steward.DeploymentScheduled, "", e.clock.Now()
	if d, err = e.cfg.Store.UpdateDeployment(ctx, d); err != nil {
		return d, err
	}
	detail := comment
	if d.Emergency {
		detail = strings.TrimSpace("emergency approved; " + comment)
	}
	return d, e.audit(ctx, tenantID, actor, "deployment.approve", id, steward.AuditSuccess, detail, before, sum(d))
}

// ApprovalDecided moves on the deployment an approval request was opened
// for, once the request is decided, however it was (here, or on the
// approvals API): approved, it is scheduled; rejected or expired, it is
// aborted. A request that is not a deployment's, or a deployment no longer
// awaiting it, is left alone, so that telling it twice does no harm. Wire
// it to the approvals service's OnDecided.
func (e *Engine) ApprovalDecided(ctx context.Context, r steward.ApprovalRequest) error {
	id, ok := strings.CutPrefix(r.Target, "deployment:")
	if r.Action != "deployment.start" || !ok || r.State == steward.ApprovalPending {
		return nil
	}
	d, err := e.cfg.Store.GetDeployment(ctx, r.TenantID, id)
	if err != nil || d.State != steward.DeploymentAwaitingApproval || d.ApprovalID != r.ID {
		return err
	}
	before := sum(d)
	actor, detail := "system:approvals", ""
	if n := len(r.Decisions); n > 0 {
		actor, detail = r.Decisions[n-1].Approver, r.Decisions[n-1].Comment
	}
	action := "deployment.approve"
	switch r.State {
	case steward.ApprovalApproved:
		d.ApprovedBy = actor
		d.State, d.StateReason = steward.DeploymentScheduled, ""
		if d.Emergency {
			detail = strings.TrimSpace("emergency approved; " + detail)
		}
	default: // rejected, expired
		action = "deployment.abort"
		d.State, d.StateReason, d.FinishedAt = steward.DeploymentAborted, "approval "+r.State, e.clock.Now()
	}
	d.UpdatedAt = e.clock.Now()
	nd, err := e.cfg.Store.UpdateDeployment(ctx, d)
	if steward.ErrorCode(err) == steward.CodeConflict {
		return nil // changed meanwhile: the other change decided
	}
	if err != nil {
		return err
	}
	return e.audit(ctx, d.TenantID, actor, action, d.ID, steward.AuditSuccess, detail, before, sum(nd))
}

// Pause stops a deployment from starting more devices; devices under way
// finish.
func (e *Engine) Pause(ctx context.Context, tenantID, id, actor, reason string) (steward.Deployment, error) {
	return e.change(ctx, tenantID, id, actor, "deployment.pause", func(d *steward.Deployment) error {
		if d.State != steward.DeploymentRunning && d.State != steward.DeploymentScheduled {
			return steward.Errorf(steward.CodeFailedPrecondition, "deployment %s is %s; only a running or scheduled one pauses", id, d.State)
		}
		d.State, d.StateReason = steward.DeploymentPaused, "paused by "+actor
		if reason != "" {
			d.StateReason += ": " + reason
		}
		return nil
	})
}

// Resume goes on with a paused deployment, or submits a draft. A
// deployment the failure threshold paused counts the failures so far as
// seen; one paused at the end of a phase (its success threshold or health
// gate) goes on to the next phase: the operator looked at the evidence.
func (e *Engine) Resume(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error) {
	return e.change(ctx, tenantID, id, actor, "deployment.resume", func(d *steward.Deployment) error {
		switch d.State {
		case steward.DeploymentDraft:
			nd, err := e.submit(ctx, *d, actor)
			*d = nd
			return err
		case steward.DeploymentPaused:
		default:
			return steward.Errorf(steward.CodeFailedPrecondition, "deployment %s is %s; only a paused deployment or a draft resumes", id, d.State)
		}
		if d.StartedAt.IsZero() {
			d.State, d.StateReason = steward.DeploymentScheduled, ""
			return nil
		}
		counts, err := e.cfg.Store.CountDeploymentDevices(ctx, tenantID, id)
		if err != nil {
			return err
		}
		t := tally(counts, d.Phase)
		d.FailedBase, d.FinishedBase = t.failed, t.finished
		if !d.PhaseDoneAt.IsZero() {
			e.advance(d)
		}
		if d.State == steward.DeploymentPaused {
			d.State, d.StateReason = steward.DeploymentRunning, "resumed by "+actor
		}
		return nil
	})
}

// Cancel aborts a deployment that has not ended: devices not told yet are
// skipped, and those under way are told to stop before they install.
func (e *Engine) Cancel(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error) {
	d, err := e.change(ctx, tenantID, id, actor, "deployment.cancel", func(d *steward.Deployment) error {
		if d.State.Final() {
			return steward.Errorf(steward.CodeFailedPrecondition, "deployment %s has already ended (%s)", id, d.State)
		}
		d.State, d.StateReason, d.FinishedAt = steward.DeploymentAborted, "cancelled by "+actor, e.clock.Now()
		return nil
	})
	if err != nil {
		return d, err
	}
	return d, e.stopDevices(ctx, d, "cancelled")
}

// change applies fn to a deployment and stores it, with its audit record.
func (e *Engine) change(ctx context.Context, tenantID, id, actor, action string, fn func(*steward.Deployment) error) (steward.Deployment, error) {
	d, err := e.cfg.Store.GetDeployment(ctx, tenantID, id)
	if err != nil {
		return d, err
	}
	before := sum(d)
	if err := fn(&d); err != nil {
		return d, err
	}
	d.UpdatedAt = e.clock.Now()
	if d, err = e.cfg.Store.UpdateDeployment(ctx, d); err != nil {
		return d, err
	}
	return d, e.audit(ctx, tenantID, actor, action, id, steward.AuditSuccess, d.StateReason, before, sum(d))
}

// stopDevices skips the devices of d not told yet and tells those under
// way to stop.
func (e *Engine) stopDevices(ctx context.Context, d steward.Deployment, reason string) error {
	now := e.clock.Now()
	after := ""
	for {
		rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: -1,
			States: []steward.UpdateState{steward.UpdatePending, steward.UpdateNotified, steward.UpdateDownloading, steward.UpdateDownloaded},
			After:  after, Limit: 5000})
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		var ups []steward.DeploymentDeviceUpdate
		for _, r := range rows {
			after = r.DeviceID
			if r.State == steward.UpdatePending {
				ups = append(ups, steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID,
					From: []steward.UpdateState{steward.UpdatePending}, State: steward.UpdateSkipped, Reason: reason, At: now})
				continue
			}
			if !e.viaTwin(d) { // a desired state already set is not taken back
				e.send(ctx, d, r, steward.JobCancel, nil, now)
			}
		}
		if _, err := e.cfg.Store.UpdateDeploymentDevices(ctx, ups); err != nil {
			return err
		}
	}
}

// Rollback starts a deployment that takes each device the deployment id
// changed (those it succeeded on) back to the version it had before, and
// marks id rolled back. It needs no approval: it restores what was.
func (e *Engine) Rollback(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error) {
	d, err := e.cfg.Store.GetDeployment(ctx, tenantID, id)
	if err != nil {
		return d, err
	}
	if d.RollbackOf != "" {
		return d, steward.Errorf(steward.CodeFailedPrecondition, "deployment %s is itself a rollback", id)
	}
	if d.StartedAt.IsZero() || d.State == steward.DeploymentRolledBack {
		return d, steward.Errorf(steward.CodeFailedPrecondition, "deployment %s is %s: nothing to roll back", id, d.State)
	}
	now := e.clock.Now()
	spec := d.DeploymentSpec
	spec.Query, spec.KeepOpen, spec.Gate, spec.StartAt = "", false, nil, time.Time{}
	spec.OnFailure = steward.OnFailurePause // a rollback is never rolled back
	spec.Phases = []steward.Phase{{Name: "rollback", Percent: 100, SuccessThreshold: 0, FailureThreshold: 1}}
	spec.Target.ArtifactID, spec.Target.SHA256, spec.Target.Length, spec.Target.TUFPath = "", "", 0, ""
	rb := steward.Deployment{ID: newID("dp-"), TenantID: tenantID, Name: "rollback of " + d.Name, DeploymentSpec: spec,
		RollbackOf: d.ID, CreatedBy: actor, CreatedAt: now, UpdatedAt: now, State: steward.DeploymentScheduled,
		StateReason: "rollback of " + d.ID}
	if err := rb.Validate(); err != nil {
		return rb, err
	}
	// Stop the original first, so that it changes no more devices.
	before := sum(d)
	if !d.State.Final() {
		d.FinishedAt = now
	}
	d.State, d.StateReason, d.UpdatedAt = steward.DeploymentRolledBack, "rolled back by "+rb.ID, now
	if d, err = e.cfg.Store.UpdateDeployment(ctx, d); err != nil {
		return d, err
	}
	if err := e.stopDevices(ctx, d, "rolled back"); err != nil {
		return d, err
	}
	if err := e.cfg.Store.CreateDeployment(ctx, rb); err != nil {
		return rb, err
	}
	after := ""
	for {
		rows, err := e.cfg.Store.ListDeploymentDevices(ctx, tenantID, id, steward.DeploymentDeviceFilter{Phase: -1,
			States: []steward.UpdateState{steward.UpdateSucceeded}, After: after, Limit: 5000})
		if err != nil {
			return rb, err
		}
		if len(rows) == 0 {
			break
		}
		add := make([]steward.DeploymentDevice, 0, len(rows))
		for _, r := range rows {
			after = r.DeviceID
			row := steward.DeploymentDevice{TenantID: tenantID, DeploymentID: rb.ID, DeviceID: r.DeviceID,
				Window: r.Window, State: steward.UpdatePending, FromVersion: r.ToVersion, ToVersion: r.FromVersion, UpdatedAt: now}
			if row.ToVersion == "" && e.viaTwin(d) {
				// The version the device was last in sync with before.
				prev, err := e.cfg.Configs.PreviousGoodConfig(ctx, tenantID, r.DeviceID, d.Target.Name)
				switch {
				case steward.IsNotFound(err):
					row.State, row.Reason = steward.UpdateSkipped, "no earlier configuration to go back to"
				case err != nil:
					return rb, err
				}
				row.ToVersion = prev
			}
			add = append(add, row)
		}
		if _, err := e.cfg.Store.AddDeploymentDevices(ctx, add); err != nil {
			return rb, err
		}
	}
	if err := e.audit(ctx, tenantID, actor, "deployment.rollback", id, steward.AuditSuccess, "rollback deployment "+rb.ID, before, sum(d)); err != nil {
		return rb, err
	}
	rb.Version = 1
	return rb, nil
}

// Run ticks every Interval until ctx ends.
func (e *Engine) Run(ctx context.Context) error {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if _, err := e.Tick(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("deployment tick failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Tick leases the deployments due and moves each one step on; it returns
// how many it worked on.
func (e *Engine) Tick(ctx context.Context) (int, error) {
	ds, err := e.cfg.Store.ClaimDeployments(ctx, e.cfg.Node, e.clock.Now(), e.cfg.Lease, 100)
	if err != nil {
		return 0, err
	}
	var firstErr error
	for _, d := range ds {
		if err := e.reconcile(ctx, d); err != nil {
			e.log.Warn("deployment step failed", "tenant", d.TenantID, "deployment", d.ID, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return len(ds), firstErr
}

// Counts of one phase, or of the whole deployment up to a phase.
type counts struct {
	total, pending, active, succeeded, failed, skipped, finished int
}

// tally counts the devices of phases up to and including upTo (all of
// them for -1).
func tally(cs []steward.DeploymentCount, upTo int) counts {
	var c counts
	for _, x := range cs {
		if upTo >= 0 && x.Phase > upTo {
			continue
		}
		c.add(x)
	}
	return c
}

func (c *counts) add(x steward.DeploymentCount) {
	c.total += x.N
	switch {
	case x.State == steward.UpdatePending:
		c.pending += x.N
	case x.State.Active():
		c.active += x.N
	case x.State == steward.UpdateSucceeded:
		c.succeeded += x.N
		c.finished += x.N
	case x.State == steward.UpdateSkipped:
		c.skipped += x.N
	default: // failed, timed out, rolled back
		c.failed += x.N
		c.finished += x.N
	}
}

func phaseCounts(cs []steward.DeploymentCount, phase int) counts {
	var c counts
	for _, x := range cs {
		if x.Phase == phase {
			c.add(x)
		}
	}
	return c
}

// reconcile moves a deployment one step on.
func (e *Engine) reconcile(ctx context.Context, d steward.Deployment) error {
	now := e.clock.Now()
	switch d.State {
	case steward.DeploymentScheduled:
		if !d.StartAt.IsZero() && now.Before(d.StartAt) {
			return nil
		}
		return e.start(ctx, d)
	case steward.DeploymentRunning:
		return e.step(ctx, d)
	}
	return nil
}

// start evaluates the target and writes the deployment's devices, each in
// its phase, in batches, then runs it.
func (e *Engine) start(ctx context.Context, d steward.Deployment) error {
	now := e.clock.Now()
	if d.RollbackOf == "" {
		n, err := e.cfg.Store.CountDevices(ctx, d.TenantID, steward.DeviceQuery{Query: d.Query})
		if err != nil {
			return err
		}
		if _, err := e.addDevices(ctx, d, n, false); err != nil {
			return err
		}
	}
	d.State, d.StateReason, d.StartedAt, d.UpdatedAt = steward.DeploymentRunning, "", now, now
	d.Tokens, d.TokensAt = float64(d.Rate), now
	e.mu.Lock()
	e.joinedAt[d.ID] = now
	e.mu.Unlock()
	_, err := e.cfg.Store.UpdateDeployment(ctx, d)
	if err != nil {
		return err
	}
	return e.audit(ctx, d.TenantID, "system:deploy", "deployment.start", d.ID, steward.AuditSuccess, "", nil, sum(d))
}

// addDevices evaluates the target query and adds the matching devices,
// n of them expected, each to its phase: in ID order, a count phase takes
// devices until it has its count, a percent phase until the phases up to
// it hold that share of n, a selector phase the devices it matches; the
// last phase takes the rest. Late joiners (late) all go to the last phase.
func (e *Engine) addDevices(ctx context.Context, d steward.Deployment, n int, late bool) (int, error) {
	now := e.clock.Now()
	per := make([]int, len(d.Phases))
	assigned := 0
	added := 0
	after := ""
	for {
		devs, err := e.cfg.Store.ListDevices(ctx, d.TenantID, steward.DeviceQuery{Query: d.Query, After: after, Limit: 1000})
		if err != nil {
			return added, err
		}
		if len(devs) == 0 {
			return added, nil
		}
		rows := make([]steward.DeploymentDevice, 0, len(devs))
		for _, dev := range devs {
			after = dev.ID
			p := len(d.Phases) - 1
			if !late {
				p = choosePhase(d.Phases, per, assigned, n, dev)
			}
			per[p]++
			assigned++
			w := -1
			for i, win := range d.Windows {
				if steward.MatchDevice(win.Match, dev) {
					w = i
					break
				}
			}
			from := ""
			if d.Target.Kind == steward.KindArtifact {
				from = dev.Firmware
			}
			rows = append(rows, steward.DeploymentDevice{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: dev.ID, Phase: p,
				Window: w, State: steward.UpdatePending, FromVersion: from, ToVersion: d.Target.Version, UpdatedAt: now})
		}
		k, err := e.cfg.Store.AddDeploymentDevices(ctx, rows)
		if err != nil {
			return added, err
		}
		added += k
	}
}

func choosePhase(ps []steward.Phase, per []int, assigned, n int, dev steward.Device) int {
	for i, p := range ps[:len(ps)-1] {
		switch {
		case p.Count > 0:
			if per[i] < p.Count {
				return i
			}
		case p.Percent > 0:
			upTo := 0
			for _, c := range per[:i+1] {
				upTo += c
			}
			if upTo < int(math.Ceil(p.Percent/100*float64(n))) {
				return i
			}
		case p.Selector != "":
			if steward.MatchDevice(p.Selector, dev) {
				return i
			}
		}
	}
	return len(ps) - 1
}

// step moves a running deployment on: late joiners, timeouts, retries,
// the failure threshold, the end of a phase (soak, gate, advance) and
// starting devices within the limits.
func (e *Engine) step(ctx context.Context, d steward.Deployment) error {
	now := e.clock.Now()
	if d.KeepOpen {
		e.mu.Lock()
		due := now.Sub(e.joinedAt[d.ID]) >= e.cfg.JoinInterval
		if due {
			e.joinedAt[d.ID] = now
		}
		e.mu.Unlock()
		if due {
			if _, err := e.addDevices(ctx, d, 0, true); err != nil {
				return err
			}
		}
	}
	if err := e.expire(ctx, d, now); err != nil {
		return err
	}
	if err := e.retry(ctx, d, now); err != nil {
		return err
	}
	if e.viaTwin(d) {
		if err := e.pollConfigs(ctx, d, now); err != nil {
			return err
		}
	}
	cs, err := e.cfg.Store.CountDeploymentDevices(ctx, d.TenantID, d.ID)
	if err != nil {
		return err
	}
	before := sum(d)
	last := len(d.Phases) - 1
	p := min(d.Phase, last)
	phase := d.Phases[p]

	// The failure threshold, over the deployment so far.
	all := tally(cs, -1)
	failed, finished := all.failed-d.FailedBase, all.finished-d.FinishedBase
	if finished > 0 && finished >= phase.MinFinished && float64(failed)/float64(finished) > phase.FailureThreshold {
		reason := fmt.Sprintf("failure threshold: %d of %d finished devices failed (%.1f%% > %.1f%%)", failed, finished,
			100*float64(failed)/float64(finished), 100*phase.FailureThreshold)
		return e.fail(ctx, d, reason, before)
	}

	pc := phaseCounts(cs, p)
	if d.Phase <= last && pc.pending == 0 && pc.active == 0 {
		// The phase is done: success threshold, soak, gate, advance.
		ok := pc.finished == 0 || float64(pc.succeeded)/float64(pc.finished) >= phase.SuccessThreshold
		if !ok {
			d.State = steward.DeploymentPaused
			d.StateReason = fmt.Sprintf("phase %s: %d of %d finished devices succeeded (%.1f%%), %.1f%% needed", phase.Name,
				pc.succeeded, pc.finished, 100*float64(pc.succeeded)/float64(pc.finished), 100*phase.SuccessThreshold)
			if d.PhaseDoneAt.IsZero() {
				d.PhaseDoneAt = now
			}
			return e.save(ctx, d, before, "deployment.pause")
		}
		if d.PhaseDoneAt.IsZero() {
			d.PhaseDoneAt = now
		}
		soak := phase.Soak.D()
		if d.Emergency && d.ApprovedBy != "" && p == 0 {
			soak = 0 // an approved emergency skips the canary's soak
		}
		if now.Before(d.PhaseDoneAt.Add(soak)) {
			return e.save(ctx, d, before, "")
		}
		if d.Gate != nil && p < last && soak > 0 {
			ev, err := e.evaluateGate(ctx, d, p, d.PhaseDoneAt, now)
			if err != nil {
				return err
			}
			d.Evidence = &ev
			if !ev.Passed {
				d.State = steward.DeploymentPaused
				d.StateReason = "health gate after phase " + phase.Name + ": " + worse(ev)
				return e.save(ctx, d, before, "deployment.pause")
			}
		}
		e.advance(&d)
		if d.State == steward.DeploymentCompleted {
			return e.save(ctx, d, before, "deployment.complete")
		}
		if d.Phase > last { // kept open: all phases done
			p = last
		} else {
			p = d.Phase
		}
	}
	if err := e.startDevices(ctx, &d, p, all.active, now); err != nil {
		return err
	}
	return e.save(ctx, d, before, "")
}

// advance moves d past its current phase: to the next one, or to the end.
func (e *Engine) advance(d *steward.Deployment) {
	d.PhaseDoneAt = time.Time{}
	if d.Phase < len(d.Phases) {
		d.Phase++
	}
	if d.Phase >= len(d.Phases) && !d.KeepOpen {
		d.Phase = len(d.Phases) - 1
		d.State, d.StateReason, d.FinishedAt = steward.DeploymentCompleted, "", e.clock.Now()
	}
}

// fail applies the failure policy.
func (e *Engine) fail(ctx context.Context, d steward.Deployment, reason string, before summary) error {
	switch d.OnFailure {
	case steward.OnFailureAbort, steward.OnFailureRollback:
		d.State, d.StateReason, d.FinishedAt = steward.DeploymentAborted, reason, e.clock.Now()
		if err := e.save(ctx, d, before, "deployment.abort"); err != nil {
			return err
		}
		if err := e.stopDevices(ctx, d, "aborted"); err != nil {
			return err
		}
		if d.OnFailure == steward.OnFailureRollback {
			_, err := e.Rollback(ctx, d.TenantID, d.ID, "system:deploy")
			return err
		}
		return nil
	}
	d.State, d.StateReason = steward.DeploymentPaused, reason
	return e.save(ctx, d, before, "deployment.pause")
}

// save stores d; a conflict (an operator changed it meanwhile) is left
// for the next tick. action, when set, is recorded.
func (e *Engine) save(ctx context.Context, d steward.Deployment, before summary, action string) error {
	d.UpdatedAt = e.clock.Now()
	nd, err := e.cfg.Store.UpdateDeployment(ctx, d)
	if steward.ErrorCode(err) == steward.CodeConflict {
		return nil
	}
	if err != nil {
		return err
	}
	if action == "" {
		return nil
	}
	return e.audit(ctx, d.TenantID, "system:deploy", action, d.ID, steward.AuditSuccess, nd.StateReason, before, sum(nd))
}

// expire times out the devices past their deadline.
func (e *Engine) expire(ctx context.Context, d steward.Deployment, now time.Time) error {
	active := []steward.UpdateState{steward.UpdateNotified, steward.UpdateDownloading, steward.UpdateDownloaded,
		steward.UpdateInstalling, steward.UpdateRebooting, steward.UpdateVerifying}
	for {
		rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: -1,
			States: active, Expired: now, Limit: 5000})
		if err != nil || len(rows) == 0 {
			return err
		}
		ups := make([]steward.DeploymentDeviceUpdate, len(rows))
		for i, r := range rows {
			ups[i] = steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID,
				Attempt: r.Attempt, From: active, State: steward.UpdateTimedOut,
				Reason: fmt.Sprintf("no final status by %s (last: %s)", r.Deadline.Format(time.RFC3339), r.State), At: now}
		}
		if _, err := e.cfg.Store.UpdateDeploymentDevices(ctx, ups); err != nil {
			return err
		}
		if len(rows) < 5000 {
			return nil
		}
	}
}

// retry puts devices whose failure was transient back to pending, after a
// backoff that doubles with each attempt, while retries remain; the others
// stay failed for good.
func (e *Engine) retry(ctx context.Context, d steward.Deployment, now time.Time) error {
	rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: -1,
		States: []steward.UpdateState{steward.UpdateFailed}, TransientOnly: true, Limit: 10000})
	if err != nil || len(rows) == 0 {
		return err
	}
	ups := make([]steward.DeploymentDeviceUpdate, len(rows))
	for i, r := range rows {
		u := steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID,
			Attempt: r.Attempt, From: []steward.UpdateState{steward.UpdateFailed}, At: now}
		if r.Attempt <= d.Retries {
			backoff := d.RetryBackoff.D() << min(r.Attempt-1, 20)
			u.State, u.NotBefore = steward.UpdatePending, now.Add(backoff)
			u.Reason = fmt.Sprintf("retry %d of %d after %s: %s", r.Attempt, d.Retries, backoff, r.Reason)
		} else {
			u.State, u.Reason = steward.UpdateFailed, fmt.Sprintf("%s (gave up after %d attempts)", r.Reason, r.Attempt)
		}
		ups[i] = u
	}
	_, err = e.cfg.Store.UpdateDeploymentDevices(ctx, ups)
	return err
}

// windowsOf returns d's compiled windows, cached.
func (e *Engine) windowsOf(d steward.Deployment) ([]*Window, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ws, ok := e.windows[d.ID]; ok {
		return ws, nil
	}
	ws, err := compileWindows(d.Windows)
	if err != nil {
		return nil, err
	}
	e.windows[d.ID] = ws
	return ws, nil
}

// startDevices tells the pending devices of phase p that are due, as many
// as the concurrency cap and the rate allow: a device outside its
// maintenance window waits for it (pending, not before it opens), a device
// below the battery guard is skipped.
func (e *Engine) startDevices(ctx context.Context, d *steward.Deployment, p, active int, now time.Time) error {
	n := min(d.Concurrency-active, e.cfg.StartBatch)
	if d.Rate > 0 {
		burst := float64(d.Rate) // a minute's worth
		if !d.TokensAt.IsZero() && now.After(d.TokensAt) {
			d.Tokens = math.Min(burst, d.Tokens+float64(d.Rate)*now.Sub(d.TokensAt).Minutes())
		}
		d.TokensAt = now
		n = min(n, int(d.Tokens))
	}
	if n <= 0 {
		return nil
	}
	rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: p,
		States: []steward.UpdateState{steward.UpdatePending}, Due: now, Limit: n})
	if err != nil || len(rows) == 0 {
		return err
	}
	ws, err := e.windowsOf(*d)
	if err != nil {
		return err
	}
	pending := []steward.UpdateState{steward.UpdatePending}
	deadline := now.Add(d.DeviceTimeout.D())
	var ups []steward.DeploymentDeviceUpdate
	windows := map[string]*steward.InstallWindow{}
	for _, r := range rows {
		u := steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID, From: pending, At: now}
		if r.Window >= 0 && r.Window < len(ws) && !(d.Emergency && d.ApprovedBy != "") {
			open, from, to := ws[r.Window].At(now)
			if !open {
				if from.IsZero() {
					u.State, u.Reason = steward.UpdateSkipped, "maintenance window "+ws[r.Window].String()+" never opens"
				} else {
					u.State, u.NotBefore = steward.UpdatePending, from
					u.Reason = "waiting for maintenance window " + ws[r.Window].String() + " at " + from.Format(time.RFC3339)
				}
				ups = append(ups, u)
				continue
			}
			windows[r.DeviceID] = &steward.InstallWindow{From: now, To: to}
		}
		if d.MinBattery > 0 {
			low, level, err := e.batteryLow(ctx, d.TenantID, r.DeviceID, d.MinBattery)
			if err != nil {
				return err
			}
			if low {
				u.State, u.Reason = steward.UpdateSkipped, fmt.Sprintf("battery_low: %.0f%% < %.0f%%", 100*level, 100*d.MinBattery)
				ups = append(ups, u)
				continue
			}
		}
		u.State, u.NextAttempt, u.Deadline = steward.UpdateNotified, true, deadline
		if w := windows[r.DeviceID]; w != nil && w.To.Before(deadline) {
			u.Deadline = w.To.Add(d.DeviceTimeout.D())
		}
		ups = append(ups, u)
	}
	applied, err := e.cfg.Store.UpdateDeploymentDevices(ctx, ups)
	if err != nil {
		return err
	}
	byID := make(map[string]steward.DeploymentDevice, len(rows))
	for _, r := range rows {
		byID[r.DeviceID] = r
	}
	started := 0
	var fails []steward.DeploymentDeviceUpdate
	for i, u := range ups {
		if !applied[i] || u.State != steward.UpdateNotified {
			continue
		}
		started++
		r := byID[u.DeviceID]
		r.Attempt++
		r.Deadline = u.Deadline
		if d.Target.Kind == steward.KindArtifact && d.Target.ArtifactID != "" && e.cfg.Artifacts != nil {
			if err := e.cfg.Artifacts.GrantArtifact(ctx, d.TenantID, u.DeviceID, d.Target.ArtifactID); err != nil {
				e.log.Warn("grant artifact failed", "deployment", d.ID, "device", u.DeviceID, "err", err)
			}
		}
		if e.viaTwin(*d) {
			if f, failed := e.applyConfig(ctx, *d, r, now); failed {
				fails = append(fails, f)
			}
			continue
		}
		action := steward.JobInstall
		if d.RollbackOf != "" {
			action = steward.JobRollback
		}
		e.send(ctx, *d, r, action, windows[u.DeviceID], now)
	}
	if d.Rate > 0 {
		d.Tokens -= float64(started)
	}
	if len(fails) > 0 {
		_, err = e.cfg.Store.UpdateDeploymentDevices(ctx, fails)
	}
	return err
}

// viaTwin reports whether d goes out through the device twins.
func (e *Engine) viaTwin(d steward.Deployment) bool {
	return d.Target.Kind == steward.KindConfig && e.cfg.Configs != nil
}

// applyConfig sets the configuration version r is to get as part of the
// device's desired state. A version the device's configuration cannot take
// (it breaks a schema) skips the device as incompatible; another error
// fails it.
func (e *Engine) applyConfig(ctx context.Context, d steward.Deployment, r steward.DeploymentDevice, now time.Time) (steward.DeploymentDeviceUpdate, bool) {
	version := r.ToVersion
	if version == "" {
		version = d.Target.Version
	}
	_, err := e.cfg.Configs.ApplyConfigVersion(ctx, d.TenantID, r.DeviceID, version, "deployment:"+d.ID)
	if err == nil {
		return steward.DeploymentDeviceUpdate{}, false
	}
	u := steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID, Attempt: r.Attempt,
		From: []steward.UpdateState{steward.UpdateNotified}, State: steward.UpdateFailed, Reason: "apply configuration: " + steward.ErrorMessage(err), At: now}
	if steward.ErrorCode(err) == steward.CodeInvalid {
		u.State, u.Reason = steward.UpdateSkipped, "incompatible: "+steward.ErrorMessage(err)
	}
	return u, true
}

// pollConfigs moves the devices of a configuration deployment on from what
// their twins say: applied is succeeded, failed (the device reported
// errors) failed, superseded (another version replaced it) skipped.
func (e *Engine) pollConfigs(ctx context.Context, d steward.Deployment, now time.Time) error {
	rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: -1,
		States: []steward.UpdateState{steward.UpdateNotified}, Limit: 5000})
	if err != nil || len(rows) == 0 {
		return err
	}
	var ups []steward.DeploymentDeviceUpdate
	for _, r := range rows {
		version := r.ToVersion
		if version == "" {
			version = d.Target.Version
		}
		state, detail, err := e.cfg.Configs.ConfigStatus(ctx, d.TenantID, r.DeviceID, version)
		if err != nil {
			e.log.Warn("configuration status", "deployment", d.ID, "device", r.DeviceID, "err", err)
			continue
		}
		u := steward.DeploymentDeviceUpdate{TenantID: d.TenantID, DeploymentID: d.ID, DeviceID: r.DeviceID, Attempt: r.Attempt,
			From: []steward.UpdateState{steward.UpdateNotified}, At: now}
		switch state {
		case steward.ConfigApplied:
			u.State, u.Version = steward.UpdateSucceeded, version
		case steward.ConfigFailed:
			u.State, u.Reason = steward.UpdateFailed, "the device reported errors: "+detail
		case steward.ConfigSuperseded:
			u.State, u.Reason = steward.UpdateSkipped, "superseded by another configuration version"
		default:
			continue
		}
		ups = append(ups, u)
	}
	_, err = e.cfg.Store.UpdateDeploymentDevices(ctx, ups)
	return err
}

// batteryLow reports whether the device's latest battery sample is below
// min; a device that never reported one is not held back.
func (e *Engine) batteryLow(ctx context.Context, tenantID, deviceID string, minLevel float64) (bool, float64, error) {
	ss, err := e.cfg.Store.LatestSamples(ctx, tenantID, deviceID)
	if err != nil {
		return false, 0, err
	}
	for _, s := range ss {
		if s.Metric == "battery" {
			return s.Value < minLevel, s.Value, nil
		}
	}
	return false, 0, nil
}

// send publishes a job to a device's update/job topic, retained, so that
// a device offline now gets it when it subscribes. A failed send is
// logged: the device's deadline covers it.
func (e *Engine) send(ctx context.Context, d steward.Deployment, r steward.DeploymentDevice, action string, w *steward.InstallWindow, now time.Time) {
	if e.cfg.Bus == nil {
		return
	}
	job := steward.UpdateJob{DeploymentID: d.ID, Attempt: r.Attempt, Action: action, Kind: d.Target.Kind,
		Target: steward.UpdateJobTarget{Name: d.Target.Name, Version: d.Target.Version, SHA256: d.Target.SHA256,
			Length: d.Target.Length, TUFPath: d.Target.TUFPath},
		InstallWindow: w, Deadline: r.Deadline, Emergency: d.Emergency && d.ApprovedBy != "", SentAt: now}
	if r.ToVersion != "" {
		job.Target.Version = r.ToVersion
	}
	b, _ := json.Marshal(job)
	err := e.cfg.Bus.Send(ctx, steward.OutboundMessage{TenantID: d.TenantID, DeviceID: r.DeviceID,
		Channel: steward.ChannelUpdateJob, Payload: b, QoS: 1, Retain: true})
	if err != nil {
		e.log.Warn("send update job failed", "deployment", d.ID, "device", r.DeviceID, "err", err)
	}
}

// Progress is a deployment's devices counted by phase and state.
type Progress struct {
	Total  int                         `json:"total"`
	States map[steward.UpdateState]int `json:"states"`
	Phases []PhaseProgress             `json:"phases"`
}

// PhaseProgress counts one phase's devices.
type PhaseProgress struct {
	Index  int                         `json:"index"`
	Name   string                      `json:"name"`
	Total  int                         `json:"total"`
	States map[steward.UpdateState]int `json:"states"`
}

// Progress counts a deployment's devices.
func (e *Engine) Progress(ctx context.Context, d steward.Deployment) (Progress, error) {
	cs, err := e.cfg.Store.CountDeploymentDevices(ctx, d.TenantID, d.ID)
	if err != nil {
		return Progress{}, err
	}
	pr := Progress{States: map[steward.UpdateState]int{}, Phases: make([]PhaseProgress, len(d.Phases))}
	for i, p := range d.Phases {
		pr.Phases[i] = PhaseProgress{Index: i, Name: p.Name, States: map[steward.UpdateState]int{}}
	}
	for _, c := range cs {
		pr.Total += c.N
		pr.States[c.State] += c.N
		if c.Phase >= 0 && c.Phase < len(pr.Phases) {
			pr.Phases[c.Phase].Total += c.N
			pr.Phases[c.Phase].States[c.State] += c.N
		}
	}
	return pr, nil
}
