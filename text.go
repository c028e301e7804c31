package steward

import (
	"crypto/rand"
	"encoding/base32"
	"strings"
)

// Truncate returns s cut to at most limit bytes, on a character boundary,
// with "…" after it when it was cut: for text a device or a client
// chose (topics, client IDs, identities) that goes into logs, events and
// audit records.
func Truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return strings.ToValidUTF8(s[:limit], "") + "…"
}

// deviceIDEncoding writes device IDs: lower-case base32, no padding.
var deviceIDEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// NewDeviceID returns a new device ID as the server assigns them: "d-" and
// 20 random base32 characters (100 bits).
func NewDeviceID() string {
	var b [13]byte
	_, _ = rand.Read(b[:])
	return "d-" + deviceIDEncoding.EncodeToString(b[:])[:20]
}
