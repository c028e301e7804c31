// Package health summarises a device's health: ok, degraded or critical,
// with the reasons. Evaluate is a pure function of what is known about the
// device (its state and presence, its latest metric values, its recent
// error events, its reconnect rate) and of Rules, the thresholds, which are
// data so that they are easy to read and to change. Service reads that
// knowledge from the Store and implements steward.FleetHealth.
//
// docs/operations.md ("Device health") lists the default rules.
package health

import (
	"time"

	"github.com/steward-iot/steward"
)

// Reason codes, stable for programs. A metric rule has its own code
// (MetricRule.Code).
const (
	CodeOffline        = "offline"
	CodeQuarantined    = "quarantined"
	CodeMaintenance    = "maintenance"
	CodeNotEnrolled    = "not_enrolled"
	CodeDecommissioned = "decommissioned"
	CodeStaleTelemetry = "stale_telemetry"
	CodeNoTelemetry    = "no_telemetry"
	CodeReconnects     = "reconnects"
	CodeCriticalEvents = "critical_events"
	CodeErrorEvents    = "error_events"
)

// Rules are the thresholds of an evaluation. A zero count or duration
// turns its rule off.
type Rules struct {
	// OfflineAfter: a device offline for longer is critical.
	OfflineAfter time.Duration
	// StaleAfter: an online device whose latest sample is older is
	// degraded.
	StaleAfter time.Duration
	// EventWindow is how far back events count.
	EventWindow time.Duration
	// CriticalEvents critical-severity events in the window make the
	// device critical; ErrorEvents error-severity events make it degraded.
	CriticalEvents int
	ErrorEvents    int
	// ReconnectWindow is the window of the reconnect rate;
	// ReconnectsPerHour reconnects per hour over it make the device
	// degraded.
	ReconnectWindow   time.Duration
	ReconnectsPerHour float64
	// Metrics are the thresholds on the latest metric values.
	Metrics []MetricRule
}

// MetricRule grades the latest value of one metric against its limits.
type MetricRule struct {
	Metric string // the metric name, as devices send it
	Code   string // the reason code
	// Low says that low values are bad (battery): a limit is reached at or
	// below it; otherwise at or above it.
	Low bool
	// Limits are checked in order; the first reached gives the level, so
	// list the critical limit first.
	Limits []Limit
	// Unit formats values in messages: "%" shows a fraction (0 to 1) as a
	// percentage, any other unit follows the number.
	Unit string
}

// Limit is one threshold of a metric and the level it gives.
type Limit struct {
	Level steward.HealthLevel
	Value float64
}

// DefaultRules returns the rules Steward uses unless told otherwise.
// Fractions (battery, disk, memory, cpu) are 0 to 1, as the agent sends
// them; temperature is in °C.
func DefaultRules() Rules {
	return Rules{
		OfflineAfter:      15 * time.Minute,
		StaleAfter:        time.Hour,
		EventWindow:       time.Hour,
		CriticalEvents:    1,
		ErrorEvents:       3,
		ReconnectWindow:   24 * time.Hour,
		ReconnectsPerHour: 6,
		Metrics: []MetricRule{
			{Metric: "temperature", Code: "temperature_high", Unit: "°C",
				Limits: []Limit{{steward.HealthCritical, 85}, {steward.HealthDegraded, 70}}},
			{Metric: "battery", Code: "battery_low", Unit: "%", Low: true,
				Limits: []Limit{{steward.HealthCritical, 0.1}, {steward.HealthDegraded, 0.2}}},
			{Metric: "disk", Code: "disk_full", Unit: "%",
				Limits: []Limit{{steward.HealthCritical, 0.95}, {steward.HealthDegraded, 0.85}}},
			{Metric: "memory", Code: "memory_high", Unit: "%",
				Limits: []Limit{{steward.HealthDegraded, 0.95}}},
			{Metric: "cpu", Code: "cpu_high", Unit: "%",
				Limits: []Limit{{steward.HealthDegraded, 0.95}}},
		},
	}
}
