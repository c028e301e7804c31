package tufrepo

import (
	"crypto/ed25519"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
)

// SignTargets makes the next version of a repository's targets metadata
// outside the server, with the release key: it starts from current (the
// targets metadata the server publishes now), adds the artifacts in add,
// removes the target paths in remove, sets the expiry, and signs with key
// alone. `steward artifacts sign` runs it on the release engineer's
// machine; the server's PublishTargets then checks and publishes it.
func SignTargets(current []byte, add []steward.Artifact, remove []string, key ed25519.PrivateKey, expires time.Time) ([]byte, error) {
	cur, err := metadata.Targets().FromBytes(current)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "the current targets metadata does not parse")
	}
	next, err := cloneTargets(cur)
	if err != nil {
		return nil, err
	}
	for _, a := range add {
		tf, err := TargetFile(a)
		if err != nil {
			return nil, err
		}
		next.Signed.Targets[tf.Path] = tf
	}
	for _, p := range remove {
		delete(next.Signed.Targets, p)
	}
	next.Signed.Version = cur.Signed.Version + 1
	next.Signed.Expires = expires.UTC().Truncate(time.Second)
	s, err := signer(key)
	if err != nil {
		return nil, err
	}
	next.ClearSignatures()
	if _, err := next.Sign(s); err != nil {
		return nil, err
	}
	return next.ToBytes(true)
}
