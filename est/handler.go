// Package est serves Enrollment over Secure Transport (RFC 7030, with the
// clarifications of RFC 8951) on the device plane: cacerts, simpleenroll,
// simplereenroll and csrattrs under /.well-known/est/, each also under an
// optional label, /.well-known/est/{label}/…, which Steward reads as a
// tenant ID.
//
// The handler is only the transport. Authentication (the TLS client
// certificate, taken unverified from the connection), policy and issuance
// are the steward.Enroller's; errors it returns become HTTP statuses through
// steward.Code.HTTPStatus, with the caller-safe message as a plain-text body
// and the details in the log.
package est

import (
	"context"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"

	"github.com/smallstep/pkcs7"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/estwire"
)

// DefaultMaxBodyBytes bounds a request body (base64 of a PKCS#10 request)
// unless Options says otherwise; real requests are a few KiB.
const DefaultMaxBodyBytes = 64 << 10

// Media types of RFC 7030.
const (
	// ContentTypePKCS10 is the media type of an enrollment request body.
	ContentTypePKCS10 = estwire.MediaPKCS10
	// ContentTypeCertsOnly is the media type of a certificate response.
	ContentTypeCertsOnly = estwire.ContentTypeCertsOnly
	// ContentTypeCSRAttrs is the media type of a csrattrs response.
	ContentTypeCSRAttrs = estwire.MediaCSRAttrs
)

// retryAfterSeconds is sent with 503 so that devices back off rather than
// hammer a server that is starting or overloaded.
const retryAfterSeconds = 30

// Options tunes the handler. The zero value is ready to use.
type Options struct {
	// MaxBodyBytes bounds a request body; a larger one gets 413.
	// Zero means DefaultMaxBodyBytes.
	MaxBodyBytes int64
}

// Object identifiers of the csrattrs answer.
var (
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidPrime256v1      = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
)

type handler struct {
	enroller steward.Enroller
	log      *slog.Logger
	maxBody  int64
	csrAttrs []byte // base64 of the DER answer, computed once
}

// NewHandler returns the EST handler. Mount it at the server's root (or
// under "/.well-known/est/"): it matches the full paths itself and answers
// 404 for anything else below that prefix, 405 for a wrong method.
func NewHandler(e steward.Enroller, logger *slog.Logger, opts Options) http.Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{enroller: e, log: logger, maxBody: opts.MaxBodyBytes}
	if h.maxBody <= 0 {
		h.maxBody = DefaultMaxBodyBytes
	}
	attrs, err := csrAttrsDER()
	if err != nil {
		panic(fmt.Sprintf("est: encode csrattrs: %v", err)) // constant input: cannot happen
	}
	h.csrAttrs = estwire.EncodeLines(attrs)

	mux := http.NewServeMux()
	for _, prefix := range []string{"/.well-known/est/", "/.well-known/est/{label}/"} {
		mux.HandleFunc("GET "+prefix+"cacerts", h.cacerts)
		mux.HandleFunc("POST "+prefix+"simpleenroll", h.enroll("simpleenroll", e.Enroll))
		mux.HandleFunc("POST "+prefix+"simplereenroll", h.enroll("simplereenroll", e.Reenroll))
		mux.HandleFunc("GET "+prefix+"csrattrs", h.csrattrs)
	}
	return mux
}

// csrAttrsDER is the CsrAttrs SEQUENCE of RFC 7030 §4.5.2 asking for an
// ECDSA P-256 key and an ECDSA with SHA-256 signature: the key type as an
// attribute whose value names the curve, the signature as a bare OID.
func csrAttrsDER() ([]byte, error) {
	keyAttr, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.ObjectIdentifier `asn1:"set"`
	}{oidECPublicKey, []asn1.ObjectIdentifier{oidPrime256v1}})
	if err != nil {
		return nil, err
	}
	sigAlg, err := asn1.Marshal(oidECDSAWithSHA256)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(keyAttr, sigAlg...)})
}

func (h *handler) cacerts(w http.ResponseWriter, r *http.Request) {
	label, err := pathLabel(r)
	if err != nil {
		h.fail(w, r, "cacerts", err)
		return
	}
	certs, err := h.enroller.CACerts(r.Context(), label, peerChain(r))
	if err != nil {
		h.fail(w, r, "cacerts", err)
		return
	}
	h.writeCerts(w, r, "cacerts", certs)
}

func (h *handler) csrattrs(w http.ResponseWriter, r *http.Request) {
	if _, err := pathLabel(r); err != nil {
		h.fail(w, r, "csrattrs", err)
		return
	}
	w.Header().Set("Content-Type", ContentTypeCSRAttrs)
	w.Header().Set("Content-Transfer-Encoding", "base64")
	w.Header().Set("Content-Length", strconv.Itoa(len(h.csrAttrs)))
	_, _ = w.Write(h.csrAttrs)
}

// enroll serves simpleenroll and simplereenroll, which differ only in the
// Enroller method that authenticates and issues.
func (h *handler) enroll(op string, issue func(context.Context, steward.EnrollRequest) ([]*x509.Certificate, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		label, err := pathLabel(r)
		if err != nil {
			h.fail(w, r, op, err)
			return
		}
		csr, err := h.readCSR(w, r)
		if err != nil {
			h.fail(w, r, op, err)
			return
		}
		certs, err := issue(r.Context(), steward.EnrollRequest{
			Label:     label,
			PeerChain: peerChain(r),
			CSR:       csr,
			Remote:    r.RemoteAddr,
		})
		if err != nil {
			h.fail(w, r, op, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		h.writeCerts(w, r, op, certs)
	}
}

// readCSR checks the content type and reads the base64 PKCS#10 body.
func (h *handler) readCSR(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != ContentTypePKCS10 {
		return nil, steward.Errorf(steward.CodeUnsupported, "content type must be %s", ContentTypePKCS10)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, steward.Errorf(steward.CodeTooLarge, "request body is larger than %d bytes", h.maxBody)
		}
		return nil, steward.WrapError(steward.CodeInvalid, err, "request body could not be read")
	}
	der, err := decodeBody(body)
	if err != nil {
		return nil, err
	}
	if len(der) == 0 {
		return nil, steward.Errorf(steward.CodeInvalid, "empty certificate request")
	}
	return der, nil
}

// writeCerts answers with a certs-only PKCS#7 (a SignedData without
// signers), base64 in lines.
func (h *handler) writeCerts(w http.ResponseWriter, r *http.Request, op string, certs []*x509.Certificate) {
	if len(certs) == 0 {
		h.fail(w, r, op, errors.New("enroller returned no certificates"))
		return
	}
	var raw []byte
	for i, c := range certs {
		if c == nil || len(c.Raw) == 0 {
			h.fail(w, r, op, fmt.Errorf("enroller returned an empty certificate at %d", i))
			return
		}
		raw = append(raw, c.Raw...)
	}
	p7, err := pkcs7.DegenerateCertificate(raw)
	if err != nil {
		h.fail(w, r, op, fmt.Errorf("encode certs-only: %w", err))
		return
	}
	body := estwire.EncodeLines(p7)
	w.Header().Set("Content-Type", ContentTypeCertsOnly)
	w.Header().Set("Content-Transfer-Encoding", "base64")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
	h.log.Debug("est: answered", "op", op, "label", r.PathValue("label"), "remote", r.RemoteAddr,
		"subject", certs[0].Subject.CommonName, "serial", serialHex(certs[0]))
}

func serialHex(c *x509.Certificate) string {
	if c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// fail answers with the error's status and caller-safe message; the cause
// goes to the log only.
func (h *handler) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	code := steward.ErrorCode(err)
	status := code.HTTPStatus()
	attrs := []any{"op", op, "label", r.PathValue("label"), "remote", r.RemoteAddr, "code", code, "status", status, "err", err}
	if code == steward.CodeInternal {
		h.log.Error("est: request failed", attrs...)
	} else {
		h.log.Info("est: request refused", attrs...)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	http.Error(w, steward.ErrorMessage(err), status)
}

// pathLabel returns the optional EST label. It is a tenant ID to Steward,
// so anything that could not be one is refused here, before it reaches a
// log line or a query.
func pathLabel(r *http.Request) (string, error) {
	label := r.PathValue("label")
	if label == "" {
		return "", nil
	}
	if len(label) > 64 {
		return "", steward.Errorf(steward.CodeInvalid, "EST label is longer than 64 characters")
	}
	for _, c := range []byte(label) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", steward.Errorf(steward.CodeInvalid, "EST label may hold only letters, digits, '-', '_' and '.'")
		}
	}
	return label, nil
}

// peerChain is the TLS client certificate chain as the client sent it,
// unverified: the Enroller decides which CA it must chain to.
func peerChain(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}

// decodeBody decodes an EST body: base64 (RFC 4648, padding optional) with
// any ASCII white space, including the line breaks of RFC 2045, ignored.
// A malformed body is CodeInvalid.
func decodeBody(body []byte) ([]byte, error) {
	der, err := estwire.DecodeStrict(body)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "request body is not valid base64")
	}
	return der, nil
}
