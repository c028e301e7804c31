package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id parameters of new password hashes. Each
// hash records its own parameters (the PHC string), so changing them
// affects only passwords set afterwards.
type Argon2Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes
	Threads uint8
}

// DefaultArgon2 are the parameters RFC 9106 (section 4) recommends for
// memory-constrained settings: 64 MiB, 3 passes, here with 2 lanes (the
// management plane shares its cores with the device plane).
// BenchmarkPasswordHash measures one hash (docs/benchmarks.md).
var DefaultArgon2 = Argon2Params{Memory: 64 * 1024, Time: 3, Threads: 2}

const (
	argonSaltLen = 16 // bytes, as RFC 9106 recommends
	argonKeyLen  = 32 // bytes
)

// Password length limits, in bytes: long enough for a passphrase, short
// enough that hashing one costs the same as any other.
const (
	MinPasswordLen = 12
	MaxPasswordLen = 256
)

// checkPassword checks a new password against the length limits.
func checkPassword(pw string) error {
	if len(pw) < MinPasswordLen || len(pw) > MaxPasswordLen {
		return invalidf("a password must be %d to %d bytes long", MinPasswordLen, MaxPasswordLen)
	}
	return nil
}

// hashPassword returns the argon2id hash of pw with a new random salt, in
// the PHC string format: $argon2id$v=19$m=65536,t=3,p=2$<salt>$<hash>
// (unpadded standard base64), the format of the reference implementation.
func hashPassword(pw string, p Argon2Params) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password salt: %w", err)
	}
	key := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, argonKeyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// verifyPassword reports whether pw matches an encoded hash, comparing in
// constant time. A malformed hash (or an empty one: a user without a
// password) matches nothing.
func verifyPassword(pw, encoded string) bool {
	p, salt, key, ok := parseHash(encoded)
	if !ok {
		return false
	}
	got := argon2.IDKey([]byte(pw), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1
}

// maxArgonMemory bounds the memory a stored hash may ask for (1 GiB), so
// that a tampered row cannot make a login allocate without limit.
const maxArgonMemory = 1 << 20

// parseHash decodes a PHC argon2id string.
func parseHash(encoded string) (p Argon2Params, salt, key []byte, ok bool) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, false
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return p, nil, nil, false
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, false
	}
	if p.Memory == 0 || p.Memory > maxArgonMemory || p.Time == 0 || p.Time > 100 || p.Threads == 0 {
		return p, nil, nil, false
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return p, nil, nil, false
	}
	key, err = b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, false
	}
	return p, salt, key, true
}
