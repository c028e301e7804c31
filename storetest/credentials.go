package storetest

import (
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// testCredentials covers revocation with a reason, the CRL listing, the
// expiry report, CA generations, CRL numbers and stored CRLs, revoked
// manufacturer CAs, and tenant isolation of all of them.
func testCredentials(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	gone := device(tenantA, "d-2")
	gone.State = steward.StateDecommissioned
	must(t, s.CreateDevice(c, gone))
	must(t, s.CreateDevice(c, device(tenantB, "d-3")))
	must(t, s.AddCertificate(c, cert(tenantA, "d-1", "0a", t0)))
	must(t, s.AddCertificate(c, cert(tenantA, "d-1", "0b", at(time.Hour))))
	must(t, s.AddCertificate(c, cert(tenantA, "d-2", "0c", t0)))
	must(t, s.AddCertificate(c, cert(tenantB, "d-3", "0d", t0)))

	// Revocation by serial, with a reason; bad input changes nothing.
	_, err := s.RevokeCertificate(c, steward.Revocation{TenantID: tenantA, Serial: "0a", Reason: "because", At: at(time.Minute)})
	wantCode(t, err, steward.CodeInvalid)
	_, err = s.RevokeCertificate(c, steward.Revocation{TenantID: tenantA, Serial: "0d", Reason: steward.ReasonKeyCompromise, At: at(time.Minute)})
	wantCode(t, err, steward.CodeNotFound) // tenant B's
	got, err := s.RevokeCertificate(c, steward.Revocation{TenantID: tenantA, Serial: "0a", Reason: steward.ReasonKeyCompromise, Actor: "token:t", At: at(time.Minute)})
	must(t, err)
	if got.RevokedAt == nil || !got.RevokedAt.Equal(stored(at(time.Minute))) {
		t.Fatalf("revoked certificate: %+v", got)
	}
	_, err = s.RevokeCertificate(c, steward.Revocation{TenantID: tenantA, Serial: "0a", Reason: steward.ReasonSuperseded, At: at(time.Hour)})
	wantCode(t, err, steward.CodeFailedPrecondition)
	if _, err := s.RevokeCertificates(c, tenantA, "d-2", at(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	revoked, err := s.ListRevokedCertificates(c, tenantA, at(time.Hour))
	must(t, err)
	if len(revoked) != 2 || revoked[0].Serial != "0a" || revoked[0].Reason != steward.ReasonKeyCompromise ||
		revoked[1].Serial != "0c" || revoked[1].Reason != steward.ReasonUnspecified {
		t.Fatalf("revoked: %+v", revoked)
	}
	if rb, err := s.ListRevokedCertificates(c, tenantB, at(time.Hour)); err != nil || len(rb) != 0 {
		t.Fatalf("tenant B sees revocations: %+v %v", rb, err)
	}
	// An expired certificate leaves the CRL.
	if later, err := s.ListRevokedCertificates(c, tenantA, at(91*24*time.Hour)); err != nil || len(later) != 0 {
		t.Fatalf("expired certificates still listed: %+v %v", later, err)
	}

	// The expiry report: unrevoked, devices not decommissioned.
	exp, err := s.ListExpiringCertificates(c, tenantA, t0, at(100*24*time.Hour), 0)
	must(t, err)
	if len(exp) != 1 || exp[0].Serial != "0b" {
		t.Fatalf("expiring: %+v", exp)
	}
	if exp, err := s.ListExpiringCertificates(c, tenantA, t0, at(80*24*time.Hour), 0); err != nil || len(exp) != 0 {
		t.Fatalf("expiring within 80 days: %+v %v", exp, err)
	}
	ids, err := s.ListGroupDevices(c, tenantA, "g-"+tenantA)
	must(t, err)
	eqStrings(t, "group devices", ids, []string{"d-1", "d-2"})

	// CA generations.
	until := at(time.Hour)
	must(t, s.AddCAGeneration(c, steward.CAGeneration{TenantID: tenantA, Generation: 0, KeyID: "aa", State: steward.CAPrevious, OverlapUntil: &until, CreatedAt: t0}))
	must(t, s.AddCAGeneration(c, steward.CAGeneration{TenantID: tenantA, Generation: 1, KeyID: "bb", State: steward.CAActive, ApprovalID: "apr", CreatedAt: t0}))
	wantCode(t, s.AddCAGeneration(c, steward.CAGeneration{TenantID: tenantA, Generation: 1, KeyID: "cc", State: steward.CAActive, CreatedAt: t0}), steward.CodeConflict)
	wantCode(t, s.AddCAGeneration(c, steward.CAGeneration{TenantID: tenantA, Generation: 2, KeyID: "cc", State: "dormant", CreatedAt: t0}), steward.CodeInvalid)
	retired := at(2 * time.Hour)
	must(t, s.UpdateCAGeneration(c, steward.CAGeneration{TenantID: tenantA, Generation: 0, KeyID: "aa", State: steward.CARetired, OverlapUntil: &until, RetiredAt: &retired}))
	wantCode(t, s.UpdateCAGeneration(c, steward.CAGeneration{TenantID: tenantB, Generation: 0, KeyID: "aa", State: steward.CARetired}), steward.CodeNotFound)
	gens, err := s.ListCAGenerations(c, tenantA)
	must(t, err)
	if len(gens) != 2 || gens[0].State != steward.CARetired || gens[0].RetiredAt == nil || !gens[0].RetiredAt.Equal(stored(retired)) ||
		gens[1].KeyID != "bb" || gens[1].ApprovalID != "apr" || gens[1].OverlapUntil != nil {
		t.Fatalf("generations: %+v", gens)
	}
	if gb, err := s.ListCAGenerations(c, tenantB); err != nil || len(gb) != 0 {
		t.Fatalf("tenant B generations: %+v %v", gb, err)
	}

	// CRL numbers count up per tenant; the stored CRL keeps the highest.
	for i, tenant := range []string{tenantA, tenantA, tenantB} {
		n, err := s.NextCRLNumber(c, tenant)
		must(t, err)
		if want := []int64{1, 2, 1}[i]; n != want {
			t.Fatalf("CRL number %d = %d, want %d", i, n, want)
		}
	}
	_, err = s.GetCRL(c, tenantA, "bb")
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.PutCRL(c, steward.CRL{TenantID: tenantA, IssuerKeyID: "bb", Number: 2, ThisUpdate: t0, NextUpdate: at(time.Hour), Digest: "d2", DER: []byte{2}}))
	must(t, s.PutCRL(c, steward.CRL{TenantID: tenantA, IssuerKeyID: "bb", Number: 1, ThisUpdate: t0, NextUpdate: at(time.Hour), Digest: "d1", DER: []byte{1}}))
	wantCode(t, s.PutCRL(c, steward.CRL{TenantID: tenantA, IssuerKeyID: "bb", Number: 3}), steward.CodeInvalid)
	crl, err := s.GetCRL(c, tenantA, "bb")
	must(t, err)
	if crl.Number != 2 || crl.Digest != "d2" || string(crl.DER) != "\x02" || !crl.NextUpdate.Equal(stored(at(time.Hour))) {
		t.Fatalf("stored CRL: %+v", crl)
	}
	_, err = s.GetCRL(c, tenantB, "bb")
	wantCode(t, err, steward.CodeNotFound)

	// Revoked manufacturer CAs.
	must(t, s.RevokeManufacturerCA(c, steward.RevokedCA{TenantID: tenantA, Fingerprint: "ff", GroupID: "g-1", Reason: "leaked", Actor: "token:t", At: t0}))
	must(t, s.RevokeManufacturerCA(c, steward.RevokedCA{TenantID: tenantA, Fingerprint: "ff", GroupID: "g-1", Reason: "again", At: at(time.Hour)}))
	rc, err := s.GetRevokedCA(c, tenantA, "ff")
	must(t, err)
	if rc.Reason != "leaked" || rc.GroupID != "g-1" || !rc.At.Equal(stored(t0)) {
		t.Fatalf("revoked CA: %+v", rc)
	}
	_, err = s.GetRevokedCA(c, tenantB, "ff")
	wantCode(t, err, steward.CodeNotFound)
}

// testDecommissions covers decommissioning records, data erasure and
// anonymisation.
func testDecommissions(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateDevice(c, device(tenantA, "d-1")))
	must(t, s.CreateDevice(c, device(tenantA, "d-2")))
	must(t, s.WriteSamples(c, []steward.Sample{{TenantID: tenantA, DeviceID: "d-1", Metric: "cpu", Value: 1, At: t0},
		{TenantID: tenantA, DeviceID: "d-2", Metric: "cpu", Value: 2, At: t0}}))
	must(t, s.AddPresenceEvent(c, steward.PresenceEvent{TenantID: tenantA, DeviceID: "d-1", Online: true, At: t0, RemoteAddr: "192.0.2.7:1"}))

	d := steward.Decommission{ID: "dc-1", TenantID: tenantA, DeviceID: "d-1", Reason: "end of life", Policy: steward.DataKeep,
		State: steward.DecommissionRunning, RequestedBy: "token:t", CreatedAt: t0, UpdatedAt: t0}
	bad := d
	bad.Policy = "shred"
	wantCode(t, s.CreateDecommission(c, bad), steward.CodeInvalid)
	bad = d
	bad.DeviceID = "d-404"
	wantCode(t, s.CreateDecommission(c, bad), steward.CodeNotFound)
	must(t, s.CreateDecommission(c, d))
	again := d
	again.ID = "dc-2"
	wantCode(t, s.CreateDecommission(c, again), steward.CodeConflict) // one at a time per device

	retain, done := at(24*time.Hour), at(time.Minute)
	d.State, d.RetainUntil, d.FinishedAt, d.UpdatedAt = steward.DecommissionCompleted, &retain, &done, done
	d.Steps = []steward.DecommissionStep{{Name: "wipe", Outcome: steward.StepOK, Detail: "acknowledged", At: t0}}
	d.Certificate = "-----BEGIN PKCS7-----\n…"
	must(t, s.UpdateDecommission(c, d))
	got, err := s.GetDecommission(c, tenantA, "dc-1")
	must(t, err)
	if got.State != steward.DecommissionCompleted || len(got.Steps) != 1 || got.Steps[0].Name != "wipe" || got.Certificate != d.Certificate ||
		got.RetainUntil == nil || !got.RetainUntil.Equal(stored(retain)) || got.FinishedAt == nil {
		t.Fatalf("decommissioning: %+v", got)
	}
	_, err = s.GetDecommission(c, tenantB, "dc-1")
	wantCode(t, err, steward.CodeNotFound)
	list, err := s.ListDecommissions(c, tenantA, "d-1")
	must(t, err)
	if len(list) != 1 {
		t.Fatalf("list: %+v", list)
	}
	if lb, err := s.ListDecommissions(c, tenantB, ""); err != nil || len(lb) != 0 {
		t.Fatalf("tenant B list: %+v %v", lb, err)
	}

	// Retention: due only once its time has passed, and gone once purged.
	if due, err := s.ListRetainedDecommissions(c, at(time.Hour), 0); err != nil || len(due) != 0 {
		t.Fatalf("due early: %+v %v", due, err)
	}
	due, err := s.ListRetainedDecommissions(c, at(48*time.Hour), 0)
	must(t, err)
	if len(due) != 1 || due[0].ID != "dc-1" {
		t.Fatalf("due: %+v", due)
	}
	must(t, s.AnonymiseDeviceData(c, tenantA, "d-1"))
	pe, err := s.ListPresenceEvents(c, tenantA, "d-1", time.Time{}, time.Time{}, 0)
	must(t, err)
	if len(pe) != 1 || pe[0].RemoteAddr != "" {
		t.Fatalf("presence after anonymisation: %+v", pe)
	}
	_, err = s.EraseDeviceData(c, tenantB, "d-1")
	wantCode(t, err, steward.CodeNotFound)
	n, err := s.EraseDeviceData(c, tenantA, "d-1")
	must(t, err)
	if n < 3 { // a sample, its latest value, a presence event
		t.Fatalf("erased %d rows", n)
	}
	if left, err := s.LatestSamples(c, tenantA, "d-1"); err != nil || len(left) != 0 {
		t.Fatalf("samples left: %+v %v", left, err)
	}
	if other, err := s.LatestSamples(c, tenantA, "d-2"); err != nil || len(other) != 1 {
		t.Fatalf("another device's samples: %+v %v", other, err)
	}
	if due, err := s.ListRetainedDecommissions(c, at(48*time.Hour), 0); err != nil || len(due) != 0 {
		t.Fatalf("purged record still due: %+v %v", due, err)
	}

	// A device with a revocation reason and a decommissioning record can
	// still be erased whole (the privacy erasure finds the rows by device).
	must(t, s.AddCertificate(c, cert(tenantA, "d-2", "2a", t0)))
	_, err = s.RevokeCertificate(c, steward.Revocation{TenantID: tenantA, Serial: "2a", Reason: steward.ReasonCessationOfOperation, At: at(time.Minute)})
	must(t, err)
	must(t, s.CreateDecommission(c, steward.Decommission{ID: "dc-3", TenantID: tenantA, DeviceID: "d-2", Reason: "gone", Policy: steward.DataDelete,
		State: steward.DecommissionCompleted, RequestedBy: "token:t", CreatedAt: t0, UpdatedAt: t0}))
	if _, err := s.EraseDevice(c, steward.DeviceTombstone{TenantID: tenantA, DeviceID: "d-2", ErasedAt: at(time.Hour), ErasedBy: "token:t"}); err != nil {
		t.Fatalf("erase a decommissioned device: %v", err)
	}
	if revoked, err := s.ListRevokedCertificates(c, tenantA, t0); err != nil || len(revoked) != 0 {
		t.Fatalf("revocations of an erased device: %+v %v", revoked, err)
	}
}
