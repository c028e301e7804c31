package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sync"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/abslots"
)

// The job and status messages are the root package's (steward.UpdateJob,
// steward.UpdateStatus): the server and the agent share one definition of
// the protocol (docs/protocol.md, "Deployments").

// UpdateTarget is what a job installs.
type UpdateTarget = steward.UpdateJobTarget

// ErrNotTrusted marks a download that failed verification (signatures,
// hashes, length, freshness): it is never installed, and retrying the same
// job cannot help.
var ErrNotTrusted = errors.New("update not trusted")

// Fetcher downloads an update target and verifies it before anything is
// installed; the TUF client is the real one. It returns the path of the
// verified file. Errors that wrap ErrNotTrusted are final; others
// (network, disk) are transient. progress, when not nil, is told the bytes
// done and the total.
type Fetcher interface {
	Fetch(ctx context.Context, t UpdateTarget, progress func(done, total int64)) (string, error)
}

// Installer installs a verified update A/B: *abslots.Slots is the default;
// a real device puts its bootloader's slots behind the same steps.
type Installer interface {
	ActiveVersion() string
	Stage(payload io.Reader, name, version, deploymentID string) error
	Switch() (abslots.Trial, error)
	Boot() (*abslots.Trial, *abslots.Outcome, error)
	Commit() (abslots.Outcome, error)
	Rollback(reason string) (abslots.Outcome, error)
	Pending() *abslots.Trial
}

// updateRecord is the job in hand, kept in the state directory so that a
// restart (the one an install asks for, or a crash) knows where it was.
type updateRecord struct {
	Job             steward.UpdateJob   `json:"job"`
	State           steward.UpdateState `json:"state"`
	Reason          string              `json:"reason,omitempty"`
	PreviousVersion string              `json:"previous_version,omitempty"`
	File            string              `json:"file,omitempty"` // the verified download
}

const updateFile = "update.json"

// updater runs update jobs one at a time. Jobs arrive from the inbox loop;
// a newer job (or a cancel) stops the one in hand unless it is installing.
type updater struct {
	a    *Agent
	jobs chan []byte

	mu  sync.Mutex
	rec *updateRecord
}

func newUpdater(a *Agent) *updater {
	return &updater{a: a, jobs: make(chan []byte, 1)}
}

// offer hands a job payload to the updater, replacing one not yet taken:
// the retained job is the current one, older ones are moot.
func (u *updater) offer(payload []byte) {
	for {
		select {
		case u.jobs <- payload:
			return
		default:
		}
		select {
		case <-u.jobs:
		default:
		}
	}
}

// Preparer is a Fetcher that sets itself up once the device is enrolled
// (the TUF client takes its tenant's trusted root then), so that the
// first update does not wait for it.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// run finishes a trial left by the last start, then takes jobs.
func (u *updater) run(ctx context.Context) {
	u.rec = u.load()
	if p, ok := u.a.cfg.Fetcher.(Preparer); ok {
		go u.prepare(ctx, p)
	}
	u.boot(ctx)
	var cancel context.CancelFunc = func() {}
	done := make(chan struct{})
	close(done)
	defer func() { cancel(); <-done }()
	for {
		select {
		case <-ctx.Done():
			return
		case payload := <-u.jobs:
			job, err := parseJob(payload)
			if err != nil {
				u.a.log.Warn("update job refused", "err", err)
				if job.DeploymentID != "" {
					u.report(ctx, steward.UpdateStatus{DeploymentID: job.DeploymentID, Attempt: job.Attempt, State: steward.UpdateFailed, Reason: err.Error()})
				}
				continue
			}
			if job.DeploymentID == "" { // an empty retained message: nothing to do
				continue
			}
			if cur := u.current(); cur != nil && cur.Job.DeploymentID == job.DeploymentID && cur.Job.Attempt == job.Attempt && job.Action != steward.JobCancel {
				// A reminder: say where we are, never start over.
				u.report(ctx, u.statusOf(cur))
				if cur.State == steward.UpdateDownloaded && !u.busy(done) {
					cancel, done = u.start(ctx, cur.Job, cur)
				}
				continue
			}
			if u.installing() {
				// Past the point of no return: the install finishes, and the
				// restart after it picks up the retained job again.
				u.a.log.Info("update job waits for the install in progress", "deployment", job.DeploymentID)
				continue
			}
			cancel()
			<-done
			if job.Action == steward.JobCancel {
				u.a.log.Info("update cancelled", "deployment", job.DeploymentID)
				u.save(nil)
				cancel, done = func() {}, closed()
				continue
			}
			cancel, done = u.start(ctx, job, nil)
		}
	}
}

// prepare runs the fetcher's setup, retrying with backoff until it
// succeeds or ctx ends; a job that comes first sets it up itself.
func (u *updater) prepare(ctx context.Context, p Preparer) {
	b := u.a.newBackoff()
	for {
		err := p.Prepare(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		u.a.log.Warn("update fetcher not ready; retrying", "err", err)
		t := time.NewTimer(b.next())
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func closed() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (u *updater) busy(done chan struct{}) bool {
	select {
	case <-done:
		return false
	default:
		return true
	}
}

// start runs job in its own goroutine; rec resumes a downloaded job.
func (u *updater) start(ctx context.Context, job steward.UpdateJob, rec *updateRecord) (context.CancelFunc, chan struct{}) {
	jctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		u.runJob(jctx, job, rec)
	}()
	return cancel, done
}

// parseJob decodes a job; an empty payload is the cleared retained job.
func parseJob(payload []byte) (steward.UpdateJob, error) {
	var job steward.UpdateJob
	if len(payload) == 0 {
		return job, nil
	}
	if err := json.Unmarshal(payload, &job); err != nil {
		var idOnly struct {
			DeploymentID string `json:"deployment_id"`
			Attempt      int    `json:"attempt"`
		}
		_ = json.Unmarshal(payload, &idOnly)
		job.DeploymentID, job.Attempt = idOnly.DeploymentID, idOnly.Attempt
		return job, fmt.Errorf("update job does not parse: %w", err)
	}
	switch {
	case job.DeploymentID == "":
		return job, errors.New("update job has no deployment_id")
	case job.Action != steward.JobInstall && job.Action != steward.JobRollback && job.Action != steward.JobCancel:
		return job, fmt.Errorf("update job action %q is not install, rollback or cancel", job.Action)
	case job.Action != steward.JobCancel && job.Kind != steward.KindArtifact && job.Kind != steward.KindConfig:
		return job, fmt.Errorf("update job kind %q is not artifact or config", job.Kind)
	case job.Action != steward.JobCancel && job.Target.Version == "":
		return job, errors.New("update job target has no version")
	}
	return job, nil
}

// runJob carries a job from download to the switch into the new slot.
func (u *updater) runJob(ctx context.Context, job steward.UpdateJob, rec *updateRecord) {
	a := u.a
	if job.Kind == steward.KindConfig {
		// Configuration reaches the device through its twin (twin/desired);
		// the server follows the twin's reported version, not this channel.
		u.finish(ctx, job, steward.UpdateSkipped, "incompatible: configuration is applied through the device twin", false)
		return
	}
	if a.cfg.Installer == nil || a.cfg.Fetcher == nil {
		u.finish(ctx, job, steward.UpdateSkipped, "incompatible: this device has no installer", false)
		return
	}
	installed := a.cfg.Installer.ActiveVersion()
	if installed == job.Target.Version {
		u.finish(ctx, job, steward.UpdateSkipped, "already_installed", false)
		return
	}
	if p := a.cfg.Installer.Pending(); p != nil {
		u.finish(ctx, job, steward.UpdateFailed, fmt.Sprintf("version %s is still on trial", p.Version), true)
		return
	}
	if rec == nil || rec.File == "" {
		rec = &updateRecord{Job: job, State: steward.UpdateDownloading, PreviousVersion: installed}
		u.save(rec)
		u.report(ctx, u.statusOf(rec))
		var last time.Time
		file, err := a.cfg.Fetcher.Fetch(ctx, job.Target, func(done, total int64) {
			if total <= 0 || time.Since(last) < 2*time.Second {
				return
			}
			last = time.Now()
			p := float64(done) / float64(total)
			st := u.statusOf(rec)
			st.Progress = p
			u.report(ctx, st)
		})
		if ctx.Err() != nil {
			return // a newer job or a cancel took over
		}
		if err != nil {
			a.log.Warn("update download failed", "deployment", job.DeploymentID, "err", err)
			u.finish(ctx, job, steward.UpdateFailed, "download: "+err.Error(), !errors.Is(err, ErrNotTrusted))
			return
		}
		rec.File, rec.State = file, steward.UpdateDownloaded
		u.save(rec)
		u.report(ctx, u.statusOf(rec))
	}
	if w := job.InstallWindow; w != nil {
		now := a.cfg.Clock.Now()
		if !w.To.IsZero() && !now.Before(w.To) {
			a.log.Info("install window closed; waiting for the next job", "deployment", job.DeploymentID)
			return
		}
		if now.Before(w.From) {
			t := time.NewTimer(w.From.Sub(now))
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
	if !job.Deadline.IsZero() && !a.cfg.Clock.Now().Before(job.Deadline) {
		a.log.Info("update deadline passed before installing", "deployment", job.DeploymentID)
		return
	}
	u.install(ctx, rec)
}

// install stages the verified file, reports the restart, switches slots
// and restarts. From here on a new job waits.
func (u *updater) install(ctx context.Context, rec *updateRecord) {
	a := u.a
	rec.State = steward.UpdateInstalling
	u.save(rec)
	u.report(ctx, u.statusOf(rec))
	f, err := os.Open(rec.File)
	if err != nil {
		u.finish(ctx, rec.Job, steward.UpdateFailed, "install: "+err.Error(), true)
		return
	}
	name := path.Base(rec.Job.Target.TUFPath)
	if name == "." || name == "/" || name == "" {
		name = "payload"
	}
	err = a.cfg.Installer.Stage(f, name, rec.Job.Target.Version, rec.Job.DeploymentID)
	f.Close()
	if err != nil {
		u.finish(ctx, rec.Job, steward.UpdateFailed, "install: "+err.Error(), false)
		return
	}
	_ = os.Remove(rec.File)
	rec.File = ""
	rec.State = steward.UpdateRebooting
	u.save(rec)
	u.report(ctx, u.statusOf(rec))
	if _, err := a.cfg.Installer.Switch(); err != nil {
		u.finish(ctx, rec.Job, steward.UpdateFailed, "switch: "+err.Error(), false)
		return
	}
	if a.cfg.Restart == nil {
		// The new slot is live without a restart: check it now.
		u.boot(ctx)
		return
	}
	if err := a.cfg.Restart(); err != nil {
		a.log.Error("restart after install failed; the trial is checked at the next start", "err", err)
	}
}

// boot finishes a trial at start: health check, then commit or roll back.
func (u *updater) boot(ctx context.Context) {
	a := u.a
	if a.cfg.Installer == nil {
		return
	}
	trial, outcome, err := a.cfg.Installer.Boot()
	if err != nil {
		a.log.Error("read the update state at start", "err", err)
		return
	}
	rec := u.current()
	if outcome != nil {
		u.ended(ctx, rec, *outcome)
		u.restart()
		return
	}
	if trial == nil {
		return
	}
	if rec == nil || rec.Job.DeploymentID != trial.DeploymentID {
		rec = &updateRecord{Job: steward.UpdateJob{DeploymentID: trial.DeploymentID, Target: UpdateTarget{Version: trial.Version}}, PreviousVersion: trial.FromVersion}
	}
	rec.State = steward.UpdateVerifying
	u.save(rec)
	// Reporting "verifying" proves the new version reaches the server.
	if err := u.reportErr(ctx, u.statusOf(rec)); err != nil {
		// Not confirmed: the next start tries again, and Boot rolls back
		// once the trial has used up its starts.
		a.log.Warn("trial version cannot reach the server", "err", err)
		return
	}
	if a.cfg.HealthCheck != nil {
		hctx, cancel := context.WithTimeout(ctx, a.cfg.HealthCheckTimeout)
		err := a.cfg.HealthCheck(hctx)
		cancel()
		if err != nil {
			o, rerr := a.cfg.Installer.Rollback("health check: " + err.Error())
			if rerr != nil {
				a.log.Error("roll back after a failed health check", "err", rerr)
				return
			}
			u.ended(ctx, rec, o)
			u.restart()
			return
		}
	}
	o, err := a.cfg.Installer.Commit()
	if err != nil {
		a.log.Error("commit the new version", "err", err)
		return
	}
	u.ended(ctx, rec, o)
}

// ended reports how a trial ended and forgets the job.
func (u *updater) ended(ctx context.Context, rec *updateRecord, o abslots.Outcome) {
	if rec == nil {
		rec = &updateRecord{Job: steward.UpdateJob{DeploymentID: o.DeploymentID}}
	}
	st := u.statusOf(rec)
	st.State, st.Reason = steward.UpdateRolledBack, o.Reason
	if o.Committed {
		st.State, st.Reason = steward.UpdateSucceeded, ""
	}
	st.Version = u.a.cfg.Installer.ActiveVersion()
	u.a.log.Info("update ended", "deployment", o.DeploymentID, "state", st.State, "version", st.Version, "reason", o.Reason)
	if st.DeploymentID != "" {
		u.report(ctx, st)
	}
	u.save(nil)
}

func (u *updater) restart() {
	if u.a.cfg.Restart != nil {
		if err := u.a.cfg.Restart(); err != nil {
			u.a.log.Error("restart after roll back failed", "err", err)
		}
	}
}

// finish reports a final state of a job that never reached an install.
func (u *updater) finish(ctx context.Context, job steward.UpdateJob, state steward.UpdateState, reason string, transient bool) {
	rec := &updateRecord{Job: job, State: state, Reason: reason}
	st := u.statusOf(rec)
	st.Transient = transient
	u.report(ctx, st)
	u.save(nil)
}

func (u *updater) statusOf(rec *updateRecord) steward.UpdateStatus {
	now := u.a.cfg.Clock.Now().UTC()
	st := steward.UpdateStatus{DeploymentID: rec.Job.DeploymentID, Attempt: rec.Job.Attempt, State: rec.State,
		Reason: rec.Reason, PreviousVersion: rec.PreviousVersion, At: &now}
	if rec.State == steward.UpdateSucceeded || rec.State == steward.UpdateRolledBack {
		st.Version = u.a.cfg.Installer.ActiveVersion()
	}
	return st
}

func (u *updater) report(ctx context.Context, st steward.UpdateStatus) {
	if err := u.reportErr(ctx, st); err != nil && ctx.Err() == nil {
		u.a.log.Warn("update status not confirmed by the broker", "deployment", st.DeploymentID, "state", st.State, "err", err)
	}
}

func (u *updater) reportErr(ctx context.Context, st steward.UpdateStatus) error {
	body, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode update status: %w", err)
	}
	return u.a.publishEventually(ctx, steward.ChannelUpdateStatus, body, answerTries)
}

func (u *updater) current() *updateRecord {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.rec == nil {
		return nil
	}
	r := *u.rec
	return &r
}

func (u *updater) installing() bool {
	r := u.current()
	return r != nil && (r.State == steward.UpdateInstalling || r.State == steward.UpdateRebooting || r.State == steward.UpdateVerifying)
}

func (u *updater) load() *updateRecord {
	b, err := os.ReadFile(u.a.state.path(updateFile))
	if err != nil {
		return nil
	}
	var r updateRecord
	if err := json.Unmarshal(b, &r); err != nil {
		u.a.log.Warn("update state is corrupt; ignored", "err", err)
		return nil
	}
	return &r
}

// save keeps the job in hand (nil: none) in memory and on disk.
func (u *updater) save(rec *updateRecord) {
	u.mu.Lock()
	if rec == nil {
		u.rec = nil
	} else {
		r := *rec
		u.rec = &r
	}
	u.mu.Unlock()
	if rec == nil {
		if err := os.Remove(u.a.state.path(updateFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			u.a.log.Warn("clear update state", "err", err)
		}
		return
	}
	b, err := json.Marshal(rec)
	if err == nil {
		err = u.a.state.write(updateFile, b)
	}
	if err != nil {
		u.a.log.Warn("save update state", "err", err)
	}
}
