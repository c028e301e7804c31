// Package estwire holds the EST (RFC 7030, RFC 8951) wire format that the
// server (package est) and the device client (package estclient) share:
// media types and the base64 transfer encoding of bodies.
//
// estclient is linked into the device agent, so this package imports only
// the standard library.
package estwire

import (
	"encoding/base64"
)

// Media types of RFC 7030.
const (
	// MediaPKCS10 is the media type of an enrollment request body.
	MediaPKCS10 = "application/pkcs10"
	// MediaPKCS7 is the media type of a certificate response, without its
	// smime-type parameter.
	MediaPKCS7 = "application/pkcs7-mime"
	// ContentTypeCertsOnly is the full Content-Type of a certificate response.
	ContentTypeCertsOnly = MediaPKCS7 + "; smime-type=certs-only"
	// MediaCSRAttrs is the media type of a csrattrs response.
	MediaCSRAttrs = "application/csrattrs"
)

// LineLength is the base64 line length of bodies we write: 64, as PEM and
// OpenSSL write it (RFC 2045 allows up to 76).
const LineLength = 64

// EncodeLines encodes b in base64 lines of LineLength characters, each
// ended by CRLF (RFC 2045), the last one included.
func EncodeLines(b []byte) []byte {
	enc := make([]byte, base64.StdEncoding.EncodedLen(len(b)))
	base64.StdEncoding.Encode(enc, b)
	out := make([]byte, 0, len(enc)+2*(len(enc)/LineLength+1))
	for len(enc) > LineLength {
		out = append(out, enc[:LineLength]...)
		out = append(out, '\r', '\n')
		enc = enc[LineLength:]
	}
	out = append(out, enc...)
	return append(out, '\r', '\n')
}

// Decode decodes an EST body: base64 (RFC 4648, padding optional) with any
// ASCII white space, including the line breaks of RFC 2045, ignored. It is
// lenient about non-zero padding bits; see DecodeStrict.
func Decode(body []byte) ([]byte, error) {
	return decode(body, false)
}

// DecodeStrict is Decode that also refuses non-zero padding bits, so that
// what it accepts is the canonical encoding of what it returns, apart from
// white space and padding.
func DecodeStrict(body []byte) ([]byte, error) {
	return decode(body, true)
}

func decode(body []byte, strict bool) ([]byte, error) {
	clean := make([]byte, 0, len(body))
	for _, c := range body {
		switch c {
		case ' ', '\t', '\r', '\n', '\v', '\f':
		default:
			clean = append(clean, c)
		}
	}
	enc := base64.StdEncoding
	if len(clean)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	if strict {
		enc = enc.Strict()
	}
	out := make([]byte, enc.DecodedLen(len(clean)))
	n, err := enc.Decode(out, clean)
	if err != nil {
		return nil, err
	}
	return out[:n], nil
}
