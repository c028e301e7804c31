package steward

import (
	"context"
	"time"
)

// Tenant statuses. A suspended tenant keeps all its data, but its API
// tokens and sessions are refused, its devices are refused at connect and
// their live sessions closed, until it is resumed.
const (
	TenantActive    = "active"
	TenantSuspended = "suspended"
)

// SecTenantSuspended is the security event of a device of a suspended
// tenant trying to connect or enroll.
const SecTenantSuspended SecurityEventKind = "tenant_suspended"

// TenantStore is the part of Store that suspends and deletes tenants.
type TenantStore interface {
	// SetTenantStatus sets a tenant's status (TenantActive or
	// TenantSuspended, CodeInvalid otherwise) with its reason and time, and
	// returns the tenant as stored; CodeNotFound for an unknown tenant.
	SetTenantStatus(ctx context.Context, id, status, reason string, at time.Time) (Tenant, error)
	// DeleteTenant deletes, in one transaction, every row of the tenant in
	// every table that has a tenant_id column (found in the schema, so
	// that a table added later is never forgotten), its device CA secrets,
	// and the tenant itself; CodeNotFound for an unknown tenant.
	DeleteTenant(ctx context.Context, id string) error
	// TenantRows counts the tenant's rows in every table that has a
	// tenant_id column, by table name (zero counts included).
	TenantRows(ctx context.Context, id string) (map[string]int64, error)
}
