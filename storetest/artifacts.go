package storetest

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

// artifact returns an artifact of tenant with every field set.
func artifact(tenant, id, name, version string) steward.Artifact {
	return steward.Artifact{
		ID: id, TenantID: tenant, Name: name, Version: version, Type: steward.ArtifactFirmware,
		SHA256:              strings.Repeat("ab", 32),
		Size:                1234,
		CompatibleModels:    []string{"gw-100", "gw-200"},
		MinInstalledVersion: "1.0.0",
		ReleaseNotes:        "fixes the watchdog",
		CreatedBy:           "token:t1",
		CreatedAt:           t0,
	}
}

func sameArtifact(t *testing.T, got, want steward.Artifact) {
	t.Helper()
	want.CreatedAt = stored(want.CreatedAt)
	if want.CompatibleModels == nil {
		want.CompatibleModels = []string{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("artifact differs:\n got %+v\nwant %+v", got, want)
	}
}

func testArtifacts(t *testing.T, s steward.Store) {
	setup(t, s)
	a := artifact(tenantA, "art-1", "gw-firmware", "1.2.0")
	must(t, s.CreateArtifact(ctx(t), a))
	got, err := s.GetArtifact(ctx(t), tenantA, a.ID)
	must(t, err)
	sameArtifact(t, got, a)
	got, err = s.ArtifactByTarget(ctx(t), tenantA, "gw-firmware", "1.2.0")
	must(t, err)
	sameArtifact(t, got, a)

	// No models is any model, and comes back as an empty list.
	b := artifact(tenantA, "art-2", "agent", "2.0.0")
	b.Type, b.CompatibleModels, b.MinInstalledVersion, b.ReleaseNotes = steward.ArtifactApplication, nil, "", ""
	b.SHA256 = strings.Repeat("01", 32)
	must(t, s.CreateArtifact(ctx(t), b))
	got, err = s.GetArtifact(ctx(t), tenantA, b.ID)
	must(t, err)
	sameArtifact(t, got, b)

	// The same name and version again is a conflict; the same content under
	// another version is fine (the blob is shared).
	dup := artifact(tenantA, "art-3", "gw-firmware", "1.2.0")
	wantCode(t, s.CreateArtifact(ctx(t), dup), steward.CodeConflict)
	dup.Version = "1.2.1"
	must(t, s.CreateArtifact(ctx(t), dup))
	n, err := s.CountArtifactsBySHA256(ctx(t), a.SHA256)
	must(t, err)
	if n != 2 {
		t.Fatalf("CountArtifactsBySHA256 = %d, want 2", n)
	}

	all, err := s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{})
	must(t, err)
	eqStrings(t, "all artifacts", artifactIDs(all), []string{"art-1", "art-2", "art-3"})
	fw, err := s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{Type: steward.ArtifactFirmware})
	must(t, err)
	eqStrings(t, "firmware", artifactIDs(fw), []string{"art-1", "art-3"})
	named, err := s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{Name: "agent"})
	must(t, err)
	eqStrings(t, "named", artifactIDs(named), []string{"art-2"})
	page, err := s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{After: "art-1", Limit: 1})
	must(t, err)
	eqStrings(t, "page", artifactIDs(page), []string{"art-2"})

	must(t, s.DeleteArtifact(ctx(t), tenantA, "art-3"))
	wantCode(t, s.DeleteArtifact(ctx(t), tenantA, "art-3"), steward.CodeNotFound)
	_, err = s.GetArtifact(ctx(t), tenantA, "art-3")
	wantCode(t, err, steward.CodeNotFound)
	n, err = s.CountArtifactsBySHA256(ctx(t), a.SHA256)
	must(t, err)
	if n != 1 {
		t.Fatalf("CountArtifactsBySHA256 after delete = %d, want 1", n)
	}
}

func artifactIDs(as []steward.Artifact) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.ID
	}
	return out
}

func testArtifactsInvalid(t *testing.T, s steward.Store) {
	setup(t, s)
	cases := []struct {
		name   string
		change func(a *steward.Artifact)
		code   steward.Code
	}{
		{"no name", func(a *steward.Artifact) { a.Name = "" }, steward.CodeInvalid},
		{"slash in name", func(a *steward.Artifact) { a.Name = "a/b" }, steward.CodeInvalid},
		{"dot-dot version", func(a *steward.Artifact) { a.Version = ".." }, steward.CodeInvalid},
		{"unknown type", func(a *steward.Artifact) { a.Type = "kernel" }, steward.CodeInvalid},
		{"bad digest", func(a *steward.Artifact) { a.SHA256 = "xyz" }, steward.CodeInvalid},
		{"upper-case digest", func(a *steward.Artifact) { a.SHA256 = strings.Repeat("AB", 32) }, steward.CodeInvalid},
		{"negative size", func(a *steward.Artifact) { a.Size = -1 }, steward.CodeInvalid},
		{"no time", func(a *steward.Artifact) { a.CreatedAt = time.Time{} }, steward.CodeInvalid},
		{"long notes", func(a *steward.Artifact) { a.ReleaseNotes = strings.Repeat("x", steward.MaxReleaseNotesLen+1) }, steward.CodeInvalid},
		{"unknown tenant", func(a *steward.Artifact) { a.TenantID = "nobody" }, steward.CodeNotFound},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := artifact(tenantA, "art-bad", "fw", "1.0")
			tc.change(&a)
			wantCode(t, s.CreateArtifact(ctx(t), a), tc.code)
		})
	}
	all, err := s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{})
	must(t, err)
	if len(all) != 0 {
		t.Fatalf("refused artifacts were stored: %v", artifactIDs(all))
	}
	_, err = s.ListArtifacts(ctx(t), tenantA, steward.ArtifactFilter{Limit: -1})
	wantCode(t, err, steward.CodeInvalid)
}

func testArtifactsIsolation(t *testing.T, s steward.Store) {
	setup(t, s)
	must(t, s.CreateArtifact(ctx(t), artifact(tenantA, "art-a", "fw", "1.0")))
	// Tenant B may use the same name and version.
	must(t, s.CreateArtifact(ctx(t), artifact(tenantB, "art-b", "fw", "1.0")))
	_, err := s.GetArtifact(ctx(t), tenantB, "art-a")
	wantCode(t, err, steward.CodeNotFound)
	wantCode(t, s.DeleteArtifact(ctx(t), tenantB, "art-a"), steward.CodeNotFound)
	list, err := s.ListArtifacts(ctx(t), tenantB, steward.ArtifactFilter{})
	must(t, err)
	eqStrings(t, "tenant B", artifactIDs(list), []string{"art-b"})
	got, err := s.ArtifactByTarget(ctx(t), tenantB, "fw", "1.0")
	must(t, err)
	if got.ID != "art-b" {
		t.Fatalf("tenant B's fw 1.0 is %s", got.ID)
	}
}

func testArtifactGrants(t *testing.T, s steward.Store) {
	setup(t, s)
	createDevices(t, s, device(tenantA, "d-1"), device(tenantA, "d-2"), device(tenantB, "d-b"))
	a := artifact(tenantA, "art-1", "fw", "1.0")
	must(t, s.CreateArtifact(ctx(t), a))
	must(t, s.CreateArtifact(ctx(t), artifact(tenantB, "art-b", "fw", "1.0")))

	_, err := s.GrantedArtifact(ctx(t), tenantA, "d-1", a.SHA256)
	wantCode(t, err, steward.CodeNotFound)
	must(t, s.GrantArtifact(ctx(t), tenantA, "d-1", "art-1"))
	must(t, s.GrantArtifact(ctx(t), tenantA, "d-1", "art-1")) // twice is fine
	got, err := s.GrantedArtifact(ctx(t), tenantA, "d-1", a.SHA256)
	must(t, err)
	if got.ID != "art-1" {
		t.Fatalf("granted artifact is %s", got.ID)
	}
	// Another device of the tenant has no grant.
	_, err = s.GrantedArtifact(ctx(t), tenantA, "d-2", a.SHA256)
	wantCode(t, err, steward.CodeNotFound)
	ids, err := s.ListArtifactGrants(ctx(t), tenantA, "art-1")
	must(t, err)
	eqStrings(t, "grants", ids, []string{"d-1"})

	// Grants never cross tenants: not B's device, not B's artifact, and B
	// cannot see A's grant.
	wantCode(t, s.GrantArtifact(ctx(t), tenantA, "d-b", "art-1"), steward.CodeNotFound)
	wantCode(t, s.GrantArtifact(ctx(t), tenantA, "d-1", "art-b"), steward.CodeNotFound)
	wantCode(t, s.GrantArtifact(ctx(t), tenantB, "d-1", "art-1"), steward.CodeNotFound)
	wantCode(t, s.GrantArtifact(ctx(t), tenantA, "d-1", "nope"), steward.CodeNotFound)
	_, err = s.GrantedArtifact(ctx(t), tenantB, "d-1", a.SHA256)
	wantCode(t, err, steward.CodeNotFound)
	ids, err = s.ListArtifactGrants(ctx(t), tenantA, "art-1")
	must(t, err)
	eqStrings(t, "grants after refused ones", ids, []string{"d-1"})

	must(t, s.RevokeArtifactGrant(ctx(t), tenantA, "d-1", "art-1"))
	must(t, s.RevokeArtifactGrant(ctx(t), tenantA, "d-1", "art-1"))
	_, err = s.GrantedArtifact(ctx(t), tenantA, "d-1", a.SHA256)
	wantCode(t, err, steward.CodeNotFound)

	// Deleting the artifact drops its grants.
	must(t, s.GrantArtifact(ctx(t), tenantA, "d-2", "art-1"))
	must(t, s.DeleteArtifact(ctx(t), tenantA, "art-1"))
	_, err = s.GrantedArtifact(ctx(t), tenantA, "d-2", a.SHA256)
	wantCode(t, err, steward.CodeNotFound)
}

func testUploads(t *testing.T, s steward.Store) {
	setup(t, s)
	meta := artifact(tenantA, "", "fw", "2.0")
	meta.SHA256, meta.Size, meta.CreatedAt = "", 0, time.Time{}
	u := steward.Upload{ID: "up-1", TenantID: tenantA, Artifact: meta, Length: 100, SHA256: strings.Repeat("cd", 32),
		CreatedBy: "token:t1", CreatedAt: t0, ExpiresAt: at(time.Hour)}
	must(t, s.CreateUpload(ctx(t), u))
	wantCode(t, s.CreateUpload(ctx(t), u), steward.CodeConflict)
	got, err := s.GetUpload(ctx(t), tenantA, "up-1")
	must(t, err)
	want := u
	want.CreatedAt, want.ExpiresAt = stored(u.CreatedAt), stored(u.ExpiresAt)
	want.Artifact.CreatedAt = time.Time{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("upload differs:\n got %+v\nwant %+v", got, want)
	}
	_, err = s.GetUpload(ctx(t), tenantB, "up-1")
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.AdvanceUpload(ctx(t), tenantA, "up-1", 0, 40))
	// A second writer that read offset 0 loses.
	wantCode(t, s.AdvanceUpload(ctx(t), tenantA, "up-1", 0, 30), steward.CodeConflict)
	wantCode(t, s.AdvanceUpload(ctx(t), tenantA, "up-1", 40, 101), steward.CodeInvalid)
	wantCode(t, s.AdvanceUpload(ctx(t), tenantA, "up-1", 40, 10), steward.CodeInvalid)
	wantCode(t, s.AdvanceUpload(ctx(t), tenantB, "up-1", 40, 50), steward.CodeNotFound)
	must(t, s.AdvanceUpload(ctx(t), tenantA, "up-1", 40, 100))
	got, err = s.GetUpload(ctx(t), tenantA, "up-1")
	must(t, err)
	if got.Offset != 100 {
		t.Fatalf("offset = %d, want 100", got.Offset)
	}

	exp, err := s.ExpiredUploads(ctx(t), at(2*time.Hour), 10)
	must(t, err)
	if len(exp) != 1 || exp[0].ID != "up-1" {
		t.Fatalf("expired uploads = %+v", exp)
	}
	exp, err = s.ExpiredUploads(ctx(t), at(time.Minute), 10)
	must(t, err)
	if len(exp) != 0 {
		t.Fatalf("uploads expired too early: %+v", exp)
	}

	bad := u
	bad.ID, bad.Artifact.Type = "up-2", "kernel"
	wantCode(t, s.CreateUpload(ctx(t), bad), steward.CodeInvalid)
	bad = u
	bad.ID, bad.Length = "up-3", -1
	wantCode(t, s.CreateUpload(ctx(t), bad), steward.CodeInvalid)
	_, err = s.GetUpload(ctx(t), tenantA, "up-2")
	wantCode(t, err, steward.CodeNotFound)

	must(t, s.DeleteUpload(ctx(t), tenantA, "up-1"))
	wantCode(t, s.DeleteUpload(ctx(t), tenantA, "up-1"), steward.CodeNotFound)
}

func testTUFMetadata(t *testing.T, s steward.Store) {
	setup(t, s)
	_, err := s.GetTUFMetadata(ctx(t), tenantA, steward.TUFRoot, 0)
	wantCode(t, err, steward.CodeNotFound)
	for v := int64(1); v <= 3; v++ {
		must(t, s.PutTUFMetadata(ctx(t), steward.TUFMetadata{TenantID: tenantA, Role: steward.TUFTimestamp, Version: v,
			Body: []byte{'{', byte('0' + v), '}'}, Expires: at(time.Duration(v) * time.Hour), CreatedAt: t0}))
	}
	// Two nodes signing version 3 at once: the second is refused.
	wantCode(t, s.PutTUFMetadata(ctx(t), steward.TUFMetadata{TenantID: tenantA, Role: steward.TUFTimestamp, Version: 3,
		Body: []byte("{}"), Expires: at(time.Hour), CreatedAt: t0}), steward.CodeConflict)
	latest, err := s.GetTUFMetadata(ctx(t), tenantA, steward.TUFTimestamp, 0)
	must(t, err)
	if latest.Version != 3 || !bytes.Equal(latest.Body, []byte("{3}")) || !latest.Expires.Equal(stored(at(3*time.Hour))) {
		t.Fatalf("latest = %+v %s", latest, latest.Body)
	}
	v2, err := s.GetTUFMetadata(ctx(t), tenantA, steward.TUFTimestamp, 2)
	must(t, err)
	if !bytes.Equal(v2.Body, []byte("{2}")) {
		t.Fatalf("version 2 = %s", v2.Body)
	}
	_, err = s.GetTUFMetadata(ctx(t), tenantA, steward.TUFTimestamp, 9)
	wantCode(t, err, steward.CodeNotFound)
	_, err = s.GetTUFMetadata(ctx(t), tenantB, steward.TUFTimestamp, 0)
	wantCode(t, err, steward.CodeNotFound)

	for _, bad := range []steward.TUFMetadata{
		{TenantID: tenantA, Role: "mirror", Version: 1, Body: []byte("{}"), Expires: t0, CreatedAt: t0},
		{TenantID: tenantA, Role: steward.TUFRoot, Version: 0, Body: []byte("{}"), Expires: t0, CreatedAt: t0},
		{TenantID: tenantA, Role: steward.TUFRoot, Version: 1, Expires: t0, CreatedAt: t0},
		{TenantID: tenantA, Role: steward.TUFRoot, Version: 1, Body: []byte("{}"), CreatedAt: t0},
	} {
		wantCode(t, s.PutTUFMetadata(ctx(t), bad), steward.CodeInvalid)
	}
	wantCode(t, s.PutTUFMetadata(ctx(t), steward.TUFMetadata{TenantID: "nobody", Role: steward.TUFRoot, Version: 1,
		Body: []byte("{}"), Expires: t0, CreatedAt: t0}), steward.CodeNotFound)
	_, err = s.GetTUFMetadata(ctx(t), tenantA, steward.TUFRoot, 0)
	wantCode(t, err, steward.CodeNotFound)
}
