package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/steward-iot/steward"
)

// TokenPrefix starts every API token secret, so that secret scanners and
// people can tell a Steward token when they see one.
const TokenPrefix = "stw_"

// principal is who is calling: the token or console session, and through
// it the tenant. The tenant is never taken from the request.
type principal struct {
	tokenID  string
	tenantID string
	role     steward.Role
	// Operators (operator.go): the user or service account behind a token
	// or session, and the session's hash for console callers.
	userID           string
	serviceAccountID string
	session          string
	// perms is the effective permission set (the role's, narrowed by the
	// token's scopes); nil means the built-in role's own. fleetQuery, in
	// canonical form, limits the devices the caller sees and touches.
	perms      []steward.Permission
	fleetQuery string
}

// can reports whether the caller holds permission perm.
func (p principal) can(perm steward.Permission) bool {
	if p.perms != nil {
		return slices.Contains(p.perms, perm)
	}
	return steward.RoleHas(p.role, perm)
}

// actor names the caller in lifecycle events and audit records.
func (p principal) actor() string {
	if p.session != "" {
		return "user:" + p.userID
	}
	return "token:" + p.tokenID
}

// lowerBase32 encodes random IDs and secrets: lower case, no padding, no
// characters that need escaping in a URL, a topic or a shell.
var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// authenticate finds the token of the request's bearer credentials.
func (s *Server) authenticate(r *http.Request) (principal, error) {
	if s.cfg.Store == nil {
		return principal{}, steward.Errorf(steward.CodeInternal, "api has no store for tokens")
	}
	h := r.Header.Get("Authorization")
	scheme, secret, ok := strings.Cut(h, " ")
	if h == "" && hasSessionCookie(r) {
		return s.authenticateSession(r)
	}
	if h == "" {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "missing bearer token: send Authorization: Bearer <token>")
	}
	secret = strings.TrimSpace(secret)
	if !ok || !strings.EqualFold(scheme, "Bearer") || secret == "" {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "authorization must be a bearer token")
	}
	hash := HashToken(secret)
	tok, err := s.cfg.Store.AccountTokenByHash(r.Context(), hash)
	if steward.IsNotFound(err) {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "invalid or revoked token")
	}
	if err != nil {
		return principal{}, fmt.Errorf("look up token: %w", err)
	}
	// The store found the row by hash; compare again in constant time so
	// that no store's lookup (index, collation, trimming) is trusted to be
	// an exact match.
	if subtle.ConstantTimeCompare([]byte(tok.Hash), []byte(hash)) != 1 {
		return principal{}, steward.Errorf(steward.CodeUnauthenticated, "invalid or revoked token")
	}
	return s.tokenPrincipal(r.Context(), tok)
}

// HashToken returns the SHA-256 of a token secret (hex), the form in which
// tokens are stored and looked up.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// GenerateToken makes a new token secret (256 random bits) and its hash.
func GenerateToken() (secret string, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate token: %w", err)
	}
	secret = TokenPrefix + lowerBase32.EncodeToString(b)
	return secret, HashToken(secret), nil
}

// newID makes a random identifier: prefix + 20 lower-case base32 characters
// (100 bits), the same shape as device IDs.
func newID(prefix string) string {
	b := make([]byte, 13)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + lowerBase32.EncodeToString(b)[:20]
}

// CreateToken makes an API token of a tenant and stores its hash; the
// secret is returned once and never stored. The server's wiring uses it for
// the first admin token.
func CreateToken(ctx context.Context, store steward.Store, tenantID, name string, role steward.Role, clock steward.Clock) (secret string, tok steward.APIToken, err error) {
	if tenantID == "" {
		return "", steward.APIToken{}, steward.Errorf(steward.CodeInvalid, "a token needs a tenant")
	}
	if err := checkName("token name", name); err != nil {
		return "", steward.APIToken{}, err
	}
	if _, builtin := steward.RolePermissions(role); !builtin {
		return "", steward.APIToken{}, steward.Errorf(steward.CodeInvalid, "role must be a built-in role (admin, system, owner, operator, release-manager, approver, viewer, auditor), not %q", role)
	}
	if clock == nil {
		clock = steward.SystemClock{}
	}
	secret, hash, err := GenerateToken()
	if err != nil {
		return "", steward.APIToken{}, err
	}
	tok = steward.APIToken{
		ID:        newID("t-"),
		TenantID:  tenantID,
		Name:      name,
		Role:      role,
		Hash:      hash,
		CreatedAt: clock.Now().UTC(),
	}
	if err := store.CreateToken(ctx, tok); err != nil {
		return "", steward.APIToken{}, fmt.Errorf("create token: %w", err)
	}
	return secret, tok, nil
}

// checkName checks a human-given name: 1 to 128 characters of printable
// UTF-8 (no control characters to smuggle into logs and tables).
func checkName(what, name string) error {
	if name == "" || utf8.RuneCountInString(name) > 128 {
		return steward.Errorf(steward.CodeInvalid, "%s must be 1 to 128 characters", what)
	}
	if !utf8.ValidString(name) {
		return steward.Errorf(steward.CodeInvalid, "%s must be UTF-8", what)
	}
	for _, c := range name {
		if !unicode.IsPrint(c) {
			return steward.Errorf(steward.CodeInvalid, "%s must not contain control characters", what)
		}
	}
	return nil
}
