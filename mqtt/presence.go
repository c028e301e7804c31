package mqtt

import (
	"context"
	"sync"

	"github.com/steward-iot/steward"
)

// presenceQueue hands presence changes to the Bus on one goroutine, in the
// order they were pushed, so that connection goroutines never wait for the
// presence handler and a device's changes are never reordered. It is
// unbounded on purpose: it holds at most a few changes per connection
// attempt, and dropping one would leave a device's presence wrong.
type presenceQueue struct {
	mu      sync.Mutex
	items   []steward.PresenceChange
	closed  bool
	wake    chan struct{} // capacity 1: "there is something to do"
	stopped chan struct{}
}

func newPresenceQueue() *presenceQueue {
	return &presenceQueue{wake: make(chan struct{}, 1), stopped: make(chan struct{})}
}

func (q *presenceQueue) push(p steward.PresenceChange) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.items = append(q.items, p)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// run delivers changes until close; then it delivers what is left and stops.
func (q *presenceQueue) run(ctx context.Context, bus steward.Bus) {
	defer close(q.stopped)
	for {
		<-q.wake
		q.mu.Lock()
		items, closed := q.items, q.closed
		q.items = nil
		q.mu.Unlock()
		for _, p := range items {
			bus.PublishPresence(ctx, p)
		}
		if closed {
			return
		}
	}
}

// close stops the queue after the changes pushed so far are delivered.
func (q *presenceQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.stopped
}
