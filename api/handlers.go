package api

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// List is the envelope of every list answer: an object, so that fields
// (such as the next page's cursor) can be added without breaking clients.
type List[T any] struct {
	Items []T `json:"items"`
	// NextAfter, when set, is the `after` value that fetches the next page.
	NextAfter string `json:"next_after,omitempty"`
}

// list wraps items, never sending null for an empty list.
func list[T any](items []T) List[T] {
	if items == nil {
		items = []T{}
	}
	return List[T]{Items: items}
}

// EnrollmentGroupRequest is the body of POST /api/v1/enrollment-groups: the
// parts of a group an operator chooses (the server sets ID, tenant,
// fingerprints and creation time).
type EnrollmentGroupRequest struct {
	Name     string              `json:"name"`
	CAPEM    string              `json:"ca_pem"`
	Models   []string            `json:"models,omitempty"`
	Firmware map[string][]string `json:"firmware,omitempty"`
	Labels   map[string]string   `json:"labels,omitempty"`
	Serials  []string            `json:"serials,omitempty"`
	Strict   bool                `json:"strict,omitempty"`
}

// QuarantineRequest is the body of POST /api/v1/devices/{id}/quarantine.
type QuarantineRequest struct {
	Reason string `json:"reason"`
}

// MaintenanceRequest is the body of POST /api/v1/devices/{id}/maintenance.
type MaintenanceRequest struct {
	Reason string `json:"reason"`
}

// CommandRequest is the body of POST /api/v1/devices/{id}/commands.
type CommandRequest struct {
	Name string         `json:"name"`
	Args map[string]any `json:"args,omitempty"`
	// TimeoutSeconds is how long to wait for the device's answer; 0 means
	// DefaultCommandTimeout.
	TimeoutSeconds float64 `json:"timeout_seconds,omitempty"`
}

// Command timeouts.
const (
	DefaultCommandTimeout = 10 * time.Second
	MaxCommandTimeout     = 5 * time.Minute
)

// TokenRequest is the body of POST /api/v1/tokens.
type TokenRequest struct {
	Name string `json:"name"`
	// Role defaults to admin; only a system token may create system tokens.
	Role steward.Role `json:"role,omitempty"`
}

// CreatedToken is a new token with its secret, which is shown this once.
type CreatedToken struct {
	steward.APIToken
	Secret string `json:"secret"`
}

// TenantRequest is the body of POST /api/v1/tenants.
type TenantRequest struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"` // defaults to the ID
}

// CreatedTenant is a new tenant with its first admin token.
type CreatedTenant struct {
	Tenant steward.Tenant `json:"tenant"`
	Token  CreatedToken   `json:"token"`
}

// tenantIDPattern keeps tenant IDs usable as an EST label, a URL path
// segment and a file name: a DNS label.
var tenantIDPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// queryParams reads a request's query string, refusing parameters the route
// does not know (a misspelt filter must not silently select everything) and
// repeated ones.
func queryParams(r *http.Request, known ...string) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidf("malformed query string")
	}
	for k, vs := range q {
		ok := false
		for _, n := range known {
			ok = ok || k == n
		}
		if !ok {
			return nil, invalidf("unknown query parameter %q", k)
		}
		if len(vs) > 1 {
			return nil, invalidf("query parameter %q given more than once", k)
		}
	}
	return q, nil
}

// limitParam reads an optional limit in [1, 1000].
func limitParam(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 1000 {
		return 0, invalidf("limit must be a whole number from 1 to 1000, not %q", s)
	}
	return n, nil
}

// --- enrollment groups

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	gs, err := s.cfg.Groups.ListEnrollmentGroups(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(gs))
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request, p principal) error {
	var req EnrollmentGroupRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	g, err := s.cfg.Groups.CreateEnrollmentGroup(r.Context(), steward.EnrollmentGroup{
		TenantID: p.tenantID,
		Name:     req.Name,
		CAPEM:    req.CAPEM,
		Models:   req.Models,
		Firmware: req.Firmware,
		Labels:   req.Labels,
		Serials:  req.Serials,
		Strict:   req.Strict,
	}, p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/enrollment-groups/"+url.PathEscape(g.ID))
	return writeJSON(w, http.StatusCreated, g)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request, p principal) error {
	g, err := s.cfg.Groups.GetEnrollmentGroup(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, g)
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.cfg.Groups.DeleteEnrollmentGroup(r.Context(), p.tenantID, r.PathValue("id"), p.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- devices

func (s *Server) listDevices(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "q", "after", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	query, err := p.deviceQuery(q.Get("q")) // only the devices the caller's role reaches
	if err != nil {
		return err
	}
	ds, err := s.cfg.Fleet.ListDevices(r.Context(), p.tenantID, steward.DeviceQuery{Query: query, After: q.Get("after"), Limit: limit})
	if err != nil {
		return err
	}
	out := list(ds)
	effective := limit
	if effective == 0 {
		effective = 100 // the store's default page size (steward.DeviceQuery)
	}
	if len(ds) >= effective {
		out.NextAfter = ds[len(ds)-1].ID
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.cfg.Fleet.GetDevice(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) patchDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	var patch steward.DevicePatch
	if err := decodeJSON(w, r, &patch); err != nil {
		return err
	}
	d, err := s.cfg.Fleet.UpdateDevice(r.Context(), p.tenantID, r.PathValue("id"), patch, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) quarantineDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	var req QuarantineRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("reason", req.Reason); err != nil {
		return err
	}
	d, err := s.cfg.Fleet.Quarantine(r.Context(), p.tenantID, r.PathValue("id"), req.Reason, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) releaseDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.cfg.Fleet.Release(r.Context(), p.tenantID, r.PathValue("id"), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) startMaintenance(w http.ResponseWriter, r *http.Request, p principal) error {
	var req MaintenanceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("reason", req.Reason); err != nil {
		return err
	}
	d, err := s.cfg.Fleet.Maintenance(r.Context(), p.tenantID, r.PathValue("id"), req.Reason, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) endMaintenance(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.cfg.Fleet.EndMaintenance(r.Context(), p.tenantID, r.PathValue("id"), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) revokeDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.cfg.Fleet.Revoke(r.Context(), p.tenantID, r.PathValue("id"), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

// commandNamePattern keeps command names to simple words.
var commandNamePattern = regexp.MustCompile(`^[a-z][a-z0-9_.-]{0,63}$`)

func (s *Server) sendCommand(w http.ResponseWriter, r *http.Request, p principal) error {
	var req CommandRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if !commandNamePattern.MatchString(req.Name) {
		return invalidf("command name must be 1 to 64 lower-case letters, digits, '_', '.' or '-', starting with a letter")
	}
	timeout := DefaultCommandTimeout
	if req.TimeoutSeconds != 0 {
		if req.TimeoutSeconds < 0 || req.TimeoutSeconds > MaxCommandTimeout.Seconds() {
			return invalidf("timeout_seconds must be more than 0 and at most %v", MaxCommandTimeout.Seconds())
		}
		timeout = time.Duration(req.TimeoutSeconds * float64(time.Second))
	}
	// The service gives the command its correlation ID and send time.
	res, err := s.cfg.Fleet.SendCommand(r.Context(), p.tenantID, r.PathValue("id"),
		steward.Command{Name: req.Name, Args: req.Args}, timeout)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) latestTelemetry(w http.ResponseWriter, r *http.Request, p principal) error {
	samples, err := s.cfg.Fleet.LatestSamples(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(samples))
}

func (s *Server) listSecurityEvents(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "device", "kind", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	if d := q.Get("device"); d != "" && !steward.ValidDeviceID(d) {
		return invalidf("device %q is not a valid device ID", d)
	}
	if k := q.Get("kind"); len(k) > 64 {
		return invalidf("kind must be at most 64 characters")
	}
	evs, err := s.cfg.Fleet.ListSecurityEvents(r.Context(), p.tenantID, steward.SecurityEventFilter{
		DeviceID: q.Get("device"),
		Kind:     steward.SecurityEventKind(q.Get("kind")),
		Limit:    limit,
	})
	if err != nil {
		return err
	}
	if evs, err = inScope(s, r.Context(), p, evs, func(e steward.SecurityEvent) string { return e.DeviceID }); err != nil { // users.go
		return err
	}
	return writeJSON(w, http.StatusOK, list(evs))
}

// --- certificate authorities

// PEMContentType is the media type of the CA endpoints' answers.
const PEMContentType = "application/x-pem-file"

func (s *Server) deviceCA(w http.ResponseWriter, r *http.Request, p principal) error {
	ca, err := s.cfg.Authority.DeviceCA(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("device ca of tenant %s: %w", p.tenantID, err)
	}
	return writePEM(w, ca)
}

func (s *Server) serverCA(w http.ResponseWriter, _ *http.Request, _ principal) error {
	return writePEM(w, s.cfg.Authority.ServerCA())
}

func writePEM(w http.ResponseWriter, cert *x509.Certificate) error {
	if cert == nil {
		return steward.Errorf(steward.CodeUnavailable, "the certificate authority is not available")
	}
	w.Header().Set("Content-Type", PEMContentType)
	_, _ = w.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	return nil
}

// --- tokens

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request, p principal) error {
	toks, err := s.cfg.Store.ListTokens(r.Context(), p.tenantID)
	if err != nil {
		return fmt.Errorf("list tokens: %w", err)
	}
	return writeJSON(w, http.StatusOK, list(toks))
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request, p principal) error {
	var req TokenRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Role == "" {
		req.Role = steward.RoleAdmin
	}
	if req.Role == steward.RoleSystem && p.role != steward.RoleSystem {
		return steward.Errorf(steward.CodePermissionDenied, "only a system token may create system tokens")
	}
	if perms, ok := steward.RolePermissions(req.Role); ok { // no token stronger than its creator (users.go)
		if err := p.mayGrant(perms, ""); err != nil {
			return err
		}
	}
	secret, tok, err := CreateToken(r.Context(), s.cfg.Store, p.tenantID, req.Name, req.Role, s.clock)
	if err != nil {
		return err
	}
	s.log.Info("api token created", "tenant", p.tenantID, "token", tok.ID, "role", tok.Role, "actor", p.actor())
	w.Header().Set("Location", "/api/v1/tokens/"+url.PathEscape(tok.ID))
	return writeJSON(w, http.StatusCreated, CreatedToken{APIToken: tok, Secret: secret})
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request, p principal) error {
	id := r.PathValue("id")
	if p.role != steward.RoleSystem {
		// An admin may not create system tokens, so it may not take them
		// away either.
		toks, err := s.cfg.Store.ListTokens(r.Context(), p.tenantID)
		if err != nil {
			return fmt.Errorf("list tokens: %w", err)
		}
		for _, t := range toks {
			if t.ID == id && t.Role == steward.RoleSystem {
				return steward.Errorf(steward.CodePermissionDenied, "only a system token may delete a system token")
			}
		}
	}
	if err := s.cfg.Store.DeleteToken(r.Context(), p.tenantID, id); err != nil {
		return fmt.Errorf("delete token: %w", err)
	}
	s.log.Info("api token deleted", "tenant", p.tenantID, "token", id, "actor", p.actor())
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- tenants

func (s *Server) listTenants(w http.ResponseWriter, r *http.Request, _ principal) error {
	ts, err := s.cfg.Store.ListTenants(r.Context())
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	return writeJSON(w, http.StatusOK, list(ts))
}

// createTenant registers a tenant with its first admin token, in one
// transaction so that a tenant never exists without a token to use it, and
// then creates its device CA (the Authority needs the tenant to exist). The
// Authority also creates a missing CA on first use, so should that last
// step fail the tenant is still whole: the failure is logged and the caller
// gets the token, which is shown only this once.
func (s *Server) createTenant(w http.ResponseWriter, r *http.Request, p principal) error {
	var req TenantRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if !tenantIDPattern.MatchString(req.ID) {
		return invalidf("tenant id must be 1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit")
	}
	if req.Name == "" {
		req.Name = req.ID
	}
	if err := checkName("tenant name", req.Name); err != nil {
		return err
	}
	ctx := r.Context()
	if _, err := s.cfg.Store.GetTenant(ctx, req.ID); err == nil {
		return steward.Errorf(steward.CodeConflict, "tenant %q already exists", req.ID)
	} else if !steward.IsNotFound(err) {
		return fmt.Errorf("look up tenant: %w", err)
	}
	t := steward.Tenant{ID: req.ID, Name: req.Name, Status: steward.TenantActive, CreatedAt: s.clock.Now().UTC()}
	var created CreatedTenant
	err := s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		if err := tx.CreateTenant(ctx, t); err != nil {
			return fmt.Errorf("create tenant: %w", err)
		}
		secret, tok, err := CreateToken(ctx, tx, t.ID, "admin", steward.RoleAdmin, s.clock)
		if err != nil {
			return err
		}
		created = CreatedTenant{Tenant: t, Token: CreatedToken{APIToken: tok, Secret: secret}}
		return nil
	})
	if err != nil {
		return err
	}
	if _, err := s.cfg.Authority.DeviceCA(ctx, t.ID); err != nil {
		s.log.Error("create device CA of new tenant; it will be created on first use", "request_id", requestIDFrom(ctx), "tenant", t.ID, "err", err)
	}
	s.log.Info("tenant created", "tenant", t.ID, "actor", p.actor())
	return writeJSON(w, http.StatusCreated, created)
}
