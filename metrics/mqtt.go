package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/steward-iot/steward"
)

// MQTT counts what the device-plane broker sees. It implements
// mqtt.Metrics; its methods are safe for concurrent use and do not allocate
// for the channels of steward.DeviceToServer and the mqtt.Refused… reasons.
type MQTT struct {
	connects        prometheus.Counter
	connectsRefused *prometheus.CounterVec
	received        *prometheus.CounterVec
	refused         *prometheus.CounterVec

	// Resolved children; only read after newMQTT.
	refusedConnect map[string]prometheus.Counter
	receivedOn     map[steward.Channel]prometheus.Counter
	refusedMessage map[string]prometheus.Counter
}

func newMQTT() *MQTT {
	m := &MQTT{
		connects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "mqtt", Name: "connects_total",
			Help: "MQTT sessions established (CONNACK sent).",
		}),
		connectsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "mqtt", Name: "connects_refused_total",
			Help: "TLS handshakes and MQTT CONNECTs refused, by reason (handshake, certificate, client_id, will).",
		}, []string{"reason"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "mqtt", Name: "messages_received_total",
			Help: "Device messages (PUBLISH and wills) accepted by the ACL and handed to the services, by channel.",
		}, []string{"channel"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: "mqtt", Name: "messages_refused_total",
			Help: "Device messages refused, by reason (acl, quarantine, too_large, invalid, handler).",
		}, []string{"reason"}),
		refusedConnect: map[string]prometheus.Counter{},
		receivedOn:     map[steward.Channel]prometheus.Counter{},
		refusedMessage: map[string]prometheus.Counter{},
	}
	// The label values of the broker's refusals (mqtt.Refused…) are
	// resolved here, so that they show as 0 before the first refusal and
	// cost no allocation afterwards.
	for _, r := range []string{"handshake", "certificate", "client_id", "will"} {
		m.refusedConnect[r] = m.connectsRefused.WithLabelValues(r)
	}
	for _, ch := range steward.DeviceToServer {
		m.receivedOn[ch] = m.received.WithLabelValues(string(ch))
	}
	for _, r := range []string{"acl", "quarantine", "too_large", "invalid", "handler"} {
		m.refusedMessage[r] = m.refused.WithLabelValues(r)
	}
	return m
}

func (m *MQTT) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.connects, m.connectsRefused, m.received, m.refused}
}

// Connected counts a session established.
func (m *MQTT) Connected() { m.connects.Inc() }

// ConnectRefused counts a handshake or CONNECT refused.
func (m *MQTT) ConnectRefused(reason string) { inc(m.refusedConnect, m.connectsRefused, reason) }

// MessageReceived counts a device message handed to the Bus.
func (m *MQTT) MessageReceived(ch steward.Channel) {
	if c, ok := m.receivedOn[ch]; ok {
		c.Inc()
		return
	}
	m.received.WithLabelValues(string(ch)).Inc()
}

// MessageRefused counts a device message refused.
func (m *MQTT) MessageRefused(reason string) { inc(m.refusedMessage, m.refused, reason) }

// inc counts on the resolved child of a label value, or, for one that was
// not foreseen, on the vector (which allocates).
func inc(resolved map[string]prometheus.Counter, vec *prometheus.CounterVec, value string) {
	if c, ok := resolved[value]; ok {
		c.Inc()
		return
	}
	vec.WithLabelValues(value).Inc()
}
