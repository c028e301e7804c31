package storetest

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func testTenantStatus(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	got, err := s.SetTenantStatus(c, tenantA, steward.TenantSuspended, "unpaid invoice", at(time.Hour))
	must(t, err)
	if got.Status != steward.TenantSuspended || got.StatusReason != "unpaid invoice" || got.StatusChangedAt == nil || !got.StatusChangedAt.Equal(stored(at(time.Hour))) {
		t.Fatalf("suspended tenant = %+v", got)
	}
	a, err := s.GetTenant(c, tenantA)
	must(t, err)
	if a.Status != steward.TenantSuspended || a.StatusReason != "unpaid invoice" {
		t.Fatalf("GetTenant after suspension = %+v", a)
	}
	b, err := s.GetTenant(c, tenantB)
	must(t, err)
	if b.Status != steward.TenantActive || b.StatusChangedAt != nil {
		t.Fatalf("tenant B changed with A: %+v", b)
	}

	t.Run("refused", func(t *testing.T) {
		_, err := s.SetTenantStatus(c, tenantA, "paused", "", at(2*time.Hour))
		wantCode(t, err, steward.CodeInvalid)
		_, err = s.SetTenantStatus(c, "no-such-tenant", steward.TenantSuspended, "", at(2*time.Hour))
		wantCode(t, err, steward.CodeNotFound)
		wantCode(t, s.CreateTenant(c, steward.Tenant{ID: "t-odd", Name: "odd", Status: "paused", CreatedAt: t0}), steward.CodeInvalid)
		a, err := s.GetTenant(c, tenantA)
		must(t, err)
		if a.Status != steward.TenantSuspended || a.StatusReason != "unpaid invoice" {
			t.Fatalf("a refused change was written: %+v", a)
		}
	})

	got, err = s.SetTenantStatus(c, tenantA, steward.TenantActive, "", at(2*time.Hour))
	must(t, err)
	if got.Status != steward.TenantActive || got.StatusReason != "" {
		t.Fatalf("resumed tenant = %+v", got)
	}
	list, err := s.ListTenants(c)
	must(t, err)
	if len(list) != 2 || list[0].Status != steward.TenantActive || list[1].Status != steward.TenantActive {
		t.Fatalf("ListTenants = %+v", list)
	}
}

// fillTenant gives a tenant a row in as many tables as the store's own
// methods reach; p keeps the IDs of two tenants apart where IDs are global.
func fillTenant(t *testing.T, s steward.Store, tenant, p string) {
	t.Helper()
	c := ctx(t)
	must(t, s.CreateToken(c, token(tenant, p+"tok")))
	must(t, s.CreateEnrollmentGroup(c, group(tenant, p+"grp", "group", "fp-"+p)))
	d1, d2 := p+"dev1", p+"dev2"
	createDevices(t, s, device(tenant, d1), device(tenant, d2))
	must(t, s.AddLifecycleEvent(c, steward.LifecycleEvent{TenantID: tenant, DeviceID: d1, From: steward.StateProvisioned, To: steward.StateActive, Actor: "system", At: t0}))
	must(t, s.AddCertificate(c, cert(tenant, d1, p+"serial", t0)))
	must(t, s.AddSecurityEvent(c, steward.SecurityEvent{TenantID: tenant, DeviceID: d1, Kind: steward.SecACLDenied, Detail: "x", At: t0}))
	must(t, s.WriteSamples(c, []steward.Sample{{TenantID: tenant, DeviceID: d1, Metric: "temperature", Value: 81, At: t0}}))
	must(t, s.RollupSamples(c, t0.Truncate(time.Hour), t0.Truncate(time.Hour).Add(time.Hour)))
	ev := devEvent("reboot", steward.SeverityInfo, "up", t0)
	ev.TenantID, ev.DeviceID = tenant, d1
	must(t, s.AddDeviceEvents(c, []steward.DeviceEvent{ev}))
	pe := presence(true, t0)
	pe.TenantID, pe.DeviceID = tenant, d1
	must(t, s.AddPresenceEvent(c, pe))
	must(t, s.CreateAlertRule(c, alertRule(tenant, p+"rule", "hot")))
	if _, err := s.PutAlert(c, openAlert(tenant, p+"alert", p+"rule", d1)); err != nil {
		t.Fatal(err)
	}
	must(t, s.CreateChannel(c, webhookChannel(tenant, p+"ch", "hook")))
	must(t, s.EnqueueDelivery(c, delivery(tenant, p+"del", p+"ch", "k1", 0)))
	must(t, s.CreateSilence(c, silence(tenant, p+"sil", 0, time.Hour)))
	must(t, s.CreateNotificationPolicy(c, policy(tenant, p+"np", "p", 0, p+"ch")))
	if _, err := s.PutNotificationGroup(c, notifGroup(tenant, p+"np", "g")); err != nil {
		t.Fatal(err)
	}
	must(t, s.CreateAlertAction(c, alertAction(tenant, p+"np", p+"alert", "quarantine")))
	must(t, s.CreateApprovalPolicy(c, approvalPolicy(tenant, p+"ap", "rollouts")))
	must(t, s.CreateApprovalRequest(c, approvalRequest(tenant, p+"ar", t0)))
	// The device CA and a rotated generation, as pki names them.
	must(t, s.CreateSecret(c, "pki/device-ca/"+tenant, []byte("ca")))
	must(t, s.CreateSecret(c, "pki/device-ca/"+tenant+"/1", []byte("ca1")))
}

// testDeleteTenant fills two tenants, deletes one, and checks in every
// table the schema has with a tenant_id column (listed by the store from
// its catalog, so a table added later is checked too) that nothing of the
// deleted tenant is left and nothing of the other is gone.
func testDeleteTenant(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	fillTenant(t, s, tenantA, "a-")
	fillTenant(t, s, tenantB, "b-")
	// A tenant whose ID starts with A's: its CA secret must survive.
	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantA + "x", Name: "Ax", CreatedAt: t0}))
	must(t, s.CreateSecret(c, "pki/device-ca/"+tenantA+"x", []byte("cax")))

	before, err := s.TenantRows(c, tenantA)
	must(t, err)
	for _, table := range []string{"api_tokens", "enrollment_groups", "devices", "lifecycle_events", "certificates", "security_events",
		"samples", "device_events", "presence_events", "alert_rules", "alerts", "notification_channels", "deliveries", "silences",
		"notification_policies", "notification_groups", "alert_actions", "approval_policies", "approval_requests"} {
		if before[table] == 0 {
			t.Errorf("before the deletion, tenant A has no row in %s (tables counted: %v)", table, slices.Sorted(maps.Keys(before)))
		}
	}
	otherBefore, err := s.TenantRows(c, tenantB)
	must(t, err)

	must(t, s.DeleteTenant(c, tenantA))

	after, err := s.TenantRows(c, tenantA)
	must(t, err)
	if !slices.Equal(slices.Sorted(maps.Keys(after)), slices.Sorted(maps.Keys(before))) {
		t.Fatalf("tables counted changed: %v, then %v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	for table, n := range after {
		if n != 0 {
			t.Errorf("after DeleteTenant, %s still holds %d rows of tenant A", table, n)
		}
	}
	otherAfter, err := s.TenantRows(c, tenantB)
	must(t, err)
	if !maps.Equal(otherBefore, otherAfter) {
		t.Fatalf("deleting tenant A changed tenant B's rows: %v, then %v", otherBefore, otherAfter)
	}
	_, err = s.GetTenant(c, tenantA)
	wantCode(t, err, steward.CodeNotFound)
	for _, name := range []string{"pki/device-ca/" + tenantA, "pki/device-ca/" + tenantA + "/1"} {
		_, err := s.GetSecret(c, name)
		wantCode(t, err, steward.CodeNotFound)
	}
	for _, name := range []string{"pki/device-ca/" + tenantB, "pki/device-ca/" + tenantB + "/1", "pki/device-ca/" + tenantA + "x"} {
		if _, err := s.GetSecret(c, name); err != nil {
			t.Errorf("secret %s of another tenant: %v", name, err)
		}
	}
	if d, err := s.GetDevice(c, tenantB, "b-dev1"); err != nil || d.TenantID != tenantB {
		t.Fatalf("tenant B's device after A's deletion: %+v, %v", d, err)
	}

	wantCode(t, s.DeleteTenant(c, tenantA), steward.CodeNotFound)
	wantCode(t, s.DeleteTenant(c, ""), steward.CodeInvalid)
	// The IDs are free again: a new tenant A can have a device a-dev1.
	must(t, s.CreateTenant(c, steward.Tenant{ID: tenantA, Name: "A again", CreatedAt: t0}))
	createDevices(t, s, device(tenantA, "a-dev1"))
}
