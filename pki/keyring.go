package pki

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"fmt"

	"github.com/steward-iot/steward"
)

// keyVersion1 marks a secret sealed with AES-256-GCM under a key derived
// from the master key. Rotation adds a version: Open picks the key by the
// version byte, Seal always uses the newest, so old secrets stay readable
// while they are re-sealed.
const keyVersion1 byte = 1

// nonceSize is GCM's standard 96-bit nonce; random nonces are safe for far
// more secrets than a server will ever hold (2^32 per key).
const nonceSize = 12

// Keyring seals and opens server-held secrets (CA keys, the server's TLS
// key, …) with AES-256-GCM. A sealed secret is
//
//	version (1 byte) | nonce (12 bytes) | ciphertext | tag (16 bytes)
//
// and is bound to its name: the name and the version byte are the GCM
// additional data, so a ciphertext copied under another name does not open.
// A Keyring is safe for concurrent use.
type Keyring struct {
	current byte
	aeads   map[byte]cipher.AEAD
}

// NewKeyring returns a Keyring over a MasterKeySize-byte master key.
func NewKeyring(masterKey []byte) (*Keyring, error) {
	if len(masterKey) != MasterKeySize {
		return nil, steward.Errorf(steward.CodeInvalid, "master key must be %d bytes, not %d", MasterKeySize, len(masterKey))
	}
	// Derive the sealing key rather than use the master key directly, so
	// that the master key can key other purposes later without reuse.
	key, err := hkdf.Key(sha256.New, masterKey, nil, "steward secrets v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealing cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("sealing cipher: %w", err)
	}
	return &Keyring{current: keyVersion1, aeads: map[byte]cipher.AEAD{keyVersion1: aead}}, nil
}

// Seal encrypts plaintext for storage under name.
func (k *Keyring) Seal(name string, plaintext []byte) ([]byte, error) {
	aead := k.aeads[k.current]
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+aead.Overhead())
	out[0] = k.current
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("seal %s: nonce: %w", name, err)
	}
	return aead.Seal(out, out[1:1+nonceSize], plaintext, additionalData(k.current, name)), nil
}

// Open decrypts a secret that Seal sealed under name. It fails with
// CodeInternal when the secret was sealed under another name, with another
// master key, or was changed: a server cannot recover from that on its own.
func (k *Keyring) Open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < 1+nonceSize {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s is too short to be sealed (%d bytes)", name, len(sealed))
	}
	aead, ok := k.aeads[sealed[0]]
	if !ok {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s was sealed with key version %d, which this server does not have", name, sealed[0])
	}
	if len(sealed) < 1+nonceSize+aead.Overhead() {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s is too short to be sealed (%d bytes)", name, len(sealed))
	}
	plain, err := aead.Open(nil, sealed[1:1+nonceSize], sealed[1+nonceSize:], additionalData(sealed[0], name))
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err,
			"secret %s does not open: wrong master key, or the stored value was changed or moved from another name", name)
	}
	return plain, nil
}

func additionalData(version byte, name string) []byte {
	ad := make([]byte, 0, 1+len(name))
	ad = append(ad, version)
	return append(ad, name...)
}
