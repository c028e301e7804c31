package steward

import (
	"context"
	"time"
)

// HealthLevel is how well a device is doing: ok, degraded or critical.
type HealthLevel string

// The health levels, best first.
const (
	HealthOK       HealthLevel = "ok"
	HealthDegraded HealthLevel = "degraded"
	HealthCritical HealthLevel = "critical"
)

// Rank orders health levels: 0 for ok, 1 for degraded, 2 for critical, -1
// for an unknown level.
func (l HealthLevel) Rank() int {
	switch l {
	case HealthOK:
		return 0
	case HealthDegraded:
		return 1
	case HealthCritical:
		return 2
	}
	return -1
}

// HealthReason is one finding of a health evaluation: its level, a stable
// code for programs and a sentence for people. A reason of level ok is a
// note (the device is in maintenance, say) that lowers nothing.
type HealthReason struct {
	Level   HealthLevel `json:"level"`
	Code    string      `json:"code"`
	Message string      `json:"message"`
}

// DeviceHealth is a device's health summary: the worst level of its
// reasons (ok when there are none), the reasons worst first, and when it was
// evaluated.
type DeviceHealth struct {
	DeviceID    string         `json:"device_id"`
	Level       HealthLevel    `json:"level"`
	Reasons     []HealthReason `json:"reasons"`
	EvaluatedAt time.Time      `json:"evaluated_at"`
}

// FleetHealth evaluates the health of a tenant's devices.
type FleetHealth interface {
	// Device evaluates one device now; CodeNotFound when the tenant has
	// no such device.
	Device(ctx context.Context, tenantID, id string) (DeviceHealth, error)
}
