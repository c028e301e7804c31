package agent

import (
	"context"
	"encoding/json"
	"path/filepath"
	"sync"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/agent/config"
)

// twinFile keeps the applied configuration in the state directory.
const twinFile = "twin.json"

// reportTries bounds the attempts to report one applied state; the next
// desired message (every connection gets the retained one) reports again.
const reportTries = 5

// twinAgent applies the desired configuration the server publishes,
// retained, on dev/{id}/twin/desired, with Config.ConfigHandlers, and
// reports the result on dev/{id}/twin/reported.
type twinAgent struct {
	a       *Agent
	desired chan []byte // the newest desired message not yet applied

	mu      sync.Mutex
	applier *config.Applier // opened by run
}

func newTwinAgent(a *Agent) *twinAgent {
	return &twinAgent{a: a, desired: make(chan []byte, 1)}
}

// offer hands over a desired message without waiting: a newer one replaces
// one not yet applied, since each carries the whole desired state.
func (t *twinAgent) offer(payload []byte) {
	for {
		select {
		case t.desired <- payload:
			return
		default:
		}
		select {
		case <-t.desired:
		default:
		}
	}
}

// run opens the applied state, hands it to the handlers again (settings
// held in memory come back before the server is reached), then applies and
// reports each desired message until ctx ends.
func (t *twinAgent) run(ctx context.Context) {
	ap, err := config.Open(filepath.Join(t.a.cfg.StateDir, twinFile), t.a.cfg.ConfigHandlers)
	if err != nil {
		t.a.log.Error("device twin disabled: cannot read the applied configuration", "err", err)
		return
	}
	if err := ap.Replay(); err != nil {
		t.a.log.Warn("applied configuration replayed with errors", "err", err)
	}
	t.mu.Lock()
	t.applier = ap
	t.mu.Unlock()
	for {
		select {
		case <-ctx.Done():
			return
		case payload := <-t.desired:
			t.apply(ctx, ap, payload)
		}
	}
}

func (t *twinAgent) apply(ctx context.Context, ap *config.Applier, payload []byte) {
	var msg steward.TwinDesiredMessage
	if err := json.Unmarshal(payload, &msg); err != nil || msg.Version < 0 {
		t.a.log.Warn("desired configuration ignored: not the documented message", "bytes", len(payload))
		return
	}
	st, err := ap.Apply(msg.Version, msg.State)
	if err != nil {
		// Nothing changed on the device; report what it runs, so the
		// server sees the version was not applied.
		t.a.log.Error("apply desired configuration", "version", msg.Version, "err", err)
		st = ap.State()
	}
	if len(st.Errors) > 0 {
		t.a.log.Warn("configuration applied with errors", "version", st.Version, "errors", st.Errors)
	} else {
		t.a.log.Info("configuration applied", "version", st.Version)
	}
	body, err := json.Marshal(st.Report())
	if err != nil {
		t.a.log.Error("encode reported configuration", "err", err)
		return
	}
	if err := t.a.publishEventually(ctx, steward.ChannelTwinReported, body, reportTries); err != nil && ctx.Err() == nil {
		t.a.log.Warn("report configuration", "version", st.Version, "err", err)
	}
}

// ConfigState returns the configuration the device applied, and false
// before the applied state was read at start.
func (a *Agent) ConfigState() (config.State, bool) {
	a.twin.mu.Lock()
	ap := a.twin.applier
	a.twin.mu.Unlock()
	if ap == nil {
		return config.State{}, false
	}
	return ap.State(), true
}
