package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// MaxReasonLen is the longest reason a device may give, in bytes.
const MaxReasonLen = 1024

// DecodeStatus checks one update/status payload of a device (see
// docs/protocol.md) and returns the update it asks for. A malformed
// payload is CodeInvalid.
func DecodeStatus(payload []byte, tenantID, deviceID string, received time.Time) (steward.DeploymentDeviceUpdate, error) {
	var raw struct {
		DeploymentID    *string         `json:"deployment_id"`
		Attempt         *int            `json:"attempt"`
		State           *string         `json:"state"`
		Reason          string          `json:"reason"`
		Transient       bool            `json:"transient"`
		Progress        *float64        `json:"progress"`
		Version         string          `json:"version"`
		PreviousVersion string          `json:"previous_version"`
		At              json.RawMessage `json:"at"`
	}
	u := steward.DeploymentDeviceUpdate{TenantID: tenantID, DeviceID: deviceID, At: received}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&raw); err != nil {
		return u, steward.Errorf(steward.CodeInvalid, "update status: not a JSON object of the protocol: %v", err)
	}
	if dec.More() {
		return u, steward.Errorf(steward.CodeInvalid, "update status: one JSON object expected")
	}
	switch {
	case raw.DeploymentID == nil || *raw.DeploymentID == "" || len(*raw.DeploymentID) > 64:
		return u, steward.Errorf(steward.CodeInvalid, "update status: deployment_id is required (at most 64 characters)")
	case raw.State == nil || !steward.UpdateState(*raw.State).DeviceReported():
		return u, steward.Errorf(steward.CodeInvalid, "update status: state must be one of downloading, downloaded, installing, rebooting, verifying, succeeded, failed, rolled_back, skipped")
	case raw.Attempt != nil && *raw.Attempt < 0:
		return u, steward.Errorf(steward.CodeInvalid, "update status: attempt must not be negative")
	case raw.Progress != nil && (*raw.Progress < 0 || *raw.Progress > 1):
		return u, steward.Errorf(steward.CodeInvalid, "update status: progress must be within 0 to 1")
	case len(raw.Reason) > MaxReasonLen:
		return u, steward.Errorf(steward.CodeInvalid, "update status: reason is %d bytes, more than %d", len(raw.Reason), MaxReasonLen)
	case len(raw.Version) > 128 || len(raw.PreviousVersion) > 128:
		return u, steward.Errorf(steward.CodeInvalid, "update status: versions are at most 128 characters")
	}
	u.DeploymentID, u.State = *raw.DeploymentID, steward.UpdateState(*raw.State)
	if (u.State == steward.UpdateFailed || u.State == steward.UpdateSkipped) && raw.Reason == "" {
		return u, steward.Errorf(steward.CodeInvalid, "update status: %s needs a reason", u.State)
	}
	if raw.Attempt != nil {
		u.Attempt = *raw.Attempt
	}
	if raw.Progress != nil {
		u.Progress = *raw.Progress
	}
	u.Reason, u.Version, u.PreviousVersion = raw.Reason, raw.Version, raw.PreviousVersion
	u.Transient = raw.Transient && u.State == steward.UpdateFailed
	if len(raw.At) > 0 && string(raw.At) != "null" {
		at, err := parseAt(raw.At)
		if err != nil {
			return u, err
		}
		u.At = at
	}
	return u, nil
}

func parseAt(b json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return t, steward.Errorf(steward.CodeInvalid, "update status: at %q is not RFC 3339", s)
		}
		return t.UTC(), nil
	}
	ms, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil {
		return time.Time{}, steward.Errorf(steward.CodeInvalid, "update status: at must be RFC 3339 text or Unix milliseconds")
	}
	return time.UnixMilli(ms).UTC(), nil
}

// IntakeConfig wires an Intake.
type IntakeConfig struct {
	Store  steward.Store
	Clock  steward.Clock
	Logger *slog.Logger
	// MaxBatch caps the statuses written in one transaction (default 1000).
	MaxBatch int
	// WriteTimeout bounds one batch's write (default 30s).
	WriteTimeout time.Duration
}

// Intake takes devices' update/status messages into the store, in
// batches: one goroutine (Run) takes whatever arrived while the previous
// batch was written, writes it in one transaction and then acknowledges
// its messages, in the order they came (group commit, as the telemetry
// writer does). A malformed status is refused at once and writes nothing;
// one the store does not take (another deployment, an older attempt, a
// device already finished) is acknowledged and dropped; a failed write is
// not acknowledged, so that the device sends it again.
type Intake struct {
	cfg IntakeConfig
	in  chan item
}

type item struct {
	u   steward.DeploymentDeviceUpdate
	ack steward.Ack
}

// NewIntake returns an intake and, with a bus, registers it for
// update/status.
func NewIntake(cfg IntakeConfig, bus steward.Bus) *Intake {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 1000
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	in := &Intake{cfg: cfg, in: make(chan item, cfg.MaxBatch)}
	if bus != nil {
		bus.HandleInbound(steward.ChannelUpdateStatus, in.Handle)
	}
	return in
}

// Handle takes one update/status message; it waits while the queue is
// full, which holds back the sending device.
func (in *Intake) Handle(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	now := m.Received
	if now.IsZero() {
		now = in.cfg.Clock.Now()
	}
	u, err := DecodeStatus(m.Payload, m.TenantID, m.DeviceID, now)
	if err != nil {
		ack(err)
		return
	}
	select {
	case in.in <- item{u, ack}:
	case <-ctx.Done():
		ack(steward.Errorf(steward.CodeUnavailable, "update status: shutting down"))
	}
}

// Run writes batches until ctx ends; what is queued then is written first.
func (in *Intake) Run(ctx context.Context) error {
	batch := make([]item, 0, in.cfg.MaxBatch)
	for {
		select {
		case it := <-in.in:
			batch = append(batch[:0], it)
		case <-ctx.Done():
			for {
				select {
				case it := <-in.in:
					in.write(context.WithoutCancel(ctx), []item{it})
				default:
					return nil
				}
			}
		}
	drain:
		for len(batch) < in.cfg.MaxBatch {
			select {
			case it := <-in.in:
				batch = append(batch, it)
			default:
				break drain
			}
		}
		in.write(ctx, batch)
	}
}

func (in *Intake) write(ctx context.Context, batch []item) {
	ups := make([]steward.DeploymentDeviceUpdate, len(batch))
	for i, it := range batch {
		ups[i] = it.u
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), in.cfg.WriteTimeout)
	defer cancel()
	_, err := in.cfg.Store.UpdateDeploymentDevices(wctx, ups)
	if err != nil {
		in.cfg.Logger.Warn("write update statuses failed", "n", len(batch), "err", err)
		err = steward.WrapError(steward.CodeUnavailable, err, "update status: not stored, send it again")
	}
	for _, it := range batch {
		it.ack(err)
	}
}
