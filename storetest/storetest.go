// Package storetest is the conformance suite of steward.Store: every store
// (sqlite, postgres) runs it from its own tests and must pass all of it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// Run runs the suite. open must return a new, empty store for each call
// (each subtest calls it) and arrange for it to be closed when the test
// ends; subtests run in parallel.
func Run(t *testing.T, open func(t *testing.T) steward.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s steward.Store)
	}{
		{"Tenants", testTenants},
		{"Secrets", testSecrets},
		{"Tokens", testTokens},
		{"TokenIsolation", testTokenIsolation},
		{"EnrollmentGroups", testEnrollmentGroups},
		{"EnrollmentGroupConflicts", testEnrollmentGroupConflicts},
		{"EnrollmentGroupIsolation", testEnrollmentGroupIsolation},
		{"DeviceRoundTrip", testDeviceRoundTrip},
		{"DeviceInvalid", testDeviceInvalid},
		{"DeviceConflicts", testDeviceConflicts},
		{"DeviceIsolation", testDeviceIsolation},
		{"UpdateDevice", testUpdateDevice},
		{"UpdateDeviceConcurrent", testUpdateDeviceConcurrent},
		{"UpdatePresence", testUpdatePresence},
		{"TouchDevices", testTouchDevices},
		{"ListDevicesQuery", testListDevicesQuery},
		{"ListDevicesPagination", testListDevicesPagination},
		{"ListDevicesLimits", testListDevicesLimits},
		{"ListDevicesInvalid", testListDevicesInvalid},
		{"LifecycleEvents", testLifecycleEvents},
		{"Certificates", testCertificates},
		{"CertificateIsolation", testCertificateIsolation},
		{"RevokeCertificates", testRevokeCertificates},
		{"SecurityEvents", testSecurityEvents},
		{"Samples", testSamples},
		{"SamplesLatest", testSamplesLatest},
		{"SamplesLatestConcurrent", testSamplesLatestConcurrent},
		{"SamplesLatestUnreadable", testSamplesLatestUnreadable},
		{"SamplesLatestAfterErasure", testSamplesLatestAfterErasure},
		{"SamplesInvalid", testSamplesInvalid},
		{"SamplesIsolation", testSamplesIsolation},
		{"SamplesLargeBatch", testSamplesLargeBatch},
		{"Rollups", testRollups},
		{"RollupsConcurrent", testRollupsConcurrent},
		{"RollupsInvalid", testRollupsInvalid},
		{"RollupsIsolation", testRollupsIsolation},
		{"RollupsCloseDays", testRollupsCloseDays},
		{"SamplesAcrossMove", testSamplesAcrossMove},
		{"SamplesRecentRemoved", testSamplesRecentRemoved},
		{"SamplesMovedInChunks", testSamplesMovedInChunks},
		{"Retention", testRetention},
		{"DeviceEvents", testDeviceEvents},
		{"DeviceEventsInvalid", testDeviceEventsInvalid},
		{"DeviceEventsIsolation", testDeviceEventsIsolation},
		{"PresenceEvents", testPresenceEvents},
		{"PresenceEventsInvalid", testPresenceEventsInvalid},
		{"PresenceEventsIsolation", testPresenceEventsIsolation},
		{"FleetAggregates", testFleetAggregates},
		{"FleetAggregatesRollups", testFleetAggregatesRollups},
		{"RetentionJob", testRetentionJob},
		{"AuditRetention", testAuditRetention},
		{"DevicePrivacy", testDevicePrivacy},
		{"QuarantinePolicies", testQuarantinePolicies},
		{"DeviceTransfers", testDeviceTransfers},
		{"IndividualEnrollments", testIndividualEnrollments},
		{"InTxCommit", testInTxCommit},
		{"InTxRollback", testInTxRollback},
		{"InTxNested", testInTxNested},
		{"TimeRoundTrip", testTimeRoundTrip},
		{"TelemetrySchemas", testTelemetrySchemas},
		{"TelemetrySchemasInvalid", testTelemetrySchemasInvalid},
		{"TelemetrySchemasIsolation", testTelemetrySchemasIsolation},
		{"NotificationChannels", testChannels},
		{"NotificationChannelsInvalid", testChannelsInvalid},
		{"Silences", testSilences},
		{"SilencesInvalid", testSilencesInvalid},
		{"Deliveries", testDeliveries},
		{"DeliveriesClaimConcurrent", testDeliveriesClaimConcurrent},
		{"AlertRules", testAlertRules},
		{"Alerts", testAlerts},
		{"AlertsIsolation", testAlertsIsolation},
		{"AlertSignals", testAlertSignals},
		{"AlertSubjects", testAlertSubjects},
		{"SiteConnectivity", testSiteConnectivity},
		{"NotificationPolicies", testPolicies},
		{"NotificationPoliciesInvalid", testPoliciesInvalid},
		{"NotificationGroups", testNotificationGroups},
		{"Credentials", testCredentials},
		{"Decommissions", testDecommissions},
		{"ApprovalPolicies", testApprovalPolicies}, {"ApprovalRequests", testApprovalRequests}, {"ApprovalRequestsConcurrent", testApprovalRequestsConcurrent},
		{"TenantStatus", testTenantStatus}, {"DeleteTenant", testDeleteTenant},
		{"AuditAppend", testAuditAppend},
		{"AuditAppendInvalid", testAuditAppendInvalid},
		{"AuditConcurrent", testAuditConcurrent},
		{"AuditSearch", testAuditSearch},
		{"Artifacts", testArtifacts},
		{"ArtifactsInvalid", testArtifactsInvalid},
		{"ArtifactsIsolation", testArtifactsIsolation},
		{"ArtifactGrants", testArtifactGrants},
		{"Uploads", testUploads},
		{"TUFMetadata", testTUFMetadata},
		{"ConfigTemplates", testConfigTemplates},
		{"ConfigVersions", testConfigVersions},
		{"Twins", testTwins},
		{"TwinDrift", testTwinDrift},
		{"TwinKnownGood", testTwinKnownGood},
		{"DeleteTwin", testDeleteTwin},
		{"Users", testUsers},
		{"ServiceAccounts", testServiceAccounts},
		{"CustomRoles", testCustomRoles},
		{"CustomRolesInvalid", testCustomRolesInvalid},
		{"Sessions", testSessions},
		{"AccountTokens", testAccountTokens},
		{"Deployments", testDeployments}, {"DeploymentsInvalid", testDeploymentsInvalid}, {"DeploymentDevices", testDeploymentDevices}, {"DeploymentsClaimConcurrent", testDeploymentsClaimConcurrent},
		{"DeviceDeployments", testDeviceDeployments},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// Tenants used throughout: A is the one under test, B the other one, which
// must never see or touch A's things.
const (
	tenantA = "tenant-a"
	tenantB = "tenant-b"
)

// t0 is a time with nanoseconds, in a zone other than UTC, so that every
// round trip checks the conversion to UTC and the precision kept.
var t0 = time.Date(2026, 11, 27, 10, 30, 15, 123456789, time.FixedZone("CET", 3600))

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// stored is how a store hands a time back: UTC, microsecond precision.
func stored(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// wantCode fails unless err carries code.
func wantCode(t *testing.T, err error, code steward.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var se *steward.Error
	if !errors.As(err, &se) {
		t.Fatalf("got %T %v, want a *steward.Error with %s", err, err, code)
	}
	if se.Code != code {
		t.Fatalf("got %s (%v), want %s", se.Code, err, code)
	}
}

// must fails on an error.
func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setup creates tenants A and B.
func setup(t *testing.T, s steward.Store) {
	t.Helper()
	for _, id := range []string{tenantA, tenantB} {
		must(t, s.CreateTenant(t.Context(), steward.Tenant{ID: id, Name: "Tenant " + id, CreatedAt: t0}))
	}
}

// device returns a device of tenant with every field set.
func device(tenant, id string) steward.Device {
	lat, lon := 48.8566, 2.3522
	warranty := at(365 * 24 * time.Hour)
	return steward.Device{
		ID:                id,
		TenantID:          tenant,
		EnrollmentGroupID: "g-" + tenant,
		FactoryID:         "fac-" + id,
		FactoryKeyID:      "key-" + id,
		Model:             "gw-100",
		Serial:            "SN-" + id,
		Hardware:          "revB",
		Firmware:          "1.2.0",
		Location:          steward.Location{Site: "paris", Latitude: &lat, Longitude: &lon},
		Owner:             "ops@example.com",
		Labels:            map[string]string{"site": "paris", "tier": "gold"},
		Attributes:        map[string]any{"model": "gw-100", "uptime": 12.5, "network": map[string]any{"ip": "10.0.0.1"}, "ok": true},
		WarrantyEnd:       &warranty,
		State:             steward.StateProvisioned,
		StateReason:       "enrolled",
		StateActor:        "device",
		StateChangedAt:    at(time.Second),
		Presence: steward.Presence{
			Online:         true,
			ConnectedSince: at(2 * time.Second),
			LastSeen:       at(3 * time.Second),
			Reconnects:     4,
			RemoteAddr:     "192.0.2.1:5555",
		},
		CreatedAt: t0,
		UpdatedAt: at(time.Second),
	}
}

// normDevice puts a device in the form a store returns it in: times in
// UTC to the microsecond, empty maps rather than nil ones.
func normDevice(d steward.Device) steward.Device {
	d.StateChangedAt = stored(d.StateChangedAt)
	d.CreatedAt = stored(d.CreatedAt)
	d.UpdatedAt = stored(d.UpdatedAt)
	d.Presence.ConnectedSince = stored(d.Presence.ConnectedSince)
	d.Presence.LastSeen = stored(d.Presence.LastSeen)
	if d.WarrantyEnd != nil {
		w := stored(*d.WarrantyEnd)
		d.WarrantyEnd = &w
	}
	if d.Labels == nil {
		d.Labels = map[string]string{}
	} else {
		d.Labels = maps.Clone(d.Labels)
	}
	if d.Attributes == nil {
		d.Attributes = map[string]any{}
	}
	return d
}

// sameDevice fails unless got is want as stored.
func sameDevice(t *testing.T, got, want steward.Device) {
	t.Helper()
	if g, w := normDevice(got), normDevice(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("device differs:\n got %s\nwant %s", dump(g), dump(w))
	}
}

// dump shows a device with its pointers followed.
func dump(d steward.Device) string {
	var lat, lon, w string
	if d.Location.Latitude != nil {
		lat = fmt.Sprint(*d.Location.Latitude)
	}
	if d.Location.Longitude != nil {
		lon = fmt.Sprint(*d.Location.Longitude)
	}
	if d.WarrantyEnd != nil {
		w = d.WarrantyEnd.String()
	}
	return fmt.Sprintf("%+v lat=%s lon=%s warranty=%s", d, lat, lon, w)
}

// ids returns the IDs of devices.
func ids(ds []steward.Device) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

// createDevices creates devices in one transaction.
func createDevices(t *testing.T, s steward.Store, ds ...steward.Device) {
	t.Helper()
	must(t, s.InTx(t.Context(), func(tx steward.Store) error {
		for _, d := range ds {
			if err := tx.CreateDevice(t.Context(), d); err != nil {
				return err
			}
		}
		return nil
	}))
}

// errTest is the error a transaction's function fails with on purpose.
var errTest = errors.New("storetest: failing on purpose")

// ctx returns the test's context.
func ctx(t *testing.T) context.Context { return t.Context() }

// eqStrings fails unless got equals want.
func eqStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

// did formats a numbered device ID.
func did(prefix string, i int) string { return fmt.Sprintf("d-%s%04d", strings.ToLower(prefix), i) }
