// Package steward holds the domain of Steward, remote management for IoT fleets:
// the types that every part of the system speaks (tenants, devices, enrollment
// groups, certificates, telemetry samples), the lifecycle state machine, the
// one error type with its codes, and the interfaces that services depend on
// and adapters implement (Store, Bus, Authority).
//
// This package imports nothing outside the standard library, so that every
// adapter (sqlite, postgres, mqtt, est, http) and every service can depend on
// it without depending on each other.
package steward

import "time"

// Clock tells the time. Services take one instead of calling time.Now so that
// tests can move time on their own terms.
type Clock interface {
	Now() time.Time
}

// SystemClock is the Clock of the wall.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// DefaultTenant is the tenant created on first start; the first admin token
// belongs to it.
const DefaultTenant = "default"
