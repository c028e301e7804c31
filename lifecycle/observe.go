package lifecycle

import (
	"context"
	"fmt"

	"github.com/steward-iot/steward"
)

// TransitionObserver is told of every state change of a device, whoever
// made it (an operator, a rule, the device's own report), in the
// transaction that makes it and after its audit record, so that what it
// writes (a webhook delivery, say) lands with the change or not at all. An
// error aborts the change; an observer that must not stand in the way of
// a quarantine returns nil for what is not a store failure.
type TransitionObserver interface {
	ObserveTransition(ctx context.Context, tx steward.Store, d steward.Device, ev steward.LifecycleEvent) error
}

// SetObserver sets the service's TransitionObserver. Call it before the
// service is used.
func (s *Service) SetObserver(o TransitionObserver) { s.observer = o }

// observeTransitions hands the events of one change to the observer.
func (s *Service) observeTransitions(ctx context.Context, tx steward.Store, d steward.Device, events []steward.LifecycleEvent) error {
	if s.observer == nil {
		return nil
	}
	for _, ev := range events {
		if err := s.observer.ObserveTransition(ctx, tx, d, ev); err != nil {
			return fmt.Errorf("observe state change of %s: %w", ev.DeviceID, err)
		}
	}
	return nil
}
