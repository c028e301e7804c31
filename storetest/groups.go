package storetest

import (
	"reflect"
	"testing"

	"github.com/steward-iot/steward"
)

// group returns an enrollment group of tenant with every field set.
func group(tenant, id, name, fingerprint string) steward.EnrollmentGroup {
	return steward.EnrollmentGroup{
		ID:            id,
		TenantID:      tenant,
		Name:          name,
		CAPEM:         "-----BEGIN CERTIFICATE-----\nMIIB" + id + "\n-----END CERTIFICATE-----\n",
		CAFingerprint: fingerprint,
		CASubjectHash: "subject-1",
		Models:        []string{"gw-100", "gw-200"},
		Firmware:      map[string][]string{"gw-100": {"1.2.0", "1.3.0"}},
		Labels:        map[string]string{"fleet": "north"},
		Serials:       []string{"SN1", "SN2"},
		Strict:        true,
		CreatedAt:     t0,
	}
}

func sameGroup(t *testing.T, got, want steward.EnrollmentGroup) {
	t.Helper()
	want.CreatedAt = stored(want.CreatedAt)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("group differs:\n got %+v\nwant %+v", got, want)
	}
}

func testEnrollmentGroups(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	g1 := group(tenantA, "g1", "west", "fp1")
	g2 := group(tenantA, "g2", "east", "fp2")
	g2.Strict = false
	g2.Serials = []string{}
	g2.Models = []string{}
	g2.Firmware = map[string][]string{}
	g2.Labels = map[string]string{}
	must(t, s.CreateEnrollmentGroup(c, g1))
	must(t, s.CreateEnrollmentGroup(c, g2))

	got, err := s.GetEnrollmentGroup(c, tenantA, "g1")
	must(t, err)
	sameGroup(t, got, g1)

	list, err := s.ListEnrollmentGroups(c, tenantA)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListEnrollmentGroups = %+v, want 2 groups", list)
	}
	sameGroup(t, list[0], g2) // by name: east, west
	sameGroup(t, list[1], g1)

	must(t, s.DeleteEnrollmentGroup(c, tenantA, "g1"))
	_, err = s.GetEnrollmentGroup(c, tenantA, "g1")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteEnrollmentGroup(c, tenantA, "g1"), steward.CodeNotFound)

	// The CA of a deleted group can be registered again.
	must(t, s.CreateEnrollmentGroup(c, group(tenantB, "g3", "west", "fp1")))
}

func testEnrollmentGroupConflicts(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	must(t, s.CreateEnrollmentGroup(c, group(tenantA, "g1", "west", "fp1")))

	tests := []struct {
		name string
		g    steward.EnrollmentGroup
		code steward.Code
	}{
		{"same name in tenant", group(tenantA, "g2", "west", "fp2"), steward.CodeConflict},
		{"same CA in tenant", group(tenantA, "g2", "east", "fp1"), steward.CodeConflict},
		{"same CA in another tenant", group(tenantB, "g2", "east", "fp1"), steward.CodeConflict},
		{"same ID in another tenant", group(tenantB, "g1", "east", "fp2"), steward.CodeConflict},
		{"unknown tenant", group("no-such-tenant", "g2", "east", "fp2"), steward.CodeNotFound},
		{"no name", group(tenantA, "g2", "", "fp2"), steward.CodeInvalid},
		{"no fingerprint", group(tenantA, "g2", "east", ""), steward.CodeInvalid},
		{"no ID", group(tenantA, "", "east", "fp2"), steward.CodeInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := s.CreateEnrollmentGroup(c, tc.g)
			wantCode(t, err, tc.code)
			if steward.ErrorMessage(err) == "internal error" {
				t.Fatalf("error has no caller-safe message: %v", err)
			}
		})
	}
	// Nothing refused was written; the same name in another tenant is fine.
	for _, tenant := range []string{tenantA, tenantB} {
		list, err := s.ListEnrollmentGroups(c, tenant)
		must(t, err)
		if want := map[string]int{tenantA: 1, tenantB: 0}[tenant]; len(list) != want {
			t.Fatalf("tenant %s has %d groups, want %d: %+v", tenant, len(list), want, list)
		}
	}
	must(t, s.CreateEnrollmentGroup(c, group(tenantB, "g2", "west", "fp2")))
}

func testEnrollmentGroupIsolation(t *testing.T, s steward.Store) {
	c := ctx(t)
	setup(t, s)
	ga := group(tenantA, "ga", "west", "fpa")
	gb := group(tenantB, "gb", "west", "fpb")
	must(t, s.CreateEnrollmentGroup(c, ga))
	must(t, s.CreateEnrollmentGroup(c, gb))

	_, err := s.GetEnrollmentGroup(c, tenantB, "ga")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteEnrollmentGroup(c, tenantB, "ga"), steward.CodeNotFound)
	list, err := s.ListEnrollmentGroups(c, tenantB)
	must(t, err)
	if len(list) != 1 || list[0].ID != "gb" {
		t.Fatalf("tenant B lists %+v, want only its own group", list)
	}
	if _, err := s.GetEnrollmentGroup(c, tenantA, "ga"); err != nil {
		t.Fatalf("tenant B's delete removed tenant A's group: %v", err)
	}

	// The device plane looks a factory certificate's issuer up before it
	// knows the tenant: both groups share the subject.
	bySubject, err := s.EnrollmentGroupsBySubject(c, "subject-1")
	must(t, err)
	if len(bySubject) != 2 || bySubject[0].ID != "ga" || bySubject[1].ID != "gb" {
		t.Fatalf("EnrollmentGroupsBySubject = %+v, want ga, gb", bySubject)
	}
	sameGroup(t, bySubject[0], ga)
	none, err := s.EnrollmentGroupsBySubject(c, "subject-2")
	must(t, err)
	if len(none) != 0 {
		t.Fatalf("EnrollmentGroupsBySubject(unknown) = %+v", none)
	}
}
