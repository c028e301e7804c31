package inproc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestPublishInbound(t *testing.T) {
	t.Parallel()
	errBoom := steward.Errorf(steward.CodeUnavailable, "boom")
	tests := []struct {
		name    string
		handler steward.InboundHandler // on ChannelTelemetry
		channel steward.Channel
		wantErr error
		wantHit bool
	}{
		{name: "no handler acks nil", channel: steward.ChannelTelemetry},
		{name: "handler of another channel is not called", channel: steward.ChannelEvents,
			handler: func(context.Context, steward.DeviceMessage, steward.Ack) { panic("wrong handler") }},
		{name: "handler acks nil", channel: steward.ChannelTelemetry, wantHit: true,
			handler: func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) { ack(nil) }},
		{name: "handler acks error", channel: steward.ChannelTelemetry, wantHit: true, wantErr: errBoom,
			handler: func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) { ack(errBoom) }},
		{name: "handler acks later from another goroutine", channel: steward.ChannelTelemetry, wantHit: true,
			handler: func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) {
				go func() { time.Sleep(time.Millisecond); ack(nil) }()
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := New(nil)
			var hit atomic.Bool
			if tt.handler != nil {
				h := tt.handler
				b.HandleInbound(steward.ChannelTelemetry, func(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
					if string(m.Payload) != `{"x":1}` || m.DeviceID != "d-1" {
						t.Errorf("handler got %+v", m)
					}
					hit.Store(true)
					h(ctx, m, ack)
				})
			}
			acked := make(chan error, 1)
			b.PublishInbound(context.Background(), steward.DeviceMessage{DeviceID: "d-1", Channel: tt.channel, Payload: []byte(`{"x":1}`)},
				func(err error) { acked <- err })
			select {
			case err := <-acked:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ack(%v), want %v", err, tt.wantErr)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("never acknowledged")
			}
			if hit.Load() != tt.wantHit {
				t.Fatalf("handler called = %v, want %v", hit.Load(), tt.wantHit)
			}
		})
	}
}

func TestHandleInboundNilRemoves(t *testing.T) {
	t.Parallel()
	b := New(nil)
	b.HandleInbound(steward.ChannelEvents, func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) {
		ack(errors.New("should have been removed"))
	})
	b.HandleInbound(steward.ChannelEvents, nil)
	var got error = errors.New("not acked")
	b.PublishInbound(context.Background(), steward.DeviceMessage{Channel: steward.ChannelEvents}, func(err error) { got = err })
	if got != nil {
		t.Fatalf("ack = %v, want nil", got)
	}
}

func TestSendAndControlWithoutBroker(t *testing.T) {
	t.Parallel()
	b := New(nil)
	tests := []struct {
		name string
		call func() error
	}{
		{"send", func() error { return b.Send(context.Background(), steward.OutboundMessage{DeviceID: "d-1"}) }},
		{"control", func() error { return b.Control(context.Background(), steward.SessionControl{DeviceID: "d-1"}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.call()
			if steward.ErrorCode(err) != steward.CodeUnavailable || steward.ErrorMessage(err) != "device plane not running" {
				t.Fatalf("err = %v (code %q), want unavailable/device plane not running", err, steward.ErrorCode(err))
			}
		})
	}
}

func TestSendControlPresenceReachHandlers(t *testing.T) {
	t.Parallel()
	b := New(nil)
	wantErr := steward.Errorf(steward.CodeNotFound, "device not connected")
	var sent steward.OutboundMessage
	b.HandleSend(func(_ context.Context, m steward.OutboundMessage) error {
		sent = m
		if m.DeviceID == "d-missing" {
			return wantErr
		}
		return nil
	})
	var ctl steward.SessionControl
	b.HandleControl(func(_ context.Context, c steward.SessionControl) { ctl = c })
	var pres steward.PresenceChange
	b.HandlePresence(func(_ context.Context, p steward.PresenceChange) { pres = p })

	if err := b.Send(context.Background(), steward.OutboundMessage{DeviceID: "d-1", Channel: steward.ChannelCmdReq}); err != nil {
		t.Fatalf("send: %v", err)
	}
	if sent.DeviceID != "d-1" || sent.Channel != steward.ChannelCmdReq {
		t.Fatalf("sent = %+v", sent)
	}
	if err := b.Send(context.Background(), steward.OutboundMessage{DeviceID: "d-missing"}); !errors.Is(err, wantErr) {
		t.Fatalf("send to missing device: %v, want the handler's error", err)
	}
	if err := b.Control(context.Background(), steward.SessionControl{DeviceID: "d-1", Close: true}); err != nil {
		t.Fatalf("control: %v", err)
	}
	if !ctl.Close || ctl.DeviceID != "d-1" {
		t.Fatalf("control = %+v", ctl)
	}
	b.PublishPresence(context.Background(), steward.PresenceChange{DeviceID: "d-1", Online: true})
	if !pres.Online || pres.DeviceID != "d-1" {
		t.Fatalf("presence = %+v", pres)
	}

	// Removing the handlers puts the bus back to "not running".
	b.HandleSend(nil)
	b.HandleControl(nil)
	b.HandlePresence(nil)
	if err := b.Send(context.Background(), steward.OutboundMessage{}); steward.ErrorCode(err) != steward.CodeUnavailable {
		t.Fatalf("send after removal: %v", err)
	}
	b.PublishPresence(context.Background(), steward.PresenceChange{DeviceID: "d-2"}) // dropped, must not panic
	if pres.DeviceID != "d-1" {
		t.Fatalf("removed presence handler was called: %+v", pres)
	}
}

// TestConcurrentUse exercises registration and calls at once; run with -race.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	b := New(nil)
	var wg sync.WaitGroup
	var acks atomic.Int64
	for i := 0; i < 8; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				b.HandleInbound(steward.ChannelTelemetry, func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) { ack(nil) })
				b.HandleSend(func(context.Context, steward.OutboundMessage) error { return nil })
				b.HandlePresence(func(context.Context, steward.PresenceChange) {})
			}
		}()
		go func() {
			defer wg.Done()
			for j := 0; j < 200; j++ {
				b.PublishInbound(context.Background(), steward.DeviceMessage{Channel: steward.ChannelTelemetry}, func(err error) {
					if err == nil {
						acks.Add(1)
					}
				})
				_ = b.Send(context.Background(), steward.OutboundMessage{})
				b.PublishPresence(context.Background(), steward.PresenceChange{})
			}
		}()
	}
	wg.Wait()
	if acks.Load() != 8*200 {
		t.Fatalf("acks = %d, want %d", acks.Load(), 8*200)
	}
}

func BenchmarkPublishInbound(b *testing.B) {
	bus := New(nil)
	bus.HandleInbound(steward.ChannelTelemetry, func(_ context.Context, _ steward.DeviceMessage, ack steward.Ack) { ack(nil) })
	m := steward.DeviceMessage{Channel: steward.ChannelTelemetry, Payload: []byte(`{"metrics":{"cpu":0.5}}`)}
	ack := func(error) {}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			bus.PublishInbound(context.Background(), m, ack)
		}
	})
}
