package steward

import "time"

// Command is a request to a device on dev/{id}/cmd/req. The device answers
// on dev/{id}/cmd/res with a CommandResult carrying the same ID.
type Command struct {
	ID     string         `json:"id"`   // correlation ID, unique per command
	Name   string         `json:"name"` // "ping", "reboot", …
	Args   map[string]any `json:"args,omitempty"`
	SentAt time.Time      `json:"sent_at"`
}

// Command result statuses.
const (
	CommandOK       = "ok"       // done (or, for reboot, about to be done)
	CommandError    = "error"    // tried and failed
	CommandRejected = "rejected" // not understood or not allowed
)

// CommandResult is a device's answer to a Command.
type CommandResult struct {
	ID     string         `json:"id"`
	Status string         `json:"status"`
	Result map[string]any `json:"result,omitempty"`
	Error  string         `json:"error,omitempty"`
}
