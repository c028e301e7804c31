package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"fmt"

	"github.com/steward-iot/steward"
)

// MaxCSRSize bounds a certificate request. Real ones are well under 4 KiB
// (an RSA-8192 request is about 2.5 KiB); the limit matches EST's body limit.
const MaxCSRSize = 64 << 10

// RSA keys in this range are accepted. The upper bound keeps a hostile
// request from making the server verify a huge signature.
const (
	minRSABits = 2048
	maxRSABits = 8192
)

// Key algorithm and curve identifiers, to name what a request carries
// before crypto/x509 (which refuses some of them outright) parses it.
var (
	oidRSA        = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidRSAPSS     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 10}
	oidDSA        = asn1.ObjectIdentifier{1, 2, 840, 10040, 4, 1}
	oidECPublic   = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidEd25519    = asn1.ObjectIdentifier{1, 3, 101, 112}
	oidEd448      = asn1.ObjectIdentifier{1, 3, 101, 113}
	oidX25519     = asn1.ObjectIdentifier{1, 3, 101, 110}
	oidX448       = asn1.ObjectIdentifier{1, 3, 101, 111}
	oidCurveP256  = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidCurveP384  = asn1.ObjectIdentifier{1, 3, 132, 0, 34}
	oidCurveP521  = asn1.ObjectIdentifier{1, 3, 132, 0, 35}
	oidCurveP224  = asn1.ObjectIdentifier{1, 3, 132, 0, 33}
	oidCurveSecpK = asn1.ObjectIdentifier{1, 3, 132, 0, 10}
)

// csrShape is the outline of a PKCS#10 request (RFC 2986), enough to read
// the key algorithm and find trailing data.
type csrShape struct {
	Info struct {
		Version int
		Subject asn1.RawValue
		SPKI    struct {
			Algorithm pkix.AlgorithmIdentifier
			PublicKey asn1.BitString
		}
		Attributes asn1.RawValue `asn1:"optional"`
	}
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
}

// ParseCSR parses a PKCS#10 certificate request (DER), checks its
// signature (proof that the sender holds the private key) and its key:
// ECDSA P-256, P-384 or P-521, Ed25519, or RSA of 2048 to 8192 bits.
// Anything else is refused with CodeInvalid and a message that says why.
func ParseCSR(der []byte) (*x509.CertificateRequest, error) {
	if len(der) == 0 {
		return nil, steward.Errorf(steward.CodeInvalid, "empty certificate request")
	}
	if len(der) > MaxCSRSize {
		return nil, steward.Errorf(steward.CodeTooLarge, "certificate request is larger than %d bytes", MaxCSRSize)
	}
	var shape csrShape
	rest, err := asn1.Unmarshal(der, &shape)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "certificate request is not a well-formed PKCS#10 structure (DER)")
	}
	if len(rest) > 0 {
		return nil, steward.Errorf(steward.CodeInvalid, "certificate request has %d bytes of trailing data", len(rest))
	}
	if err := checkKeyAlgorithm(shape.Info.SPKI.Algorithm); err != nil {
		return nil, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "certificate request is malformed: %v", err)
	}
	if err := checkCSR(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// checkCSR checks a parsed request's key and signature algorithm, then its
// signature.
func checkCSR(csr *x509.CertificateRequest) error {
	if csr == nil {
		return steward.Errorf(steward.CodeInvalid, "no certificate request")
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return err
	}
	switch csr.SignatureAlgorithm {
	case x509.UnknownSignatureAlgorithm:
		return steward.Errorf(steward.CodeInvalid, "certificate request uses an unknown signature algorithm")
	case x509.MD2WithRSA, x509.MD5WithRSA, x509.SHA1WithRSA, x509.DSAWithSHA1, x509.DSAWithSHA256, x509.ECDSAWithSHA1:
		return steward.Errorf(steward.CodeInvalid, "certificate request signature algorithm %s is too weak; use SHA-256 or better", csr.SignatureAlgorithm)
	}
	if err := csr.CheckSignature(); err != nil {
		return steward.WrapError(steward.CodeInvalid, err, "certificate request signature does not verify: the request was changed or not signed with its key")
	}
	return nil
}

// checkKeyAlgorithm refuses key types by their identifier, so that a
// request with a DSA, Ed448 or odd-curve key gets a message naming it
// rather than a parse error.
func checkKeyAlgorithm(alg pkix.AlgorithmIdentifier) error {
	switch {
	case alg.Algorithm.Equal(oidRSA), alg.Algorithm.Equal(oidEd25519):
		return nil
	case alg.Algorithm.Equal(oidECPublic):
		var curve asn1.ObjectIdentifier
		if rest, err := asn1.Unmarshal(alg.Parameters.FullBytes, &curve); err != nil || len(rest) > 0 {
			return steward.Errorf(steward.CodeInvalid, "certificate request has an EC key without a named curve; use P-256, P-384 or P-521")
		}
		switch {
		case curve.Equal(oidCurveP256), curve.Equal(oidCurveP384), curve.Equal(oidCurveP521):
			return nil
		case curve.Equal(oidCurveP224):
			return steward.Errorf(steward.CodeInvalid, "certificate request key uses curve P-224, which is too weak; use P-256, P-384 or P-521")
		case curve.Equal(oidCurveSecpK):
			return steward.Errorf(steward.CodeInvalid, "certificate request key uses curve secp256k1, which is not supported; use P-256, P-384 or P-521")
		default:
			return steward.Errorf(steward.CodeInvalid, "certificate request key uses curve %s, which is not supported; use P-256, P-384 or P-521", curve)
		}
	case alg.Algorithm.Equal(oidDSA):
		return steward.Errorf(steward.CodeInvalid, "certificate request has a DSA key, which is not accepted; use ECDSA P-256, Ed25519 or RSA (2048 bits or more)")
	case alg.Algorithm.Equal(oidRSAPSS):
		return steward.Errorf(steward.CodeInvalid, "certificate request has an RSASSA-PSS-only key, which is not supported; use a plain RSA key (rsaEncryption)")
	case alg.Algorithm.Equal(oidEd448):
		return steward.Errorf(steward.CodeInvalid, "certificate request has an Ed448 key, which is not supported; use Ed25519 or ECDSA P-256")
	case alg.Algorithm.Equal(oidX25519), alg.Algorithm.Equal(oidX448):
		return steward.Errorf(steward.CodeInvalid, "certificate request has a key-agreement key (X25519/X448), which cannot sign")
	default:
		return steward.Errorf(steward.CodeInvalid, "certificate request has a key of unknown algorithm %s", alg.Algorithm)
	}
}

// checkPublicKey applies the key policy to a parsed key.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return steward.Errorf(steward.CodeInvalid, "certificate request key uses curve %s, which is not supported; use P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		bits := k.N.BitLen()
		if bits < minRSABits {
			return steward.Errorf(steward.CodeInvalid, "certificate request has an RSA key of %d bits; at least %d bits are required", bits, minRSABits)
		}
		if bits > maxRSABits {
			return steward.Errorf(steward.CodeInvalid, "certificate request has an RSA key of %d bits; at most %d bits are accepted", bits, maxRSABits)
		}
		return nil
	case nil:
		return steward.Errorf(steward.CodeInvalid, "certificate request has a key of an unsupported algorithm")
	default:
		return steward.Errorf(steward.CodeInvalid, "certificate request has a key of unsupported type %s", keyTypeName(pub))
	}
}

func keyTypeName(pub any) string { return fmt.Sprintf("%T", pub) }
