package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func testLifecycleEvents(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	evs := []steward.LifecycleEvent{
		{TenantID: tenantA, DeviceID: "d-1", From: steward.StateRegistered, To: steward.StateProvisioned, Reason: "enrolled", Actor: "device", At: at(time.Minute)},
		{TenantID: tenantA, DeviceID: "d-1", From: steward.StateProvisioned, To: steward.StateActive, Actor: "system", At: at(time.Second)}, // an earlier clock: order is insertion order
		{TenantID: tenantA, DeviceID: "d-1", From: steward.StateActive, To: steward.StateQuarantined, Reason: "firmware not approved", Actor: "token:t1", At: at(time.Hour)},
	}
	for _, e := range evs {
		must(t, s.AddLifecycleEvent(c, e))
	}
	got, err := s.ListLifecycleEvents(c, tenantA, "d-1")
	must(t, err)
	if len(got) != len(evs) {
		t.Fatalf("ListLifecycleEvents = %+v, want %d events", got, len(evs))
	}
	for i, e := range got {
		want := evs[i]
		want.ID = e.ID
		want.At = stored(want.At)
		if e != want || e.ID == 0 || (i > 0 && e.ID <= got[i-1].ID) {
			t.Fatalf("event %d = %+v, want %+v with an increasing ID", i, e, want)
		}
	}

	// Tenant B can neither read the history nor write into it.
	list, err := s.ListLifecycleEvents(c, tenantB, "d-1")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B reads tenant A's history: %+v", list)
	}
	forged := evs[0]
	forged.TenantID = tenantB
	wantCode(t, s.AddLifecycleEvent(c, forged), steward.CodeNotFound)
	unknown := evs[0]
	unknown.DeviceID = "d-none"
	wantCode(t, s.AddLifecycleEvent(c, unknown), steward.CodeNotFound)
	bad := evs[0]
	bad.To = "lost"
	wantCode(t, s.AddLifecycleEvent(c, bad), steward.CodeInvalid)
	got, err = s.ListLifecycleEvents(c, tenantA, "d-1")
	must(t, err)
	if len(got) != len(evs) {
		t.Fatalf("refused events were written: %+v", got)
	}
}

func cert(tenant, device, serial string, notBefore time.Time) steward.Certificate {
	return steward.Certificate{
		Serial: serial, TenantID: tenant, DeviceID: device, KeyID: "key-" + serial,
		NotBefore: notBefore, NotAfter: notBefore.Add(90 * 24 * time.Hour),
		PEM: "-----BEGIN CERTIFICATE-----\n" + serial + "\n-----END CERTIFICATE-----\n", CreatedAt: notBefore,
	}
}

func sameCert(t *testing.T, got, want steward.Certificate) {
	t.Helper()
	want.NotBefore, want.NotAfter, want.CreatedAt = stored(want.NotBefore), stored(want.NotAfter), stored(want.CreatedAt)
	if want.RevokedAt != nil {
		r := stored(*want.RevokedAt)
		want.RevokedAt = &r
	}
	gr, wr := got.RevokedAt, want.RevokedAt
	got.RevokedAt, want.RevokedAt = nil, nil
	if got != want || (gr == nil) != (wr == nil) || (gr != nil && !gr.Equal(*wr)) {
		t.Fatalf("certificate differs:\n got %+v revoked %v\nwant %+v revoked %v", got, gr, want, wr)
	}
}

func testCertificates(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	c2 := cert(tenantA, "d-1", "02", at(time.Hour))
	c1 := cert(tenantA, "d-1", "01", t0)
	revoked := at(30 * time.Minute)
	c1.RevokedAt = &revoked
	must(t, s.AddCertificate(c, c2))
	must(t, s.AddCertificate(c, c1))

	got, err := s.GetCertificate(c, tenantA, "01")
	must(t, err)
	sameCert(t, got, c1)
	list, err := s.ListCertificates(c, tenantA, "d-1")
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListCertificates = %+v", list)
	}
	sameCert(t, list[0], c1) // oldest first
	sameCert(t, list[1], c2)

	_, err = s.GetCertificate(c, tenantA, "99")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.AddCertificate(c, cert(tenantA, "d-1", "01", at(time.Hour))), steward.CodeConflict)
	wantCode(t, s.AddCertificate(c, cert(tenantA, "d-none", "03", t0)), steward.CodeNotFound)
	wantCode(t, s.AddCertificate(c, cert(tenantA, "d-1", "", t0)), steward.CodeInvalid)
	list, err = s.ListCertificates(c, tenantA, "d-1")
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("refused certificates were written: %+v", list)
	}
	sameCert(t, list[0], c1) // the conflicting add changed nothing
}

func testCertificateIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-a")))
	must(t, s.CreateDevice(c, device(tenantB, "d-b")))
	must(t, s.AddCertificate(c, cert(tenantA, "d-a", "0a", t0)))

	_, err := s.GetCertificate(c, tenantB, "0a")
	wantCode(t, err, steward.CodeNotFound)
	list, err := s.ListCertificates(c, tenantB, "d-a")
	must(t, err)
	if len(list) != 0 {
		t.Fatalf("tenant B lists tenant A's certificates: %+v", list)
	}
	n, err := s.RevokeCertificates(c, tenantB, "d-a", at(time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("tenant B revoked %d of tenant A's certificates", n)
	}
	got, err := s.GetCertificate(c, tenantA, "0a")
	must(t, err)
	if got.Revoked() {
		t.Fatalf("tenant B's revocation reached tenant A: %+v", got)
	}
	// A certificate of tenant B cannot name tenant A's device.
	wantCode(t, s.AddCertificate(c, cert(tenantB, "d-a", "0b", t0)), steward.CodeNotFound)
	list, err = s.ListCertificates(c, tenantA, "d-a")
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("tenant A's device has %d certificates, want 1", len(list))
	}
}

func testRevokeCertificates(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	early := at(time.Minute)
	old := cert(tenantA, "d-1", "01", t0)
	old.RevokedAt = &early
	must(t, s.AddCertificate(c, old))
	must(t, s.AddCertificate(c, cert(tenantA, "d-1", "02", at(time.Hour))))
	must(t, s.AddCertificate(c, cert(tenantA, "d-1", "03", at(2*time.Hour))))
	must(t, s.AddCertificate(c, cert(tenantA, "d-2", "04", t0)))

	when := at(3 * time.Hour)
	n, err := s.RevokeCertificates(c, tenantA, "d-1", when)
	must(t, err)
	if n != 2 {
		t.Fatalf("RevokeCertificates = %d, want 2 (one was revoked already)", n)
	}
	n, err = s.RevokeCertificates(c, tenantA, "d-1", at(4*time.Hour))
	must(t, err)
	if n != 0 {
		t.Fatalf("second RevokeCertificates = %d, want 0", n)
	}
	list, err := s.ListCertificates(c, tenantA, "d-1")
	must(t, err)
	for _, crt := range list {
		want := when
		if crt.Serial == "01" {
			want = early // the first revocation time stays
		}
		if crt.RevokedAt == nil || !crt.RevokedAt.Equal(stored(want)) || crt.RevokedAt.Location() != time.UTC {
			t.Fatalf("certificate %s revoked at %v, want %v in UTC", crt.Serial, crt.RevokedAt, stored(want))
		}
	}
	other, err := s.GetCertificate(c, tenantA, "04")
	must(t, err)
	if other.Revoked() {
		t.Fatal("revoking d-1 revoked d-2's certificate")
	}
	n, err = s.RevokeCertificates(c, tenantA, "d-none", when)
	must(t, err)
	if n != 0 {
		t.Fatalf("RevokeCertificates of an unknown device = %d", n)
	}
}

func testSecurityEvents(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	evs := []steward.SecurityEvent{
		{TenantID: tenantA, DeviceID: "d-1", Kind: steward.SecACLDenied, Detail: "publish dev/d-2/telemetry", Remote: "192.0.2.1:1", At: t0},
		{TenantID: tenantA, DeviceID: "d-2", Kind: steward.SecSuspectedClone, Detail: "second key", At: at(time.Minute)},
		{TenantID: tenantA, DeviceID: "d-1", Kind: steward.SecSuspectedClone, Detail: "third key", At: at(2 * time.Minute)},
		{TenantID: tenantA, Kind: steward.SecEnrollRefused, Detail: "unknown CA", At: at(3 * time.Minute)}, // no device yet
		{TenantID: tenantB, DeviceID: "d-1", Kind: steward.SecACLDenied, Detail: "B's", At: at(4 * time.Minute)},
	}
	for _, e := range evs {
		must(t, s.AddSecurityEvent(c, e))
	}
	details := func(es []steward.SecurityEvent) []string {
		out := []string{}
		for _, e := range es {
			out = append(out, e.Detail)
		}
		return out
	}
	tests := []struct {
		tenant string
		f      steward.SecurityEventFilter
		want   []string // newest first
	}{
		{tenantA, steward.SecurityEventFilter{}, []string{"unknown CA", "third key", "second key", "publish dev/d-2/telemetry"}},
		{tenantA, steward.SecurityEventFilter{DeviceID: "d-1"}, []string{"third key", "publish dev/d-2/telemetry"}},
		{tenantA, steward.SecurityEventFilter{Kind: steward.SecSuspectedClone}, []string{"third key", "second key"}},
		{tenantA, steward.SecurityEventFilter{DeviceID: "d-1", Kind: steward.SecSuspectedClone}, []string{"third key"}},
		{tenantA, steward.SecurityEventFilter{Limit: 2}, []string{"unknown CA", "third key"}},
		{tenantB, steward.SecurityEventFilter{}, []string{"B's"}},
		{tenantB, steward.SecurityEventFilter{Kind: steward.SecSuspectedClone}, nil},
	}
	for _, tc := range tests {
		got, err := s.ListSecurityEvents(c, tc.tenant, tc.f)
		must(t, err)
		eqStrings(t, "security events "+tc.tenant, details(got), tc.want)
	}
	got, err := s.ListSecurityEvents(c, tenantA, steward.SecurityEventFilter{Limit: 1})
	must(t, err)
	want := evs[3]
	want.ID = got[0].ID
	want.At = stored(want.At)
	if len(got) != 1 || got[0] != want || got[0].ID == 0 {
		t.Fatalf("newest event = %+v, want %+v", got, want)
	}
	_, err = s.ListSecurityEvents(c, tenantA, steward.SecurityEventFilter{Limit: -1})
	wantCode(t, err, steward.CodeInvalid)
	wantCode(t, s.AddSecurityEvent(c, steward.SecurityEvent{TenantID: tenantA, Detail: "no kind", At: t0}), steward.CodeInvalid)
	all, err := s.ListSecurityEvents(c, tenantA, steward.SecurityEventFilter{})
	must(t, err)
	if len(all) != 4 {
		t.Fatalf("a refused event was written: %v", details(all))
	}
}
