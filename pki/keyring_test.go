package pki

import (
	"bytes"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
)

func TestKeyringRoundTrip(t *testing.T) {
	t.Parallel()
	k, err := NewKeyring(randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		plain []byte
	}{
		{"empty", nil},
		{"short", []byte("x")},
		{"key", bytes.Repeat([]byte{0xa5}, 121)},
		{"large", bytes.Repeat([]byte("steward"), 1<<15)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sealed, err := k.Seal("pki/"+tc.name, tc.plain)
			if err != nil {
				t.Fatal(err)
			}
			if sealed[0] != keyVersion1 {
				t.Errorf("version byte = %d, want %d", sealed[0], keyVersion1)
			}
			if want := 1 + nonceSize + len(tc.plain) + 16; len(sealed) != want {
				t.Errorf("sealed length = %d, want %d", len(sealed), want)
			}
			if len(tc.plain) > 8 && bytes.Contains(sealed, tc.plain[:8]) {
				t.Error("sealed secret contains its plaintext")
			}
			got, err := k.Open("pki/"+tc.name, sealed)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.plain) {
				t.Error("opened secret differs from the sealed one")
			}
			again, err := k.Seal("pki/"+tc.name, tc.plain)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(again[1:1+nonceSize], sealed[1:1+nonceSize]) {
				t.Error("two seals used the same nonce")
			}
		})
	}
}

func TestKeyringRefuses(t *testing.T) {
	t.Parallel()
	key := randomKey(t)
	k, err := NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewKeyring(randomKey(t))
	if err != nil {
		t.Fatal(err)
	}
	sameKey, err := NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	const name = "pki/device-ca/acme"
	sealed, err := k.Seal(name, []byte("the CA private key"))
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	for _, tc := range []struct {
		name   string
		ring   *Keyring
		secret string
		sealed []byte
		want   string
	}{
		{"wrong name", k, "pki/device-ca/other", sealed, "does not open"},
		{"wrong key", other, name, sealed, "does not open"},
		{"tampered nonce", k, name, flip(1), "does not open"},
		{"tampered ciphertext", k, name, flip(1 + nonceSize + 2), "does not open"},
		{"tampered tag", k, name, flip(len(sealed) - 1), "does not open"},
		{"unknown version", k, name, append([]byte{9}, sealed[1:]...), "key version 9"},
		{"truncated", k, name, sealed[:1+nonceSize+4], "too short"},
		{"empty", k, name, nil, "too short"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			plain, err := tc.ring.Open(tc.secret, tc.sealed)
			wantCode(t, err, steward.CodeInternal, tc.want)
			if plain != nil {
				t.Error("a refused secret returned plaintext")
			}
		})
	}
	// The same master key in another process opens it: nothing but the key
	// and the name is needed.
	if _, err := sameKey.Open(name, sealed); err != nil {
		t.Errorf("same master key: %v", err)
	}
}

func TestNewKeyringKeySize(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 16, 31, 33, 64} {
		_, err := NewKeyring(make([]byte, n))
		wantCode(t, err, steward.CodeInvalid, "32 bytes")
	}
}

func TestParseMasterKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, text string
		ok         bool
	}{
		{"hex", strings.Repeat("ab", 32), true},
		{"base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=", true},
		{"base64 with newline", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s=\n", true},
		{"short hex", strings.Repeat("ab", 31), false},
		{"short base64", "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6ur", false},
		{"not encoded", "correct horse battery staple", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			key, err := ParseMasterKey(tc.text)
			if !tc.ok {
				wantCode(t, err, steward.CodeInvalid, "base64 or hex")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(key, bytes.Repeat([]byte{0xab}, 32)) {
				t.Errorf("key = %x", key)
			}
		})
	}
}
