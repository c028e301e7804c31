package steward

import (
	"context"
	"time"
)

// Channel names the part of a device's topic tree after "dev/{id}/".
type Channel string

// The channels of DESIGN.md's topic table.
const (
	ChannelAttributes   Channel = "attributes"    // device → server
	ChannelTelemetry    Channel = "telemetry"     // device → server
	ChannelEvents       Channel = "events"        // device → server
	ChannelTwinReported Channel = "twin/reported" // device → server
	ChannelTwinDesired  Channel = "twin/desired"  // server → device (retained)
	ChannelCmdReq       Channel = "cmd/req"       // server → device
	ChannelCmdRes       Channel = "cmd/res"       // device → server
	ChannelUpdateJob    Channel = "update/job"    // server → device
	ChannelUpdateStatus Channel = "update/status" // device → server
)

// DeviceToServer lists the channels a device publishes on.
var DeviceToServer = []Channel{ChannelAttributes, ChannelTelemetry, ChannelEvents, ChannelTwinReported, ChannelCmdRes, ChannelUpdateStatus}

// ServerToDevice lists the channels a device subscribes to.
var ServerToDevice = []Channel{ChannelTwinDesired, ChannelCmdReq, ChannelUpdateJob}

// QuarantineMayPublish lists what a quarantined device may still publish:
// its attributes (to be validated again), events, and the status of the
// update jobs that may cure it.
var QuarantineMayPublish = []Channel{ChannelAttributes, ChannelEvents, ChannelUpdateStatus}

// QuarantineMaySubscribe lists what a quarantined device may still receive.
var QuarantineMaySubscribe = []Channel{ChannelUpdateJob}

// Topic returns the MQTT topic of a device channel.
func Topic(deviceID string, ch Channel) string { return "dev/" + deviceID + "/" + string(ch) }

// DeviceMessage is one message a device published, as the device plane
// accepted it: the sender's identity comes from its certificate.
type DeviceMessage struct {
	TenantID string
	DeviceID string
	Channel  Channel
	Payload  []byte
	QoS      byte
	Received time.Time
}

// Ack settles a device message: nil once the message is durable (the broker
// then acknowledges it to the device), or the reason it was not taken. An
// InboundHandler calls it exactly once, possibly later and from another
// goroutine, and in the order the messages of one device arrived.
type Ack func(err error)

// InboundHandler takes device messages of one channel.
type InboundHandler func(ctx context.Context, m DeviceMessage, ack Ack)

// OutboundMessage is a message for one device.
type OutboundMessage struct {
	TenantID string
	DeviceID string
	Channel  Channel
	Payload  []byte
	QoS      byte
	Retain   bool
}

// SessionControl tells the device plane that a device's standing changed:
// its live session must be closed (revoked, decommissioned) or its state,
// which decides what it may publish, has changed.
type SessionControl struct {
	TenantID string
	DeviceID string
	State    State
	Close    bool
	Reason   string
	// Serial, when set, limits Close to a session authenticated with that
	// certificate (one certificate revoked, the device's newer one kept).
	Serial string
}

// PresenceChange is a device connecting or disconnecting.
type PresenceChange struct {
	TenantID   string
	DeviceID   string
	Online     bool
	At         time.Time
	RemoteAddr string
}

// Bus carries messages between the device plane (the broker, which holds
// device sessions) and the services. The embedded adapter is in-process; a
// cluster adapter routes the same calls between nodes, so nothing but the
// broker adapter knows MQTT, and no service knows on which node a device is
// connected.
type Bus interface {
	// PublishInbound hands a device message to the handler of its channel.
	// With no handler for the channel the message is acknowledged at once.
	PublishInbound(ctx context.Context, m DeviceMessage, ack Ack)
	// HandleInbound sets the handler of a channel (one per channel).
	HandleInbound(ch Channel, h InboundHandler)

	// Send delivers a message to a device's session, wherever it is.
	// A retained message is kept for the device's next subscription.
	Send(ctx context.Context, m OutboundMessage) error
	// HandleSend sets who delivers outbound messages: the broker.
	HandleSend(h func(ctx context.Context, m OutboundMessage) error)

	// Control changes a live session; see SessionControl.
	Control(ctx context.Context, c SessionControl) error
	HandleControl(h func(ctx context.Context, c SessionControl))

	// PublishPresence reports a device connecting or disconnecting.
	PublishPresence(ctx context.Context, p PresenceChange)
	HandlePresence(h func(ctx context.Context, p PresenceChange))
}
