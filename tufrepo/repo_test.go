package tufrepo_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/updatetest"
	"github.com/steward-iot/steward/tufrepo"
)

const tenant = updatetest.Tenant

func wantCode(t *testing.T, err error, code steward.Code) {
	t.Helper()
	if got := steward.ErrorCode(err); got != code {
		t.Fatalf("got %v (%s), want %s", err, got, code)
	}
}

func version(t *testing.T, env *updatetest.Env, role string) int64 {
	t.Helper()
	m, err := env.Store.GetTUFMetadata(t.Context(), tenant, role, 0)
	if err != nil {
		t.Fatal(err)
	}
	return m.Version
}

func targets(t *testing.T, env *updatetest.Env) *metadata.Metadata[metadata.TargetsType] {
	t.Helper()
	b, err := env.TUF.Targets(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	m, err := metadata.Targets().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRepositoryOnline(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	root := env.Root()
	if root.Signed.Version != 1 || !root.Signed.ConsistentSnapshot {
		t.Fatalf("root v%d consistent=%v", root.Signed.Version, root.Signed.ConsistentSnapshot)
	}
	for _, role := range []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP} {
		if n := len(root.Signed.Roles[role].KeyIDs); n != 1 {
			t.Fatalf("role %s has %d keys", role, n)
		}
	}
	if err := root.VerifyDelegate(metadata.ROOT, root); err != nil {
		t.Fatalf("root is not self-signed: %v", err)
	}
	// Every role expires as configured (by the injected clock).
	if want := env.Clock.Now().Add(365 * 24 * time.Hour); !root.Signed.Expires.Equal(want) {
		t.Fatalf("root expires %s, want %s", root.Signed.Expires, want)
	}

	a := env.Upload("gw-firmware", "1.0.0", []byte("image one"))
	tg := targets(t, env)
	tf, ok := tg.Signed.Targets["gw-firmware/1.0.0"]
	if !ok || tf.Length != a.Size {
		t.Fatalf("target not published: %+v", tg.Signed.Targets)
	}
	if err := root.VerifyDelegate(metadata.TARGETS, tg); err != nil {
		t.Fatalf("targets not signed by the targets key: %v", err)
	}
	// The timestamp names the snapshot that names these targets.
	ts, err := metadata.Timestamp().FromBytes(mustMeta(t, env, steward.TUFTimestamp, 0))
	if err != nil {
		t.Fatal(err)
	}
	snapV := ts.Signed.Meta["snapshot.json"].Version
	snap, err := metadata.Snapshot().FromBytes(mustMeta(t, env, steward.TUFSnapshot, snapV))
	if err != nil {
		t.Fatal(err)
	}
	if snap.Signed.Meta["targets.json"].Version != tg.Signed.Version {
		t.Fatalf("snapshot names targets v%d, newest is v%d", snap.Signed.Meta["targets.json"].Version, tg.Signed.Version)
	}

	if err := env.Artifacts.Delete(t.Context(), tenant, a.ID, "token:test"); err != nil {
		t.Fatal(err)
	}
	if _, ok := targets(t, env).Signed.Targets["gw-firmware/1.0.0"]; ok {
		t.Fatal("a deleted artifact is still a target")
	}
}

func mustMeta(t *testing.T, env *updatetest.Env, role string, v int64) []byte {
	t.Helper()
	b, err := env.TUF.Metadata(t.Context(), tenant, role, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestOfflineRefusesServerPublish: once the targets role is the release
// key, the server cannot publish on its own, and accepts only targets the
// release key signed over uploaded artifacts.
func TestOfflineRefusesServerPublish(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	serverTargetsKey := env.ServerKey(env.Root().Signed.Roles[metadata.TARGETS].KeyIDs[0])
	pub, release, _ := ed25519.GenerateKey(rand.Reader)
	if err := env.TUF.RotateRoot(t.Context(), tenant, tufrepo.TargetsKey{Release: pub}); err != nil {
		t.Fatal(err)
	}
	if off, err := env.TUF.Offline(t.Context(), tenant); err != nil || !off {
		t.Fatalf("Offline = %v, %v", off, err)
	}
	before := version(t, env, steward.TUFTargets)

	// The upload is stored but not published.
	p, err := env.Artifacts.Upload(t.Context(), steward.Artifact{TenantID: tenant, Name: "fw", Version: "2.0", Type: steward.ArtifactFirmware},
		bytes.NewReader([]byte("release image")), "", "token:test")
	if err != nil {
		t.Fatal(err)
	}
	if p.Published {
		t.Fatal("an upload in offline mode says it is published")
	}
	wantCode(t, env.TUF.AddTarget(t.Context(), p.Artifact), steward.CodeFailedPrecondition)

	cur, err := env.TUF.Targets(t.Context(), tenant)
	if err != nil {
		t.Fatal(err)
	}
	exp := env.Clock.Now().Add(30 * 24 * time.Hour)
	other := p.Artifact
	other.Version, other.SHA256 = "6.6.6", "aa"+p.SHA256[2:]
	longer := p.Artifact
	longer.Size++
	cases := []struct {
		name string
		make func() []byte
		code steward.Code
	}{
		{"signed by the server's own (revoked) targets key", func() []byte { return sign(t, cur, p.Artifact, serverTargetsKey, exp) }, steward.CodeInvalid},
		{"not an uploaded artifact", func() []byte { return sign(t, cur, other, release, exp) }, steward.CodeInvalid},
		{"wrong length", func() []byte { return sign(t, cur, longer, release, exp) }, steward.CodeInvalid},
		{"already expired", func() []byte { return sign(t, cur, p.Artifact, release, env.Clock.Now().Add(-time.Minute)) }, steward.CodeInvalid},
		{"not JSON", func() []byte { return []byte("{{") }, steward.CodeInvalid},
		{"a version skipped", func() []byte {
			b := sign(t, cur, p.Artifact, release, exp)
			return sign(t, b, p.Artifact, release, exp)
		}, steward.CodeFailedPrecondition},
	}
	for _, tc := range cases {
		err := env.TUF.PublishTargets(t.Context(), tenant, tc.make())
		if steward.ErrorCode(err) != tc.code {
			t.Fatalf("%s: got %v, want %s", tc.name, err, tc.code)
		}
		t.Logf("%s: refused: %v", tc.name, err)
		if v := version(t, env, steward.TUFTargets); v != before {
			t.Fatalf("%s: targets moved to v%d", tc.name, v)
		}
	}
	// Signed by the release key: published.
	if err := env.TUF.PublishTargets(t.Context(), tenant, sign(t, cur, p.Artifact, release, exp)); err != nil {
		t.Fatal(err)
	}
	if _, ok := targets(t, env).Signed.Targets["fw/2.0"]; !ok {
		t.Fatal("release-signed target not published")
	}
	// A signed target cannot be deleted by the server alone.
	wantCode(t, env.Artifacts.Delete(t.Context(), tenant, p.ID, "token:test"), steward.CodeFailedPrecondition)
	if _, err := env.Store.GetArtifact(t.Context(), tenant, p.ID); err != nil {
		t.Fatalf("a refused delete removed the artifact: %v", err)
	}
	if _, err := env.Blobs.Stat(t.Context(), p.SHA256); err != nil {
		t.Fatalf("a refused delete removed the content: %v", err)
	}
	// Back online: the server signs with a new key of its own.
	if err := env.TUF.RotateRoot(t.Context(), tenant, tufrepo.TargetsKey{Server: true}); err != nil {
		t.Fatal(err)
	}
	if off, _ := env.TUF.Offline(t.Context(), tenant); off {
		t.Fatal("still offline after going back online")
	}
	env.Upload("fw", "2.1", []byte("online again"))
	if _, ok := targets(t, env).Signed.Targets["fw/2.1"]; !ok {
		t.Fatal("online upload not published")
	}
}

func sign(t *testing.T, cur []byte, a steward.Artifact, key ed25519.PrivateKey, exp time.Time) []byte {
	t.Helper()
	b, err := tufrepo.SignTargets(cur, []steward.Artifact{a}, nil, key, exp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRefreshJob: the re-signing job re-signs the timestamp when half its
// validity is gone, the snapshot likewise, and nothing that is fresh.
func TestRefreshJob(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	env.Upload("fw", "1.0", []byte("x"))
	ts0, snap0, tg0 := version(t, env, steward.TUFTimestamp), version(t, env, steward.TUFSnapshot), version(t, env, steward.TUFTargets)
	run := func() {
		t.Helper()
		if err := env.TUF.RunOnce(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	run()
	if version(t, env, steward.TUFTimestamp) != ts0 {
		t.Fatal("a fresh timestamp was re-signed")
	}
	env.Clock.Add(13 * time.Hour)
	run()
	if version(t, env, steward.TUFTimestamp) != ts0+1 || version(t, env, steward.TUFSnapshot) != snap0 {
		t.Fatal("the timestamp was not re-signed alone after 13 hours")
	}
	m, _ := env.Store.GetTUFMetadata(t.Context(), tenant, steward.TUFTimestamp, 0)
	if want := env.Clock.Now().Add(24 * time.Hour); !m.Expires.Equal(want) {
		t.Fatalf("new timestamp expires %s, want %s", m.Expires, want)
	}
	env.Clock.Add(4 * 24 * time.Hour)
	run()
	if version(t, env, steward.TUFSnapshot) != snap0+1 || version(t, env, steward.TUFTargets) != tg0 {
		t.Fatal("the snapshot was not re-signed (alone) after 4 days")
	}
	env.Clock.Add(50 * 24 * time.Hour)
	run()
	if version(t, env, steward.TUFTargets) != tg0+1 {
		t.Fatal("online targets were not re-signed past half their validity")
	}
	env.Clock.Add(340 * 24 * time.Hour)
	run()
	if v := env.Root().Signed.Version; v != 2 {
		t.Fatalf("root near expiry not re-signed: v%d", v)
	}
}

// TestTwoNodes: two repositories over one store (two nodes of a cluster)
// publish at once; every target ends up in the newest targets, and the
// timestamp, snapshot and targets chain holds.
func TestTwoNodes(t *testing.T) {
	t.Parallel()
	env := updatetest.New(t)
	if err := env.TUF.Init(t.Context(), tenant); err != nil {
		t.Fatal(err)
	}
	other, err := tufrepo.New(tufrepo.Config{Store: env.Store, MasterKey: env.MasterKey, Clock: env.Clock})
	if err != nil {
		t.Fatal(err)
	}
	const n = 12
	var arts []steward.Artifact
	for i := range n {
		// Recorded but not yet published: AddTarget below is the only publisher.
		sum := sha256.Sum256([]byte{byte(i)})
		a := steward.Artifact{ID: "art-" + strconv.Itoa(i), TenantID: tenant, Name: "fw", Version: "1." + strconv.Itoa(i), Type: steward.ArtifactFirmware,
			SHA256: hex.EncodeToString(sum[:]), Size: 1, CreatedAt: env.Clock.Now()}
		if err := env.Store.CreateArtifact(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		arts = append(arts, a)
	}
	errs := make(chan error, n)
	for i, a := range arts {
		repo := env.TUF
		if i%2 == 1 {
			repo = other
		}
		go func() { errs <- repo.AddTarget(t.Context(), a) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	tg := targets(t, env)
	for _, a := range arts {
		if _, ok := tg.Signed.Targets[a.TargetPath()]; !ok {
			t.Fatalf("target %s lost", a.TargetPath())
		}
	}
	ts, err := metadata.Timestamp().FromBytes(mustMeta(t, env, steward.TUFTimestamp, 0))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := metadata.Snapshot().FromBytes(mustMeta(t, env, steward.TUFSnapshot, ts.Signed.Meta["snapshot.json"].Version))
	if err != nil {
		t.Fatal(err)
	}
	if v := snap.Signed.Meta["targets.json"].Version; v != tg.Signed.Version {
		t.Fatalf("the newest timestamp leads to targets v%d, the newest is v%d", v, tg.Signed.Version)
	}
}
