package steward

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// DeploymentState is where a deployment is in its life.
type DeploymentState string

// The deployment states. A deployment is created as a draft (when asked)
// or goes straight to awaiting approval, scheduled or running; completed,
// aborted and rolled back are final.
const (
	DeploymentDraft            DeploymentState = "draft"
	DeploymentAwaitingApproval DeploymentState = "awaiting_approval"
	DeploymentScheduled        DeploymentState = "scheduled"
	DeploymentRunning          DeploymentState = "running"
	DeploymentPaused           DeploymentState = "paused"
	DeploymentCompleted        DeploymentState = "completed"
	DeploymentAborted          DeploymentState = "aborted"
	DeploymentRolledBack       DeploymentState = "rolled_back"
)

// DeploymentStates lists every deployment state.
var DeploymentStates = []DeploymentState{DeploymentDraft, DeploymentAwaitingApproval, DeploymentScheduled,
	DeploymentRunning, DeploymentPaused, DeploymentCompleted, DeploymentAborted, DeploymentRolledBack}

// Valid reports whether s is a known deployment state.
func (s DeploymentState) Valid() bool {
	for _, v := range DeploymentStates {
		if s == v {
			return true
		}
	}
	return false
}

// Final reports whether s is an end state.
func (s DeploymentState) Final() bool {
	return s == DeploymentCompleted || s == DeploymentAborted || s == DeploymentRolledBack
}

// UpdateState is where one device is in a deployment: the server's own
// states (pending, notified, timed out, skipped) and the steps the device
// reports on its update/status channel (docs/protocol.md).
type UpdateState string

// The device states of a deployment, in the order a device goes through
// them; succeeded, failed, rolled back, timed out and skipped are final.
const (
	UpdatePending     UpdateState = "pending"
	UpdateNotified    UpdateState = "notified"
	UpdateDownloading UpdateState = "downloading"
	UpdateDownloaded  UpdateState = "downloaded"
	UpdateInstalling  UpdateState = "installing"
	UpdateRebooting   UpdateState = "rebooting"
	UpdateVerifying   UpdateState = "verifying"
	UpdateSucceeded   UpdateState = "succeeded"
	UpdateFailed      UpdateState = "failed"
	UpdateRolledBack  UpdateState = "rolled_back"
	UpdateTimedOut    UpdateState = "timed_out"
	UpdateSkipped     UpdateState = "skipped"
)

// UpdateStates lists every device state of a deployment, in order.
var UpdateStates = []UpdateState{UpdatePending, UpdateNotified, UpdateDownloading, UpdateDownloaded,
	UpdateInstalling, UpdateRebooting, UpdateVerifying, UpdateSucceeded, UpdateFailed, UpdateRolledBack,
	UpdateTimedOut, UpdateSkipped}

// Rank returns the place of s in the order a device goes through the
// states (every final state ranks after every other), or -1 when unknown.
func (s UpdateState) Rank() int {
	for i, v := range UpdateStates {
		if s == v {
			return min(i, 7)
		}
	}
	return -1
}

// Valid reports whether s is a known device state.
func (s UpdateState) Valid() bool { return s.Rank() >= 0 }

// Final reports whether s ends the device's part in the deployment.
func (s UpdateState) Final() bool { return s.Rank() == 7 }

// Active reports whether the device is being updated: told, and not
// finished.
func (s UpdateState) Active() bool { r := s.Rank(); return r >= 1 && r < 7 }

// DeviceReported reports whether a device may report s on update/status.
func (s UpdateState) DeviceReported() bool {
	switch s {
	case UpdateDownloading, UpdateDownloaded, UpdateInstalling, UpdateRebooting, UpdateVerifying,
		UpdateSucceeded, UpdateFailed, UpdateRolledBack, UpdateSkipped:
		return true
	}
	return false
}

// DeploymentKind says what a deployment carries.
type DeploymentKind string

// The kinds of deployment.
const (
	KindArtifact DeploymentKind = "artifact" // a software artifact, downloaded and verified with TUF
	KindConfig   DeploymentKind = "config"   // a configuration version of the device twin
)

// FailurePolicy says what a deployment does when a phase's failures cross
// its failure threshold.
type FailurePolicy string

// The failure policies.
const (
	OnFailurePause    FailurePolicy = "pause"
	OnFailureAbort    FailurePolicy = "abort"
	OnFailureRollback FailurePolicy = "rollback" // abort, then roll the changed devices back
)

// DeploymentTarget is what a deployment installs. For an artifact, the
// artifact's ID, name, version, SHA-256, length and TUF target path; for a
// configuration, the configuration's name and version.
type DeploymentTarget struct {
	Kind       DeploymentKind `json:"kind"`
	ArtifactID string         `json:"artifact_id,omitempty"`
	Name       string         `json:"name"`
	Version    string         `json:"version"`
	SHA256     string         `json:"sha256,omitempty"`
	Length     int64          `json:"length,omitempty"`
	TUFPath    string         `json:"tuf_path,omitempty"`
}

// Phase is one stage of a deployment: a canary of Count devices or
// Percent of the target, a wave up to Percent of the target in total, or
// the devices matching Selector. A phase advances when its devices are
// finished, at least SuccessThreshold of them succeeded, its soak time
// passed and the health gate (when there is one) passed.
type Phase struct {
	Name string `json:"name"`
	// Count, Percent and Selector choose the phase's devices; at most one
	// is set. Percent is cumulative: a wave of 50 after a canary of 10
	// takes the target up to half of it. The last phase takes the rest.
	Count    int     `json:"count,omitempty"`
	Percent  float64 `json:"percent,omitempty"`
	Selector string  `json:"selector,omitempty"` // see MatchDevice
	// SuccessThreshold is the share (0 to 1) of the phase's finished
	// devices (skipped ones left out) that must succeed to advance.
	SuccessThreshold float64 `json:"success_threshold"`
	// FailureThreshold is the share (0 to 1) of failed devices (failed,
	// timed out, rolled back) among the finished ones of the deployment
	// so far past which its failure policy applies, once at least
	// MinFinished devices of the deployment finished.
	FailureThreshold float64 `json:"failure_threshold"`
	MinFinished      int     `json:"min_finished"`
	// Soak is how long to wait after the phase finished before the next.
	Soak Duration `json:"soak,omitempty"`
}

// HealthGate compares, over a phase's soak time, the devices it updated
// with those not updated yet; the deployment pauses, with the evidence,
// when the updated ones are worse by more than a check allows.
type HealthGate struct {
	Checks []GateCheck `json:"checks"`
}

// Gate signals.
const (
	SignalReboots = "reboots" // reboot events per device
	SignalCrashes = "crashes" // crash events per device
	SignalOffline = "offline" // share of devices offline at the gate
	SignalMetric  = "metric"  // mean of a metric, per device, then across devices
)

// GateCheck is one signal of a health gate and how much worse than the
// devices not updated the updated ones may be: updated − not updated at
// most MaxIncrease.
type GateCheck struct {
	Signal      string  `json:"signal"`
	Metric      string  `json:"metric,omitempty"`
	MaxIncrease float64 `json:"max_increase"`
}

// GateEvidence is what a health gate saw.
type GateEvidence struct {
	Phase           int          `json:"phase"`
	From            time.Time    `json:"from"`
	To              time.Time    `json:"to"`
	UpdatedDevices  int          `json:"updated_devices"`
	BaselineDevices int          `json:"baseline_devices"`
	Signals         []GateSignal `json:"signals"`
	Passed          bool         `json:"passed"`
}

// GateSignal is one check's figures: the updated cohort, the baseline,
// their difference and what the check allows.
type GateSignal struct {
	Signal      string  `json:"signal"`
	Metric      string  `json:"metric,omitempty"`
	Updated     float64 `json:"updated"`
	Baseline    float64 `json:"baseline"`
	Increase    float64 `json:"increase"`
	MaxIncrease float64 `json:"max_increase"`
	Worse       bool    `json:"worse"`
}

// MaintenanceWindow is when the devices it matches may install: from each
// time its cron expression names, in its time zone, for Duration.
type MaintenanceWindow struct {
	Name string `json:"name,omitempty"`
	// Match selects the devices (see MatchDevice); empty matches all.
	Match    string   `json:"match,omitempty"`
	Cron     string   `json:"cron"`
	Duration Duration `json:"duration"`
	TimeZone string   `json:"time_zone"`
}

// DeploymentSpec is what an operator asks of a deployment.
type DeploymentSpec struct {
	Target DeploymentTarget `json:"target"`
	// Query is the fleet query of the target devices, evaluated at start;
	// with KeepOpen, devices that match later join the last phase.
	Query    string  `json:"query"`
	KeepOpen bool    `json:"keep_open,omitempty"`
	Phases   []Phase `json:"phases"`
	// OnFailure is the failure policy (pause by default).
	OnFailure FailurePolicy `json:"on_failure,omitempty"`
	// Concurrency caps the devices in progress at once; Rate the devices
	// started per minute (0: no limit).
	Concurrency int `json:"concurrency"`
	Rate        int `json:"rate,omitempty"`
	// DeviceTimeout is how long a device has from being told to a final
	// state; Retries how often a transient failure is tried again, after
	// RetryBackoff, doubled each time.
	DeviceTimeout Duration            `json:"device_timeout"`
	Retries       int                 `json:"retries,omitempty"`
	RetryBackoff  Duration            `json:"retry_backoff,omitempty"`
	Gate          *HealthGate         `json:"gate,omitempty"`
	Windows       []MaintenanceWindow `json:"windows,omitempty"`
	// MinBattery skips devices whose latest battery sample is below it (0
	// to 1; 0: no guard).
	MinBattery float64 `json:"min_battery,omitempty"`
	// Emergency asks to skip maintenance windows and the canary's soak;
	// it always needs an approval.
	Emergency bool `json:"emergency,omitempty"`
	// StartAt schedules the start (zero: at once).
	StartAt time.Time `json:"start_at,omitzero"`
}

// Deployment defaults.
const (
	DefaultDeviceTimeout = 2 * time.Hour
	DefaultConcurrency   = 100
	DefaultRetryBackoff  = time.Minute
	MaxDeploymentPhases  = 20
)

// Deployment is a rollout of one artifact or configuration version to a
// fleet, in phases.
type Deployment struct {
	ID          string `json:"id"`
	TenantID    string `json:"tenant_id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	DeploymentSpec
	State       DeploymentState `json:"state"`
	StateReason string          `json:"state_reason,omitempty"`
	// Evidence is the last health gate's, when it paused the deployment.
	Evidence *GateEvidence `json:"evidence,omitempty"`
	// Phase is the index of the current phase.
	Phase int `json:"phase"`
	// PhaseDoneAt is when the current phase's devices all finished (its
	// soak started); zero while they have not.
	PhaseDoneAt time.Time `json:"phase_done_at,omitzero"`
	// RollbackOf names the deployment a rollback undoes.
	RollbackOf string `json:"rollback_of,omitempty"`
	CreatedBy  string `json:"created_by"`
	ApprovedBy string `json:"approved_by,omitempty"`
	// ApprovalID is the approval request, when one was needed.
	ApprovalID string    `json:"approval_id,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// FailedBase and FinishedBase are the failed and finished devices an
	// operator saw when resuming a deployment the failure threshold
	// paused: the threshold counts from there.
	FailedBase   int `json:"failed_base,omitempty"`
	FinishedBase int `json:"finished_base,omitempty"`
	// Tokens and TokensAt are the rate limit's bucket: devices that may
	// still start, as of TokensAt.
	Tokens   float64   `json:"-"`
	TokensAt time.Time `json:"-"`
	// Version is bumped on each update; UpdateDeployment refuses a stale one.
	Version int64 `json:"version"`
}

// Validate checks a deployment's spec and identity, and fills the defaults
// of what was left out.
func (d *Deployment) Validate() error {
	switch {
	case d.ID == "" || d.TenantID == "":
		return Errorf(CodeInvalid, "a deployment needs an ID and a tenant")
	case d.Name == "" || len(d.Name) > 200:
		return Errorf(CodeInvalid, "deployment name: 1 to 200 characters")
	case d.State != "" && !d.State.Valid():
		return Errorf(CodeInvalid, "deployment state %q is unknown", d.State)
	case d.CreatedBy == "":
		return Errorf(CodeInvalid, "a deployment needs its creator")
	}
	return d.DeploymentSpec.Validate()
}

// Validate checks a spec and fills its defaults.
func (s *DeploymentSpec) Validate() error {
	t := &s.Target
	switch t.Kind {
	case KindArtifact:
		if t.SHA256 != "" && (len(t.SHA256) != 64 || strings.Trim(strings.ToLower(t.SHA256), "0123456789abcdef") != "") {
			return Errorf(CodeInvalid, "target sha256: want 64 hex digits")
		}
		if t.Length < 0 {
			return Errorf(CodeInvalid, "target length must not be negative")
		}
	case KindConfig:
	default:
		return Errorf(CodeInvalid, "target kind %q: want artifact or config", t.Kind)
	}
	if t.Name == "" || t.Version == "" {
		return Errorf(CodeInvalid, "a target needs a name and a version")
	}
	if len(s.Phases) == 0 {
		s.Phases = []Phase{{Name: "all", Percent: 100}}
	}
	if len(s.Phases) > MaxDeploymentPhases {
		return Errorf(CodeInvalid, "at most %d phases", MaxDeploymentPhases)
	}
	last := 0.0
	for i := range s.Phases {
		p := &s.Phases[i]
		if p.Name == "" {
			p.Name = fmt.Sprintf("phase-%d", i+1)
		}
		set := 0
		for _, b := range []bool{p.Count != 0, p.Percent != 0, p.Selector != ""} {
			if b {
				set++
			}
		}
		switch {
		case set > 1:
			return Errorf(CodeInvalid, "phase %q: set one of count, percent and selector", p.Name)
		case p.Count < 0:
			return Errorf(CodeInvalid, "phase %q: count must not be negative", p.Name)
		case p.Percent < 0 || p.Percent > 100 || math.IsNaN(p.Percent):
			return Errorf(CodeInvalid, "phase %q: percent must be within 0 to 100", p.Name)
		case p.Percent != 0 && p.Percent < last:
			return Errorf(CodeInvalid, "phase %q: percent is cumulative and must not go down (%g after %g)", p.Name, p.Percent, last)
		case p.SuccessThreshold < 0 || p.SuccessThreshold > 1 || math.IsNaN(p.SuccessThreshold):
			return Errorf(CodeInvalid, "phase %q: success_threshold must be within 0 to 1", p.Name)
		case p.FailureThreshold < 0 || p.FailureThreshold > 1 || math.IsNaN(p.FailureThreshold):
			return Errorf(CodeInvalid, "phase %q: failure_threshold must be within 0 to 1", p.Name)
		case p.MinFinished < 0:
			return Errorf(CodeInvalid, "phase %q: min_finished must not be negative", p.Name)
		case p.Soak < 0:
			return Errorf(CodeInvalid, "phase %q: soak must not be negative", p.Name)
		}
		if p.Selector != "" {
			if _, _, err := ParseMatch(p.Selector); err != nil {
				return Errorf(CodeInvalid, "phase %q: %s", p.Name, err.Error())
			}
		}
		if p.Percent != 0 {
			last = p.Percent
		}
		if p.SuccessThreshold == 0 {
			p.SuccessThreshold = 1
		}
		if p.FailureThreshold == 0 {
			p.FailureThreshold = 1
		}
		if s.Gate != nil && i < len(s.Phases)-1 && p.Soak <= 0 {
			return Errorf(CodeInvalid, "phase %q: a health gate compares over the soak time; give every phase but the last a soak", p.Name)
		}
	}
	switch s.OnFailure {
	case "":
		s.OnFailure = OnFailurePause
	case OnFailurePause, OnFailureAbort, OnFailureRollback:
	default:
		return Errorf(CodeInvalid, "on_failure %q: want pause, abort or rollback", s.OnFailure)
	}
	switch {
	case s.Concurrency < 0 || s.Rate < 0 || s.Retries < 0 || s.Retries > 20:
		return Errorf(CodeInvalid, "concurrency and rate must not be negative, retries within 0 to 20")
	case s.DeviceTimeout < 0 || s.RetryBackoff < 0:
		return Errorf(CodeInvalid, "device_timeout and retry_backoff must not be negative")
	case s.MinBattery < 0 || s.MinBattery > 1 || math.IsNaN(s.MinBattery):
		return Errorf(CodeInvalid, "min_battery must be within 0 to 1")
	}
	if s.Concurrency == 0 {
		s.Concurrency = DefaultConcurrency
	}
	if s.DeviceTimeout == 0 {
		s.DeviceTimeout = Duration(DefaultDeviceTimeout)
	}
	if s.RetryBackoff == 0 {
		s.RetryBackoff = Duration(DefaultRetryBackoff)
	}
	if s.Gate != nil {
		if len(s.Gate.Checks) == 0 {
			return Errorf(CodeInvalid, "a health gate needs at least one check")
		}
		for _, c := range s.Gate.Checks {
			switch c.Signal {
			case SignalReboots, SignalCrashes, SignalOffline:
			case SignalMetric:
				if c.Metric == "" {
					return Errorf(CodeInvalid, "a metric check needs its metric")
				}
			default:
				return Errorf(CodeInvalid, "gate signal %q: want reboots, crashes, offline or metric", c.Signal)
			}
			if c.MaxIncrease < 0 || math.IsNaN(c.MaxIncrease) {
				return Errorf(CodeInvalid, "gate %s: max_increase must not be negative", c.Signal)
			}
		}
	}
	for _, w := range s.Windows {
		if w.Cron == "" || w.Duration <= 0 || w.TimeZone == "" {
			return Errorf(CodeInvalid, "maintenance window %q needs a cron expression, a duration and a time zone", w.Name)
		}
		if w.Match != "" {
			if _, _, err := ParseMatch(w.Match); err != nil {
				return Errorf(CodeInvalid, "maintenance window %q: %s", w.Name, err.Error())
			}
		}
	}
	return nil
}

// ParseMatch splits a device selector "key=value", where key is site,
// model, group (the enrollment group ID), firmware or labels.NAME.
func ParseMatch(sel string) (key, value string, err error) {
	k, v, ok := strings.Cut(sel, "=")
	k, v = strings.TrimSpace(k), strings.TrimSpace(v)
	if !ok || v == "" {
		return "", "", Errorf(CodeInvalid, "selector %q: want key=value", sel)
	}
	switch {
	case k == "site", k == "model", k == "group", k == "firmware":
	case strings.HasPrefix(k, "labels.") && ValidLabelKey(strings.TrimPrefix(k, "labels.")):
	default:
		return "", "", Errorf(CodeInvalid, "selector %q: key must be site, model, group, firmware or labels.NAME", sel)
	}
	return k, v, nil
}

// MatchDevice reports whether d matches the selector sel (see ParseMatch);
// an empty or malformed selector matches nothing but "".
func MatchDevice(sel string, d Device) bool {
	if sel == "" {
		return true
	}
	k, v, err := ParseMatch(sel)
	if err != nil {
		return false
	}
	switch k {
	case "site":
		return d.Location.Site == v
	case "model":
		return d.Model == v
	case "group":
		return d.EnrollmentGroupID == v
	case "firmware":
		return d.Firmware == v
	}
	return d.Labels[strings.TrimPrefix(k, "labels.")] == v
}

// DeploymentDevice is one device's part in a deployment.
type DeploymentDevice struct {
	TenantID     string `json:"tenant_id"`
	DeploymentID string `json:"deployment_id"`
	DeviceID     string `json:"device_id"`
	Phase        int    `json:"phase"`
	// Window is the index of the maintenance window that applies to the
	// device, -1 for none.
	Window    int         `json:"window"`
	State     UpdateState `json:"state"`
	Reason    string      `json:"reason,omitempty"`
	Transient bool        `json:"transient,omitempty"`
	Attempt   int         `json:"attempt"`
	Progress  float64     `json:"progress,omitempty"`
	// FromVersion is what the device had before; ToVersion what it is to get.
	FromVersion string `json:"from_version,omitempty"`
	ToVersion   string `json:"to_version,omitempty"`
	// NotBefore holds a pending device back (retry backoff, maintenance
	// window); Deadline is when an active device times out.
	NotBefore time.Time `json:"not_before,omitzero"`
	Deadline  time.Time `json:"deadline,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// DeploymentDeviceUpdate moves one device of a deployment to State, when
// its attempt is Attempt (0: any) and its state is one of From (empty: any
// state that ranks before State and is not final).
type DeploymentDeviceUpdate struct {
	TenantID     string
	DeploymentID string
	DeviceID     string
	Attempt      int
	From         []UpdateState
	State        UpdateState
	Reason       string
	Transient    bool
	Progress     float64
	// Version is the version the device reports now; PreviousVersion the
	// one it had (kept as FromVersion when not empty).
	Version         string
	PreviousVersion string
	// NextAttempt counts a new attempt (a device being told).
	NextAttempt bool
	NotBefore   time.Time
	Deadline    time.Time
	At          time.Time
}

// DeploymentDeviceEvent is one step of a device's history in a deployment.
type DeploymentDeviceEvent struct {
	DeploymentID string      `json:"deployment_id"`
	DeviceID     string      `json:"device_id"`
	Attempt      int         `json:"attempt"`
	State        UpdateState `json:"state"`
	Reason       string      `json:"reason,omitempty"`
	Progress     float64     `json:"progress,omitempty"`
	At           time.Time   `json:"at"`
}

// DeploymentCount counts the devices of one phase in one state.
type DeploymentCount struct {
	Phase int         `json:"phase"`
	State UpdateState `json:"state"`
	N     int         `json:"n"`
}

// DeploymentFilter narrows a list of deployments.
type DeploymentFilter struct {
	State DeploymentState
	Limit int // 0: 100; at most 1000
}

// DeploymentDeviceFilter narrows a list of a deployment's devices.
type DeploymentDeviceFilter struct {
	Phase  int // -1: every phase
	States []UpdateState
	// Due, when set, keeps only devices whose NotBefore is not after it;
	// Expired, when set, only those whose Deadline is before it.
	Due     time.Time
	Expired time.Time
	// TransientOnly keeps only devices whose failure was transient.
	TransientOnly bool
	After         string // keyset pagination by device ID
	Limit         int    // 0: 100; at most 10000
}

// DeploymentStore keeps deployments and their devices.
type DeploymentStore interface {
	// CreateDeployment stores a new deployment (CodeInvalid when it does
	// not validate, CodeNotFound for an unknown tenant).
	CreateDeployment(ctx context.Context, d Deployment) error
	GetDeployment(ctx context.Context, tenantID, id string) (Deployment, error)
	// ListDeployments returns the tenant's deployments, newest first.
	ListDeployments(ctx context.Context, tenantID string, f DeploymentFilter) ([]Deployment, error)
	// UpdateDeployment writes d's state and progress fields when d.Version
	// is the stored version, and returns it as stored (CodeConflict when
	// someone else updated it first).
	UpdateDeployment(ctx context.Context, d Deployment) (Deployment, error)
	// ClaimDeployments leases, to owner until now+lease, up to limit
	// deployments of all tenants that are scheduled or running and not
	// leased to another owner (or whose lease ran out), and returns them.
	// Two nodes claiming at once never get the same deployment, so that
	// only one of them starts a deployment's devices.
	ClaimDeployments(ctx context.Context, owner string, now time.Time, lease time.Duration, limit int) ([]Deployment, error)
	// AddDeploymentDevices adds devices to deployments, in batches; a
	// device already in its deployment is left as it is. It returns how
	// many it added.
	AddDeploymentDevices(ctx context.Context, rows []DeploymentDevice) (int, error)
	GetDeploymentDevice(ctx context.Context, tenantID, deploymentID, deviceID string) (DeploymentDevice, error)
	// ListDeviceDeployments returns one device's rows in the tenant's
	// deployments whose state is one of states (every state when none is
	// given), by deployment ID: one query however many deployments the
	// tenant has (CodeInvalid for an unknown state).
	ListDeviceDeployments(ctx context.Context, tenantID, deviceID string, states []DeploymentState) ([]DeploymentDevice, error)
	// ListDeploymentDevices returns a deployment's devices matching f,
	// ordered by device ID.
	ListDeploymentDevices(ctx context.Context, tenantID, deploymentID string, f DeploymentDeviceFilter) ([]DeploymentDevice, error)
	// CountDeploymentDevices counts a deployment's devices by phase and state.
	CountDeploymentDevices(ctx context.Context, tenantID, deploymentID string) ([]DeploymentCount, error)
	// UpdateDeploymentDevices applies updates in one transaction, each
	// only when its conditions hold (an update that does not apply is not
	// an error), records each applied one in the device's history, and
	// reports which applied.
	UpdateDeploymentDevices(ctx context.Context, updates []DeploymentDeviceUpdate) ([]bool, error)
	// ListDeploymentDeviceEvents returns a device's history in a
	// deployment, oldest first.
	ListDeploymentDeviceEvents(ctx context.Context, tenantID, deploymentID, deviceID string) ([]DeploymentDeviceEvent, error)
}

// ArtifactGrants lets a device download an artifact; the artifact store
// implements it. The deployment engine grants the artifact to each device
// it tells to install it.
type ArtifactGrants interface {
	GrantArtifact(ctx context.Context, tenantID, deviceID, artifactID string) error
}

// Actions of a deployment job.
const (
	JobInstall  = "install"
	JobRollback = "rollback"
	JobCancel   = "cancel"
)

// UpdateJob is the message on a device's update/job channel.
type UpdateJob struct {
	DeploymentID  string          `json:"deployment_id"`
	Attempt       int             `json:"attempt"`
	Action        string          `json:"action"`
	Kind          DeploymentKind  `json:"kind"`
	Target        UpdateJobTarget `json:"target"`
	InstallWindow *InstallWindow  `json:"install_window"`
	Deadline      time.Time       `json:"deadline"`
	Emergency     bool            `json:"emergency"`
	SentAt        time.Time       `json:"sent_at"`
}

// UpdateJobTarget is what a job installs.
type UpdateJobTarget struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	SHA256  string `json:"sha256,omitempty"`
	Length  int64  `json:"length,omitempty"`
	TUFPath string `json:"tuf_path,omitempty"`
}

// InstallWindow is when a device may start installing: [From, To).
type InstallWindow struct {
	From time.Time `json:"from"`
	To   time.Time `json:"to"`
}

// UpdateStatus is the message on a device's update/status channel.
type UpdateStatus struct {
	DeploymentID    string      `json:"deployment_id"`
	Attempt         int         `json:"attempt,omitempty"`
	State           UpdateState `json:"state"`
	Reason          string      `json:"reason,omitempty"`
	Transient       bool        `json:"transient,omitempty"`
	Progress        float64     `json:"progress,omitempty"`
	Version         string      `json:"version,omitempty"`
	PreviousVersion string      `json:"previous_version,omitempty"`
	At              *time.Time  `json:"at,omitempty"`
}
