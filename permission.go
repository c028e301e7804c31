package steward

import "slices"

// Permission is one thing a caller of the management plane may do. Every
// API route declares the one permission it needs; a role is a set of them.
// The names follow "resource:verb" so that custom roles read like the docs.
type Permission string

// Permissions. A route that reads needs the ":read" of its resource; one
// that changes it needs ":write" unless a narrower permission exists
// (quarantine, command, approve), because those are the rights an
// organisation hands out separately.
const (
	PermDevicesRead         Permission = "devices:read"
	PermDevicesWrite        Permission = "devices:write"
	PermDevicesQuarantine   Permission = "devices:quarantine"
	PermDevicesCommand      Permission = "devices:command"
	PermDevicesRevoke       Permission = "devices:revoke"
	PermDevicesDecommission Permission = "devices:decommission"
	PermEnrollmentRead      Permission = "enrollment:read"
	PermEnrollmentWrite     Permission = "enrollment:write"
	PermTelemetryRead       Permission = "telemetry:read"
	PermTelemetryWrite      Permission = "telemetry:write"
	PermAlertsRead          Permission = "alerts:read"
	PermAlertsWrite         Permission = "alerts:write"
	PermNotificationsRead   Permission = "notifications:read"
	PermNotificationsWrite  Permission = "notifications:write"
	PermArtifactsRead       Permission = "artifacts:read"
	PermArtifactsWrite      Permission = "artifacts:write"
	PermDeploymentsRead     Permission = "deployments:read"
	PermDeploymentsCreate   Permission = "deployments:create"
	PermDeploymentsApprove  Permission = "deployments:approve"
	PermDeploymentsControl  Permission = "deployments:control"
	PermConfigRead          Permission = "config:read"
	PermConfigWrite         Permission = "config:write"
	PermApprovalsRead       Permission = "approvals:read"
	PermApprovalsDecide     Permission = "approvals:decide"
	PermAuditRead           Permission = "audit:read"
	PermComplianceRead      Permission = "compliance:read"
	PermUsersRead           Permission = "users:read"
	PermUsersAdmin          Permission = "users:admin"
	PermTokensAdmin         Permission = "tokens:admin"
	PermPKIRead             Permission = "pki:read"
	PermPKIAdmin            Permission = "pki:admin"
	// PermQuarantinePolicy changes a tenant's quarantine policy: what a
	// quarantined device may still do and which signals quarantine a
	// device on their own. Apart from devices:quarantine, since whoever
	// holds it can widen a suspect device's rights or turn the automatic
	// rules off; only the owner and admin roles hold it. Reading the
	// policy needs devices:read.
	PermQuarantinePolicy Permission = "quarantine:policy"
	// PermTenantsAdmin creates, suspends and deletes tenants: it spans
	// tenants, so only the system role holds it.
	PermTenantsAdmin Permission = "tenants:admin"
)

// AllPermissions lists every permission, in the order of the constants.
var AllPermissions = []Permission{
	PermDevicesRead, PermDevicesWrite, PermDevicesQuarantine, PermDevicesCommand,
	PermDevicesRevoke, PermDevicesDecommission,
	PermEnrollmentRead, PermEnrollmentWrite,
	PermTelemetryRead, PermTelemetryWrite,
	PermAlertsRead, PermAlertsWrite,
	PermNotificationsRead, PermNotificationsWrite,
	PermArtifactsRead, PermArtifactsWrite,
	PermDeploymentsRead, PermDeploymentsCreate, PermDeploymentsApprove, PermDeploymentsControl,
	PermConfigRead, PermConfigWrite,
	PermApprovalsRead, PermApprovalsDecide,
	PermAuditRead, PermComplianceRead,
	PermUsersRead, PermUsersAdmin, PermTokensAdmin,
	PermPKIRead, PermPKIAdmin,
	PermQuarantinePolicy,
	PermTenantsAdmin,
}

// Valid reports whether p is a known permission.
func (p Permission) Valid() bool { return slices.Contains(AllPermissions, p) }

// Built-in roles beyond admin and system (identity.go).
const (
	RoleOwner          Role = "owner"
	RoleOperator       Role = "operator"
	RoleReleaseManager Role = "release-manager"
	RoleApprover       Role = "approver"
	RoleViewer         Role = "viewer"
	RoleAuditor        Role = "auditor"
)

// readPermissions are the ":read" permissions of a tenant's resources.
var readPermissions = []Permission{
	PermDevicesRead, PermEnrollmentRead, PermTelemetryRead, PermAlertsRead,
	PermNotificationsRead, PermArtifactsRead, PermDeploymentsRead, PermConfigRead,
	PermApprovalsRead, PermPKIRead,
}

// tenantPermissions is everything within one tenant.
var tenantPermissions = slices.DeleteFunc(slices.Clone(AllPermissions), func(p Permission) bool { return p == PermTenantsAdmin })

// builtinRoles maps each built-in role to its permissions.
var builtinRoles = map[Role][]Permission{
	RoleSystem: AllPermissions,
	RoleOwner:  tenantPermissions,
	RoleAdmin:  tenantPermissions,
	RoleOperator: append(slices.Clone(readPermissions),
		PermDevicesWrite, PermDevicesQuarantine, PermDevicesCommand,
		PermAlertsWrite, PermTelemetryWrite, PermNotificationsWrite),
	RoleReleaseManager: append(slices.Clone(readPermissions),
		PermArtifactsWrite, PermDeploymentsCreate, PermDeploymentsControl, PermConfigWrite),
	RoleApprover: append(slices.Clone(readPermissions), PermDeploymentsApprove, PermApprovalsDecide),
	RoleViewer:   readPermissions,
	RoleAuditor:  append(slices.Clone(readPermissions), PermAuditRead, PermComplianceRead, PermUsersRead),
}

// BuiltinRoles lists the built-in roles, most powerful first.
func BuiltinRoles() []Role {
	return []Role{RoleSystem, RoleOwner, RoleAdmin, RoleOperator, RoleReleaseManager, RoleApprover, RoleViewer, RoleAuditor}
}

// RolePermissions returns the permissions of a built-in role, and false for
// a role that is not built in (a custom role is looked up in the store).
func RolePermissions(r Role) ([]Permission, bool) {
	ps, ok := builtinRoles[r]
	return slices.Clone(ps), ok
}

// RoleHas reports whether built-in role r holds permission p.
func RoleHas(r Role, p Permission) bool { return slices.Contains(builtinRoles[r], p) }
