package mqtt

import (
	"slices"
	"strings"

	"github.com/steward-iot/steward"
)

// channelOf returns the channel of topic when topic is inside
// dev/{deviceID}/, exactly as DESIGN.md's topic table names them: a wildcard
// or any other level never matches a channel.
func channelOf(deviceID, topic string) (steward.Channel, bool) {
	rest, ok := strings.CutPrefix(topic, "dev/")
	if !ok {
		return "", false
	}
	rest, ok = strings.CutPrefix(rest, deviceID)
	if !ok || len(rest) < 2 || rest[0] != '/' {
		return "", false
	}
	return steward.Channel(rest[1:]), true
}

// mayPublish decides a device's PUBLISH: the channel when allowed, else the
// kind of security event the refusal is.
func (s *session) mayPublish(topic string) (steward.Channel, steward.SecurityEventKind) {
	return s.decide(topic, steward.DeviceToServer, true)
}

// maySubscribe decides a device's subscription (and each delivery to it).
func (s *session) maySubscribe(filter string) (steward.Channel, steward.SecurityEventKind) {
	return s.decide(filter, steward.ServerToDevice, false)
}

// decide reads the device's state at every decision, and a quarantined
// device's allowance from its tenant's quarantine policy then too, so that
// a change of either applies to the next message of a live session.
func (s *session) decide(topic string, allowed []steward.Channel, publish bool) (steward.Channel, steward.SecurityEventKind) {
	ch, ok := channelOf(s.DeviceID, topic)
	if !ok || !slices.Contains(allowed, ch) {
		return "", steward.SecACLDenied
	}
	switch s.currentState() {
	case steward.StateQuarantined:
		pub, sub := s.b.quarantineAllowance(s.TenantID)
		quarantined := sub
		if publish {
			quarantined = pub
		}
		if !slices.Contains(quarantined, ch) {
			return "", steward.SecQuarantineRefused
		}
	case steward.StateDecommissioned:
		return "", steward.SecACLDenied
	}
	return ch, ""
}

// quarantineAllowance is what a quarantined device of the tenant may still
// publish and subscribe to: the tenant's quarantine policy when the broker
// was given one (Config.Quarantine), else the fixed defaults.
func (b *Broker) quarantineAllowance(tenantID string) (publish, subscribe []steward.Channel) {
	if b.quarantine == nil {
		return steward.QuarantineMayPublish, steward.QuarantineMaySubscribe
	}
	return b.quarantine.QuarantineAllowance(b.ctx, tenantID)
}
