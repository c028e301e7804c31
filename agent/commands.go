package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/steward-iot/steward"
)

// Command names the agent answers.
const (
	CommandPing   = "ping"
	CommandReboot = "reboot"
)

// answerTries is how many connections an answer is tried on.
const answerTries = 3

// inboxLoop handles the server's messages one at a time, in order.
func (a *Agent) inboxLoop(ctx context.Context, inbox <-chan inbound) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-inbox:
			switch m.ch {
			case steward.ChannelCmdReq:
				a.command(ctx, m.payload)
			case steward.ChannelUpdateJob:
				a.updates.offer(m.payload)
			case steward.ChannelTwinDesired:
				a.twin.offer(m.payload)
			default:
				if a.cfg.OnMessage != nil {
					a.cfg.OnMessage(m.ch, m.payload)
				} else {
					a.log.Info("message not handled by this agent", "channel", m.ch, "bytes", len(m.payload))
				}
			}
		}
	}
}

// command answers one command and then does what must come after the
// answer (a reboot).
func (a *Agent) command(ctx context.Context, payload []byte) {
	res, after := a.credentialCommand(ctx, payload) // rotate-credentials and wipe, else handleCommand
	if res.ID == "" {
		// Without an ID nobody waits for the answer.
		a.log.Warn("command without an ID ignored", "error", res.Error)
		return
	}
	a.commands.Add(1)
	a.log.Info("command", "id", res.ID, "status", res.Status, "error", res.Error)
	body, err := json.Marshal(res)
	if err != nil {
		a.log.Error("encode command result", "err", err)
		return
	}
	if err := a.publishEventually(ctx, steward.ChannelCmdRes, body, answerTries); err != nil {
		// The server gives up on its own timeout; a reboot that was not
		// confirmed is not carried out.
		a.log.Warn("command result not confirmed by the broker", "id", res.ID, "err", err)
		return
	}
	if after != nil {
		after(ctx)
	}
}

// handleCommand decides the answer to a command payload and what to do
// once the answer has been delivered.
func (a *Agent) handleCommand(payload []byte) (steward.CommandResult, func(context.Context)) {
	var cmd steward.Command
	if err := json.Unmarshal(payload, &cmd); err != nil {
		// The ID may still be readable when another field is wrong.
		var idOnly struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(payload, &idOnly)
		return steward.CommandResult{ID: idOnly.ID, Status: steward.CommandRejected, Error: "malformed command: " + jsonProblem(err)}, nil
	}
	res := steward.CommandResult{ID: cmd.ID}
	switch cmd.Name {
	case CommandPing:
		res.Status = steward.CommandOK
		res.Result = map[string]any{"pong": true, "time": a.cfg.Clock.Now().UTC().Format(time.RFC3339Nano)}
		return res, nil
	case CommandReboot:
		if a.cfg.Reboot == nil {
			res.Status, res.Error = steward.CommandRejected, "reboot is not supported on this device"
			return res, nil
		}
		done, err := a.rebootDone(cmd.ID)
		if err != nil {
			res.Status, res.Error = steward.CommandError, "cannot record the reboot"
			a.log.Error("read last reboot", "err", err)
			return res, nil
		}
		res.Status = steward.CommandOK
		if done {
			// Delivered again after the reboot it asked for.
			res.Result = map[string]any{"already_done": true}
			return res, nil
		}
		// Recorded before the answer goes out, so that a copy of the
		// command delivered after the restart is recognised.
		if err := a.state.write(rebootFile, []byte(cmd.ID)); err != nil {
			res.Status, res.Error = steward.CommandError, "cannot record the reboot"
			a.log.Error("record reboot", "err", err)
			return res, nil
		}
		return res, a.reboot
	default:
		res.Status, res.Error = steward.CommandRejected, fmt.Sprintf("unknown command %q", cmd.Name)
		return res, nil
	}
}

// rebootDone reports whether the reboot command id was already carried out.
func (a *Agent) rebootDone(id string) (bool, error) {
	last, err := os.ReadFile(a.state.path(rebootFile))
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return string(bytes.TrimSpace(last)) == id, nil
}

// reboot calls Config.Reboot and reports a failure as an event.
func (a *Agent) reboot(ctx context.Context) {
	a.log.Warn("rebooting on command")
	err := a.cfg.Reboot()
	if err == nil {
		return
	}
	a.log.Error("reboot failed", "err", err)
	if err := a.PublishEvent(ctx, Event{Type: "reboot_failed", Severity: "error", Message: err.Error()}); err != nil {
		a.log.Warn("reboot failure not reported", "err", err)
	}
}

// Event is a device event for dev/{id}/events.
type Event struct {
	TS       time.Time `json:"ts"`                // when it happened
	Type     string    `json:"type"`              // what happened: "reboot", "reboot_failed", …
	Severity string    `json:"severity"`          // "info", "warning", "error", "critical"
	Message  string    `json:"message,omitempty"` // for people
}

// PublishEvent reports an event on the live connection and waits for the
// broker's acknowledgement; without a connection it fails at once. A zero
// TS means now.
func (a *Agent) PublishEvent(ctx context.Context, e Event) error {
	if e.Type == "" {
		return steward.Errorf(steward.CodeInvalid, "an event needs a type")
	}
	if e.TS.IsZero() {
		e.TS = a.cfg.Clock.Now().UTC()
	}
	if e.Severity == "" {
		e.Severity = "info"
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return a.publish(ctx, steward.ChannelEvents, body)
}

// jsonProblem says what is wrong with a payload without echoing it.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Sprintf("field %q has the wrong type", te.Field)
	default:
		return "not JSON"
	}
}
