// Package estclient is the device side of EST (RFC 7030, with RFC 8951's
// clarifications): it fetches the CA certificates, enrolls and re-enrolls
// with a PKCS#10 request, and reads the server's CSR attributes.
//
// The TLS client certificate (the factory identity for SimpleEnroll, the
// current operational one for SimpleReenroll) and the server trust are
// configured by the caller on the http.Client's transport. The package is
// linked into the device agent, so it depends on nothing of the server:
// only the standard library, the root steward package, a PKCS#7 parser and
// the EST wire format it shares with the server (internal/estwire).
package estclient

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/estwire"
)

// Limits on what the client reads from a server.
const (
	maxResponseBytes = 1 << 20 // a certs-only answer is a few KiB
	maxMessageBytes  = 4 << 10 // the text of an error answer
)

// Client talks EST to one server.
type Client struct {
	// BaseURL is the server, e.g. "https://steward.example.com:8443";
	// "/.well-known/est" is added unless it is already there.
	BaseURL string
	// Label is the optional EST label (a tenant ID to Steward).
	Label string
	// HTTP sends the requests; nil means http.DefaultClient. Its transport
	// carries the TLS client certificate and the roots to trust.
	HTTP *http.Client
}

// Error is an EST request the server refused or could not serve. Unwrap
// gives a *steward.Error with the Code matching the status, so
// steward.ErrorCode works on it.
type Error struct {
	StatusCode int           // the HTTP status
	Message    string        // the server's plain-text message, or the status text
	RetryAfter time.Duration // from Retry-After (503, or 202 for a pending enrollment); 0 if none
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("est: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// Unwrap returns the error as a *steward.Error.
func (e *Error) Unwrap() error {
	return &steward.Error{Code: steward.CodeOfHTTPStatus(e.StatusCode), Message: e.Message}
}

// CACerts fetches the certificates the device should trust (GET cacerts).
func (c *Client) CACerts(ctx context.Context) ([]*x509.Certificate, error) {
	body, err := c.do(ctx, http.MethodGet, "cacerts", nil, estwire.MediaPKCS7)
	if err != nil {
		return nil, err
	}
	return decodeCerts(body)
}

// SimpleEnroll sends a certificate request (DER) authenticated by the
// factory certificate and returns the issued certificate: the one in the
// answer that carries the request's public key.
func (c *Client) SimpleEnroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return c.enroll(ctx, "simpleenroll", csrDER)
}

// SimpleReenroll renews the operational certificate the TLS connection
// presents, for the key in csrDER.
func (c *Client) SimpleReenroll(ctx context.Context, csrDER []byte) (*x509.Certificate, error) {
	return c.enroll(ctx, "simplereenroll", csrDER)
}

// CSRAttrs fetches the server's CSR attributes: the DER of the CsrAttrs
// SEQUENCE of RFC 7030 §4.5.2. It returns nil when the server has none
// (204 No Content).
func (c *Client) CSRAttrs(ctx context.Context) ([]byte, error) {
	body, err := c.do(ctx, http.MethodGet, "csrattrs", nil, estwire.MediaCSRAttrs)
	if err != nil || body == nil {
		return nil, err
	}
	return decodeBase64(body)
}

func (c *Client) enroll(ctx context.Context, op string, csrDER []byte) (*x509.Certificate, error) {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "est %s: the certificate request does not parse: %v", op, err)
	}
	body, err := c.do(ctx, http.MethodPost, op, estwire.EncodeLines(csrDER), estwire.MediaPKCS7)
	if err != nil {
		return nil, err
	}
	certs, err := decodeCerts(body)
	if err != nil {
		return nil, err
	}
	want, ok := csr.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok {
		return nil, fmt.Errorf("est %s: unsupported key type %T", op, csr.PublicKey)
	}
	for _, cert := range certs {
		if want.Equal(cert.PublicKey) {
			return cert, nil
		}
	}
	return nil, fmt.Errorf("est %s: the server's answer holds no certificate for the requested key", op)
}

// do sends one request and returns the body of a 200 answer of the wanted
// media type, nil for 204, or an *Error.
func (c *Client) do(ctx context.Context, method, op string, body []byte, wantType string) ([]byte, error) {
	u, err := c.url(op)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("est %s: %w", op, err)
	}
	req.Header.Set("Accept", wantType)
	if body != nil {
		req.Header.Set("Content-Type", estwire.MediaPKCS10)
		req.Header.Set("Content-Transfer-Encoding", "base64")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("est %s: %w", op, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNoContent:
		return nil, nil
	default:
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, maxMessageBytes))
		e := &Error{StatusCode: resp.StatusCode, Message: strings.TrimSpace(string(msg)), RetryAfter: retryAfter(resp.Header.Get("Retry-After"))}
		if e.Message == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			e.Message = http.StatusText(resp.StatusCode)
		}
		if resp.StatusCode == http.StatusAccepted {
			e.Message = "enrollment is pending; try again later"
		}
		return nil, e
	}
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != wantType {
		return nil, fmt.Errorf("est %s: the server answered %q, not %s", op, resp.Header.Get("Content-Type"), wantType)
	}
	out, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("est %s: read answer: %w", op, err)
	}
	if len(out) > maxResponseBytes {
		return nil, fmt.Errorf("est %s: the answer is larger than %d bytes", op, maxResponseBytes)
	}
	return out, nil
}

func (c *Client) url(op string) (string, error) {
	base := strings.TrimRight(c.BaseURL, "/")
	if base == "" {
		return "", errors.New("est: no server URL")
	}
	if !strings.HasSuffix(base, "/.well-known/est") {
		base += "/.well-known/est"
	}
	if c.Label != "" {
		base += "/" + url.PathEscape(c.Label)
	}
	return base + "/" + op, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// decodeCerts reads a base64 certs-only PKCS#7 answer.
func decodeCerts(body []byte) ([]*x509.Certificate, error) {
	der, err := decodeBase64(body)
	if err != nil {
		return nil, err
	}
	p7, err := pkcs7.Parse(der)
	if err != nil {
		return nil, fmt.Errorf("est: the answer is not a PKCS#7 certs-only message: %w", err)
	}
	if len(p7.Certificates) == 0 {
		return nil, errors.New("est: the answer holds no certificates")
	}
	return p7.Certificates, nil
}

// decodeBase64 decodes a base64 answer with any ASCII white space ignored.
func decodeBase64(body []byte) ([]byte, error) {
	out, err := estwire.Decode(body)
	if err != nil {
		return nil, fmt.Errorf("est: the answer is not base64: %w", err)
	}
	return out, nil
}
