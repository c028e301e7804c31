package steward

import (
	"strings"
	"time"
)

// State is a device's place in its lifecycle.
type State string

// The lifecycle states. See Transition for the allowed moves.
const (
	StateRegistered     State = "registered"     // known in advance, not yet enrolled
	StateProvisioned    State = "provisioned"    // enrolled, holds an operational certificate, not yet validated
	StateActive         State = "active"         // validated against its enrollment group's policy
	StateQuarantined    State = "quarantined"    // failed validation or isolated by an operator
	StateMaintenance    State = "maintenance"    // taken out of service on purpose
	StateDecommissioned State = "decommissioned" // terminal: credentials revoked, never comes back
)

// States lists every lifecycle state, in lifecycle order.
var States = []State{StateRegistered, StateProvisioned, StateActive, StateQuarantined, StateMaintenance, StateDecommissioned}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	for _, v := range States {
		if s == v {
			return true
		}
	}
	return false
}

// transitions is the lifecycle state machine of DESIGN.md; decommissioning
// from any non-terminal state is handled in CanTransition. A transfer to
// another owner returns an enrolled device to registered: it must be
// provisioned again.
var transitions = map[State][]State{
	StateRegistered:  {StateProvisioned},
	StateProvisioned: {StateActive, StateQuarantined, StateRegistered},
	StateActive:      {StateQuarantined, StateMaintenance, StateRegistered},
	StateQuarantined: {StateActive, StateRegistered},
	StateMaintenance: {StateActive, StateRegistered},
}

// CanTransition reports whether a device may move from one state to another.
func CanTransition(from, to State) bool {
	if from == StateDecommissioned || !to.Valid() {
		return false
	}
	if to == StateDecommissioned {
		return true
	}
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Transition moves d to state to, the one place where a lifecycle change is
// decided. It returns the event to record with the device; d is changed only
// when the move is allowed.
func Transition(d *Device, to State, reason, actor string, at time.Time) (LifecycleEvent, error) {
	if !CanTransition(d.State, to) {
		return LifecycleEvent{}, Errorf(CodeFailedPrecondition, "device %s cannot go from %s to %s", d.ID, d.State, to)
	}
	ev := LifecycleEvent{
		TenantID: d.TenantID,
		DeviceID: d.ID,
		From:     d.State,
		To:       to,
		Reason:   reason,
		Actor:    actor,
		At:       at,
	}
	d.State = to
	d.StateReason = reason
	d.StateChangedAt = at
	d.StateActor = actor
	return ev, nil
}

// LifecycleEvent records one lifecycle transition.
type LifecycleEvent struct {
	ID       int64     `json:"id"`
	TenantID string    `json:"tenant_id"`
	DeviceID string    `json:"device_id"`
	From     State     `json:"from"`
	To       State     `json:"to"`
	Reason   string    `json:"reason,omitempty"`
	Actor    string    `json:"actor"` // "system", "token:<id>", "device"
	At       time.Time `json:"at"`
}

// Location is where a device is installed.
type Location struct {
	Site      string   `json:"site,omitempty"`
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
}

// Presence is a device's connection status as the device plane sees it.
type Presence struct {
	Online         bool      `json:"online"`
	ConnectedSince time.Time `json:"connected_since,omitzero"`
	LastSeen       time.Time `json:"last_seen,omitzero"`
	Reconnects     int64     `json:"reconnects"`
	RemoteAddr     string    `json:"remote_addr,omitempty"`
}

// Device is one managed device: its identity, inventory and lifecycle.
type Device struct {
	ID                string            `json:"id"` // assigned by the server; the CN of its certificate
	TenantID          string            `json:"tenant_id"`
	EnrollmentGroupID string            `json:"enrollment_group_id,omitempty"`
	FactoryID         string            `json:"factory_id,omitempty"` // SHA-256 of the factory certificate (hex)
	FactoryKeyID      string            `json:"-"`                    // SHA-256 of the operational public key bound at first enrollment
	Model             string            `json:"model,omitempty"`
	Serial            string            `json:"serial,omitempty"`
	Hardware          string            `json:"hardware,omitempty"`
	Firmware          string            `json:"firmware,omitempty"`
	Location          Location          `json:"location"`
	Owner             string            `json:"owner,omitempty"`
	Labels            map[string]string `json:"labels"`
	Attributes        map[string]any    `json:"attributes"` // the last attributes report, unknown keys kept
	WarrantyEnd       *time.Time        `json:"warranty_end,omitempty"`
	State             State             `json:"state"`
	StateReason       string            `json:"state_reason,omitempty"`
	StateChangedAt    time.Time         `json:"state_changed_at"`
	StateActor        string            `json:"state_actor,omitempty"` // who made the last transition: "system", "device" or "token:<id>"
	Presence          Presence          `json:"presence"`
	CreatedAt         time.Time         `json:"created_at"`
	UpdatedAt         time.Time         `json:"updated_at"`
	Version           int64             `json:"version"` // bumped on each update; UpdateDevice refuses a stale one
}

// Inventory attribute keys that Steward reads from an attributes report.
// Any other key is kept in Device.Attributes.
const (
	AttrModel    = "model"
	AttrSerial   = "serial"
	AttrFirmware = "firmware"
	AttrHardware = "hardware"
)

// ApplyAttributes folds an attributes report into the device's inventory:
// the well-known keys update their fields, every key is kept in Attributes.
func (d *Device) ApplyAttributes(attrs map[string]any) {
	if d.Attributes == nil {
		d.Attributes = map[string]any{}
	}
	for k, v := range attrs {
		d.Attributes[k] = v
	}
	str := func(k string) (string, bool) {
		s, ok := attrs[k].(string)
		return strings.TrimSpace(s), ok
	}
	if v, ok := str(AttrModel); ok {
		d.Model = v
	}
	if v, ok := str(AttrSerial); ok && d.Serial == "" {
		// The serial comes from the factory certificate when there is one;
		// a report cannot change a device's identity.
		d.Serial = v
	}
	if v, ok := str(AttrFirmware); ok {
		d.Firmware = v
	}
	if v, ok := str(AttrHardware); ok {
		d.Hardware = v
	}
}

// ValidDeviceID reports whether id can name a device: it must be usable as
// one MQTT topic level and as a certificate CN.
func ValidDeviceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

// ValidLabelKey reports whether k can be a label key (and so a query field
// labels.<k>).
func ValidLabelKey(k string) bool {
	return len(k) <= 63 && ValidDeviceID(k)
}
