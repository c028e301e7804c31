// Package inproc is the in-process steward.Bus of the embedded deployment:
// the broker and the services live in one process, so every call is a plain
// function call to the handler registered for it.
package inproc

import (
	"context"
	"log/slog"
	"sync"

	"github.com/steward-iot/steward"
)

// Bus is the in-process steward.Bus. Handlers may be set at any time, from
// any goroutine; a call uses the handler registered when it starts.
type Bus struct {
	log *slog.Logger

	mu       sync.RWMutex
	inbound  map[steward.Channel]steward.InboundHandler
	send     func(ctx context.Context, m steward.OutboundMessage) error
	control  func(ctx context.Context, c steward.SessionControl)
	presence func(ctx context.Context, p steward.PresenceChange)
}

var _ steward.Bus = (*Bus)(nil)

// New returns a Bus with no handlers.
func New(logger *slog.Logger) *Bus {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Bus{log: logger, inbound: map[steward.Channel]steward.InboundHandler{}}
}

// errNotRunning is what Send and Control answer before the broker has
// registered itself.
func errNotRunning() error {
	return steward.Errorf(steward.CodeUnavailable, "device plane not running")
}

// PublishInbound hands m to its channel's handler, or acknowledges it at once
// when the channel has none.
func (b *Bus) PublishInbound(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	b.mu.RLock()
	h := b.inbound[m.Channel]
	b.mu.RUnlock()
	if h == nil {
		ack(nil)
		return
	}
	h(ctx, m, ack)
}

// HandleInbound sets the handler of a channel, replacing any earlier one; a
// nil handler removes it.
func (b *Bus) HandleInbound(ch steward.Channel, h steward.InboundHandler) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if h == nil {
		delete(b.inbound, ch)
		return
	}
	b.inbound[ch] = h
}

// Send hands m to the device plane.
func (b *Bus) Send(ctx context.Context, m steward.OutboundMessage) error {
	b.mu.RLock()
	h := b.send
	b.mu.RUnlock()
	if h == nil {
		return errNotRunning()
	}
	return h(ctx, m)
}

// HandleSend sets who delivers outbound messages; nil removes it.
func (b *Bus) HandleSend(h func(ctx context.Context, m steward.OutboundMessage) error) {
	b.mu.Lock()
	b.send = h
	b.mu.Unlock()
}

// Control hands c to the device plane.
func (b *Bus) Control(ctx context.Context, c steward.SessionControl) error {
	b.mu.RLock()
	h := b.control
	b.mu.RUnlock()
	if h == nil {
		return errNotRunning()
	}
	h(ctx, c)
	return nil
}

// HandleControl sets who applies session controls; nil removes it.
func (b *Bus) HandleControl(h func(ctx context.Context, c steward.SessionControl)) {
	b.mu.Lock()
	b.control = h
	b.mu.Unlock()
}

// PublishPresence hands p to the presence handler. Without one the change is
// dropped: presence is a state report, and the next one supersedes it.
func (b *Bus) PublishPresence(ctx context.Context, p steward.PresenceChange) {
	b.mu.RLock()
	h := b.presence
	b.mu.RUnlock()
	if h == nil {
		b.log.Debug("presence change without a handler", "tenant", p.TenantID, "device", p.DeviceID, "online", p.Online)
		return
	}
	h(ctx, p)
}

// HandlePresence sets who takes presence changes; nil removes it.
func (b *Bus) HandlePresence(h func(ctx context.Context, p steward.PresenceChange)) {
	b.mu.Lock()
	b.presence = h
	b.mu.Unlock()
}
