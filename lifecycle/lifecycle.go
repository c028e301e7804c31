// Package lifecycle is the device registry as operators use it: inventory,
// the lifecycle state machine applied to stored devices, quarantine and
// release, revocation, and commands to devices. It implements steward.Fleet.
package lifecycle

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// maxUpdateRetries bounds the read-modify-write loop on a device that others
// keep changing; past it the caller gets the conflict.
const maxUpdateRetries = 8

// Service implements steward.Fleet over a Store and a Bus.
type Service struct {
	store  steward.Store
	bus    steward.Bus
	clock  steward.Clock
	logger *slog.Logger
	audit  TxAuditor // optional (audit.go)
	// observer is told of state changes (observe.go); optional.
	observer TransitionObserver

	mu      sync.Mutex
	pending map[string]chan steward.CommandResult // command ID → waiter
}

// New returns the service and registers its command-result handler on bus.
func New(store steward.Store, bus steward.Bus, clock steward.Clock, logger *slog.Logger) *Service {
	s := &Service{store: store, bus: bus, clock: clock, logger: logger, pending: map[string]chan steward.CommandResult{}}
	bus.HandleInbound(steward.ChannelCmdRes, s.handleCommandResult)
	return s
}

var _ steward.Fleet = (*Service)(nil)

// Apply is the one read-modify-write path for a stored device: it loads the
// device, lets fn change it and return the lifecycle events it caused (from
// steward.Transition), writes the device and the events in one transaction,
// retrying on a concurrent update, and tells the device plane when the state
// changed. fn may run more than once.
func (s *Service) Apply(ctx context.Context, tenantID, id string, fn func(d *steward.Device) ([]steward.LifecycleEvent, error)) (steward.Device, error) {
	d, notify, err := s.ApplyDeferred(ctx, tenantID, id, fn)
	if err == nil {
		notify()
	}
	return d, err
}

// ApplyDeferred is Apply, but leaves telling the device plane to the
// caller, through notify: a handler of a device's own message acknowledges
// the message first, so that a session closed by the change does not lose
// the acknowledgement of what caused it.
func (s *Service) ApplyDeferred(ctx context.Context, tenantID, id string, fn func(d *steward.Device) ([]steward.LifecycleEvent, error)) (stored steward.Device, notify func(), err error) {
	for range maxUpdateRetries {
		d, err := s.store.GetDevice(ctx, tenantID, id)
		if err != nil {
			return steward.Device{}, nil, err
		}
		before := d.State
		events, err := fn(&d)
		if err != nil {
			return steward.Device{}, nil, err
		}
		d.UpdatedAt = s.clock.Now()
		err = s.store.InTx(ctx, func(tx steward.Store) error {
			var err error
			if stored, err = tx.UpdateDevice(ctx, d); err != nil {
				return err
			}
			for _, ev := range events {
				if err := tx.AddLifecycleEvent(ctx, ev); err != nil {
					return fmt.Errorf("record lifecycle event: %w", err)
				}
			}
			if err := s.auditTransitions(ctx, tx, events); err != nil {
				return err
			}
			return s.observeTransitions(ctx, tx, stored, events)
		})
		if steward.IsConflict(err) {
			continue
		}
		if err != nil {
			return steward.Device{}, nil, err
		}
		notify = func() {}
		if stored.State != before {
			notify = func() { s.notifyState(context.WithoutCancel(ctx), before, stored) }
		}
		return stored, notify, nil
	}
	return steward.Device{}, nil, steward.Errorf(steward.CodeConflict, "device %s is being changed by others; try again", id)
}

// notifyState tells the device plane about a new state, which decides what
// the live session may do. Entering or leaving quarantine also closes the
// session: MQTT has no way to tell a device that its rights changed, and a
// device that reconnects learns at once from the subscriptions it is
// granted (instead of publishing what is now refused until it notices). A
// decommissioned device is disconnected for good.
func (s *Service) notifyState(ctx context.Context, before steward.State, d steward.Device) {
	c := steward.SessionControl{TenantID: d.TenantID, DeviceID: d.ID, State: d.State, Reason: d.StateReason}
	c.Close = d.State == steward.StateDecommissioned || d.State == steward.StateQuarantined || before == steward.StateQuarantined
	if err := s.bus.Control(ctx, c); err != nil {
		s.logger.Warn("tell device plane about state change", "device", d.ID, "state", d.State, "err", err)
	}
}

// transitionTo returns an Apply function that moves a device to a state.
func (s *Service) transitionTo(to steward.State, reason, actor string) func(d *steward.Device) ([]steward.LifecycleEvent, error) {
	return func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		ev, err := steward.Transition(d, to, reason, actor, s.clock.Now())
		if err != nil {
			return nil, err
		}
		return []steward.LifecycleEvent{ev}, nil
	}
}

// ListDevices implements steward.Fleet.
func (s *Service) ListDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) ([]steward.Device, error) {
	return s.store.ListDevices(ctx, tenantID, q)
}

// GetDevice implements steward.Fleet.
func (s *Service) GetDevice(ctx context.Context, tenantID, id string) (steward.DeviceDetail, error) {
	d, err := s.store.GetDevice(ctx, tenantID, id)
	if err != nil {
		return steward.DeviceDetail{}, err
	}
	certs, err := s.store.ListCertificates(ctx, tenantID, id)
	if err != nil {
		return steward.DeviceDetail{}, err
	}
	hist, err := s.store.ListLifecycleEvents(ctx, tenantID, id)
	if err != nil {
		return steward.DeviceDetail{}, err
	}
	return steward.DeviceDetail{Device: d, Certificates: certs, History: hist}, nil
}

// UpdateDevice implements steward.Fleet: operators set owner, location,
// labels and warranty; everything else comes from the device or the
// lifecycle.
func (s *Service) UpdateDevice(ctx context.Context, tenantID, id string, p steward.DevicePatch, actor string) (steward.Device, error) {
	if err := validatePatch(p); err != nil {
		return steward.Device{}, err
	}
	return s.Apply(ctx, tenantID, id, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		if d.State == steward.StateDecommissioned {
			return nil, steward.Errorf(steward.CodeFailedPrecondition, "device %s is decommissioned", id)
		}
		if p.Owner != nil {
			d.Owner = *p.Owner
		}
		if p.Location != nil {
			d.Location = *p.Location
		}
		if p.Labels != nil {
			d.Labels = p.Labels
		}
		if p.WarrantyEnd != nil {
			w := p.WarrantyEnd.UTC()
			d.WarrantyEnd = &w
		}
		return nil, nil
	})
}

// validatePatch checks an operator's patch before anything is read.
func validatePatch(p steward.DevicePatch) error {
	if p.Owner != nil && len(*p.Owner) > 256 {
		return steward.Errorf(steward.CodeInvalid, "owner is longer than 256 characters")
	}
	if l := p.Location; l != nil {
		if len(l.Site) > 256 {
			return steward.Errorf(steward.CodeInvalid, "site is longer than 256 characters")
		}
		if (l.Latitude == nil) != (l.Longitude == nil) {
			return steward.Errorf(steward.CodeInvalid, "latitude and longitude go together")
		}
		if l.Latitude != nil && (*l.Latitude < -90 || *l.Latitude > 90 || *l.Longitude < -180 || *l.Longitude > 180) {
			return steward.Errorf(steward.CodeInvalid, "coordinates out of range")
		}
	}
	if len(p.Labels) > 64 {
		return steward.Errorf(steward.CodeInvalid, "at most 64 labels")
	}
	for k, v := range p.Labels {
		if !steward.ValidLabelKey(k) {
			return steward.Errorf(steward.CodeInvalid, "label key %q: use letters, digits, '_', '-', '.' (1 to 63)", k)
		}
		if len(v) > 256 {
			return steward.Errorf(steward.CodeInvalid, "label %q: value longer than 256 characters", k)
		}
	}
	return nil
}

// Quarantine implements steward.Fleet.
func (s *Service) Quarantine(ctx context.Context, tenantID, id, reason, actor string) (steward.Device, error) {
	if reason == "" {
		return steward.Device{}, steward.Errorf(steward.CodeInvalid, "a quarantine needs a reason")
	}
	return s.Apply(ctx, tenantID, id, s.transitionTo(steward.StateQuarantined, reason, actor))
}

// Release implements steward.Fleet: a quarantined device goes back to active.
func (s *Service) Release(ctx context.Context, tenantID, id, actor string) (steward.Device, error) {
	return s.Apply(ctx, tenantID, id, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		if d.State != steward.StateQuarantined {
			return nil, steward.Errorf(steward.CodeFailedPrecondition, "device %s is %s, not quarantined", id, d.State)
		}
		return s.transitionTo(steward.StateActive, "released by operator", actor)(d)
	})
}

// Maintenance implements steward.Fleet.
func (s *Service) Maintenance(ctx context.Context, tenantID, id, reason, actor string) (steward.Device, error) {
	if reason == "" {
		return steward.Device{}, steward.Errorf(steward.CodeInvalid, "maintenance needs a reason")
	}
	return s.Apply(ctx, tenantID, id, s.transitionTo(steward.StateMaintenance, reason, actor))
}

// EndMaintenance implements steward.Fleet: a device in maintenance goes back
// to active.
func (s *Service) EndMaintenance(ctx context.Context, tenantID, id, actor string) (steward.Device, error) {
	return s.Apply(ctx, tenantID, id, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		if d.State != steward.StateMaintenance {
			return nil, steward.Errorf(steward.CodeFailedPrecondition, "device %s is %s, not in maintenance", id, d.State)
		}
		return s.transitionTo(steward.StateActive, "maintenance ended", actor)(d)
	})
}

// Revoke implements steward.Fleet: every certificate of the device is
// revoked and its live session closed at once. The device must enroll again
// with its factory identity to come back (which an operator may refuse by
// decommissioning it).
func (s *Service) Revoke(ctx context.Context, tenantID, id, actor string) (steward.Device, error) {
	d, err := s.store.GetDevice(ctx, tenantID, id)
	if err != nil {
		return steward.Device{}, err
	}
	n, err := s.store.RevokeCertificates(ctx, tenantID, id, s.clock.Now())
	if err != nil {
		return steward.Device{}, err
	}
	s.logger.Info("device credentials revoked", "tenant", tenantID, "device", id, "certificates", n, "actor", actor)
	s.auditRevoke(ctx, tenantID, id, actor, n)
	if err := s.bus.Control(ctx, steward.SessionControl{TenantID: tenantID, DeviceID: id, State: d.State, Close: true, Reason: "credentials revoked"}); err != nil {
		s.logger.Warn("close revoked device session", "device", id, "err", err)
	}
	return d, nil
}

// ListSecurityEvents implements steward.Fleet.
func (s *Service) ListSecurityEvents(ctx context.Context, tenantID string, f steward.SecurityEventFilter) ([]steward.SecurityEvent, error) {
	return s.store.ListSecurityEvents(ctx, tenantID, f)
}

// LatestSamples implements steward.Fleet.
func (s *Service) LatestSamples(ctx context.Context, tenantID, deviceID string) ([]steward.Sample, error) {
	if _, err := s.store.GetDevice(ctx, tenantID, deviceID); err != nil {
		return nil, err
	}
	return s.store.LatestSamples(ctx, tenantID, deviceID)
}

// maxCommandTimeout bounds how long an API call may wait for a device.
const maxCommandTimeout = 5 * time.Minute

// SendCommand implements steward.Fleet. The result is matched by the
// command's ID; a device that does not answer in time gives CodeUnavailable.
func (s *Service) SendCommand(ctx context.Context, tenantID, deviceID string, c steward.Command, timeout time.Duration) (steward.CommandResult, error) {
	if c.Name == "" || len(c.Name) > 64 {
		return steward.CommandResult{}, steward.Errorf(steward.CodeInvalid, "a command needs a name of at most 64 characters")
	}
	if timeout <= 0 || timeout > maxCommandTimeout {
		return steward.CommandResult{}, steward.Errorf(steward.CodeInvalid, "timeout must be between 0 and %s", maxCommandTimeout)
	}
	d, err := s.store.GetDevice(ctx, tenantID, deviceID)
	if err != nil {
		return steward.CommandResult{}, err
	}
	if d.State == steward.StateQuarantined || d.State == steward.StateDecommissioned {
		return steward.CommandResult{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s is %s and takes no commands", deviceID, d.State)
	}
	var idb [12]byte
	_, _ = rand.Read(idb[:])
	c.ID = hex.EncodeToString(idb[:])
	c.SentAt = s.clock.Now()
	payload, err := json.Marshal(c)
	if err != nil {
		return steward.CommandResult{}, fmt.Errorf("encode command: %w", err)
	}
	wait := make(chan steward.CommandResult, 1)
	key := tenantID + "/" + deviceID + "/" + c.ID
	s.mu.Lock()
	s.pending[key] = wait
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.pending, key)
		s.mu.Unlock()
	}()
	if err := s.bus.Send(ctx, steward.OutboundMessage{TenantID: tenantID, DeviceID: deviceID, Channel: steward.ChannelCmdReq, Payload: payload, QoS: 1}); err != nil {
		if steward.IsNotFound(err) { // the device exists; its session does not
			return steward.CommandResult{}, steward.WrapError(steward.CodeUnavailable, err, "device %s is not connected", deviceID)
		}
		return steward.CommandResult{}, err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-wait:
		return r, nil
	case <-t.C:
		return steward.CommandResult{}, steward.Errorf(steward.CodeUnavailable, "device %s did not answer %q within %s", deviceID, c.Name, timeout)
	case <-ctx.Done():
		return steward.CommandResult{}, ctx.Err()
	}
}

// handleCommandResult matches a device's answer to a waiting command. An
// answer nobody waits for (late, or for another node) is dropped.
func (s *Service) handleCommandResult(_ context.Context, m steward.DeviceMessage, ack steward.Ack) {
	var r steward.CommandResult
	if err := json.Unmarshal(m.Payload, &r); err != nil || r.ID == "" {
		ack(steward.Errorf(steward.CodeInvalid, "command result: need a JSON object with an id"))
		return
	}
	s.mu.Lock()
	wait := s.pending[m.TenantID+"/"+m.DeviceID+"/"+r.ID]
	s.mu.Unlock()
	if wait != nil {
		select {
		case wait <- r:
		default:
		}
	}
	ack(nil)
}
