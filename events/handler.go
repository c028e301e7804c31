// Package events takes the events devices report on dev/{id}/events (a
// reboot, a crash, a warning worth keeping) from the bus into the store:
// payloads are validated, and each message is acknowledged only once its
// events are durable.
package events

import (
	"context"
	"log/slog"
	"time"

	"github.com/steward-iot/steward"
)

// Config wires the handler.
type Config struct {
	Store steward.Store
	Clock steward.Clock
	// WriteTimeout bounds one write (default 30s).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Handler writes device events.
//
// Each message is written in its own transaction before it is
// acknowledged, on the caller's goroutine (the broker's read loop of the
// sending device), with no queue and no batching. That keeps the
// acknowledgements of a device in order for free and puts back pressure on
// a device that sends faster than the store takes its events. The cost is
// one commit per message: on SQLite, with its single writer and an fsync
// per commit, that bounds the node at the store's commit rate
// (BenchmarkHandle measures it: about 2,800 messages a second on the
// development machine, one device at a time; fewer on a slow disk), and a
// message may carry up to 100 events. Events are rare next to telemetry (reboots, crashes, warnings),
// so that is ample; should it not be, group commit as in the telemetry
// intake is the next step.
type Handler struct {
	cfg Config
}

// New returns a handler and registers it for events on bus.
func New(cfg Config, bus steward.Bus) *Handler {
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	h := &Handler{cfg: cfg}
	bus.HandleInbound(steward.ChannelEvents, h.Handle)
	return h
}

// Handle takes one events message. A malformed payload is refused
// (CodeInvalid, or CodeTooLarge for too many events) and nothing is
// written; a good one is acknowledged once it is committed. A failed write
// is acknowledged with CodeUnavailable, which leaves the message to be
// sent again.
func (h *Handler) Handle(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	now := m.Received
	if now.IsZero() {
		now = h.cfg.Clock.Now()
	}
	evs, err := Decode(m.Payload, m.TenantID, m.DeviceID, now)
	if err != nil {
		ack(err)
		return
	}
	// Not the caller's cancellation: a write under way when the broker
	// shuts down is finished, so that its message is acknowledged.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.WriteTimeout)
	defer cancel()
	err = h.cfg.Store.AddDeviceEvents(wctx, evs)
	switch steward.ErrorCode(err) {
	case "":
		ack(nil)
	case steward.CodeInvalid, steward.CodeNotFound:
		// Refused for good: the events break a rule or the device is gone.
		h.cfg.Logger.Warn("device events refused", "tenant", m.TenantID, "device", m.DeviceID, "err", err)
		ack(err)
	default:
		h.cfg.Logger.Error("write device events", "tenant", m.TenantID, "device", m.DeviceID, "events", len(evs), "err", err)
		ack(steward.WrapError(steward.CodeUnavailable, err, "events not stored"))
	}
}
