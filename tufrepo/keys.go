package tufrepo

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
)

// GenerateKey makes an Ed25519 signing key, the key type every TUF client
// supports (go-tuf, tuf-js, python-tuf).
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return priv, nil
}

// MarshalPrivateKey encodes a key as PKCS #8 PEM, the release key file
// `steward artifacts keygen` writes.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePrivateKey decodes a PKCS #8 PEM Ed25519 key.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, steward.Errorf(steward.CodeInvalid, "the key file is not a PEM \"PRIVATE KEY\"")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "the key file does not parse")
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, steward.Errorf(steward.CodeInvalid, "the key is a %T, not an Ed25519 key", k)
	}
	return priv, nil
}

// MarshalPublicKey encodes a public key as PKIX PEM.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePublicKey decodes an Ed25519 public key given as PKIX PEM or as a
// TUF key object ({"keytype": "ed25519", …}).
func ParsePublicKey(b []byte) (ed25519.PublicKey, error) {
	text := strings.TrimSpace(string(b))
	if strings.HasPrefix(text, "{") {
		var k metadata.Key
		if err := json.Unmarshal(b, &k); err != nil {
			return nil, steward.WrapError(steward.CodeInvalid, err, "the TUF key does not parse")
		}
		pub, err := k.ToPublicKey()
		if err != nil {
			return nil, steward.WrapError(steward.CodeInvalid, err, "the TUF key does not parse")
		}
		if e, ok := pub.(ed25519.PublicKey); ok {
			return e, nil
		}
		return nil, steward.Errorf(steward.CodeInvalid, "the TUF key is a %T, not an Ed25519 key", pub)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PUBLIC KEY" {
		return nil, steward.Errorf(steward.CodeInvalid, "the public key is neither a PEM \"PUBLIC KEY\" nor a TUF key object")
	}
	k, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "the public key does not parse")
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, steward.Errorf(steward.CodeInvalid, "the public key is a %T, not an Ed25519 key", k)
	}
	return pub, nil
}

// tufKey returns the TUF key object of a public key and its key ID.
func tufKey(pub crypto.PublicKey) (*metadata.Key, string, error) {
	k, err := metadata.KeyFromPublicKey(pub)
	if err != nil {
		return nil, "", fmt.Errorf("tuf key: %w", err)
	}
	id, err := k.ID()
	if err != nil {
		return nil, "", fmt.Errorf("tuf key id: %w", err)
	}
	return k, id, nil
}

// KeyID returns the TUF key ID of a public key.
func KeyID(pub ed25519.PublicKey) (string, error) {
	_, id, err := tufKey(pub)
	return id, err
}

func signer(priv ed25519.PrivateKey) (signature.Signer, error) {
	s, err := signature.LoadED25519Signer(priv)
	if err != nil {
		return nil, fmt.Errorf("load signer: %w", err)
	}
	return s, nil
}
