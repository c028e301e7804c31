package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// CRLContentType is the media type of a DER CRL (RFC 5280 §4.2.1.13).
const CRLContentType = "application/pkix-crl"

// CARotateRequest is the body of POST /api/v1/ca/rotate.
type CARotateRequest struct {
	// Overlap is how long the current device CA stays trusted, as a Go
	// duration ("720h").
	Overlap string `json:"overlap"`
	// ApprovalID is the approved request of an earlier call that asked
	// for approval.
	ApprovalID string `json:"approval_id,omitempty"`
}

// RevokeRequest is the body of the revocation routes.
type RevokeRequest struct {
	// Reason is a CRL reason for a certificate (unspecified,
	// key_compromise, …), free text for a group or a manufacturer CA.
	Reason string `json:"reason,omitempty"`
	// RevokeDevices, for a manufacturer CA, revokes the devices enrolled
	// through its group too.
	RevokeDevices bool `json:"revoke_devices,omitempty"`
}

// registerPKI registers the credential routes: CA rotation, revocation,
// CRLs, the expiry report, device credential rotation.
func (s *Server) registerPKI() {
	s.handle("GET", "/api/v1/ca/status", steward.PermPKIRead, s.caStatus)
	s.handle("POST", "/api/v1/ca/rotate", steward.PermPKIAdmin, s.caRotate)
	s.handle("POST", "/api/v1/ca/migrate", steward.PermPKIAdmin, s.caMigrate)
	s.handle("POST", "/api/v1/ca/retire-old", steward.PermPKIAdmin, s.caRetireOld)
	s.handle("GET", "/api/v1/crl", steward.PermPKIRead, s.tenantCRL)
	s.handle("GET", "/api/v1/certificates/expiring", steward.PermPKIRead, s.expiringCertificates)
	s.handle("POST", "/api/v1/certificates/{serial}/revoke", steward.PermDevicesRevoke, s.revokeCertificate)
	s.handle("POST", "/api/v1/enrollment-groups/{id}/revoke", steward.PermDevicesRevoke, s.revokeGroup)
	s.handle("POST", "/api/v1/enrollment-groups/{id}/revoke-ca", steward.PermDevicesRevoke, s.revokeManufacturerCA)
	s.handle("POST", "/api/v1/devices/{id}/rotate-credentials", steward.PermDevicesRevoke, s.rotateDeviceCredentials)
}

func (s *Server) credentials() (steward.Credentials, error) {
	if s.cfg.Credentials == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "credential management is not available on this node")
	}
	return s.cfg.Credentials, nil
}

func (s *Server) caStatus(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	gens, err := c.CAStatus(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(gens))
}

func (s *Server) caRotate(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	var req CARotateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	overlap, err := time.ParseDuration(req.Overlap)
	if err != nil || overlap <= 0 {
		return invalidf("overlap must be a positive duration such as 720h, not %q", req.Overlap)
	}
	res, err := c.RotateCA(r.Context(), p.tenantID, overlap, req.ApprovalID, p.actor())
	if err != nil {
		return err
	}
	if res.Approval != nil {
		return writeJSON(w, http.StatusAccepted, res)
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) caMigrate(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	res, err := c.MigrateFleet(r.Context(), p.tenantID, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) caRetireOld(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	gens, err := c.RetireOldCA(r.Context(), p.tenantID, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(gens))
}

func (s *Server) tenantCRL(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "issuer")
	if err != nil {
		return err
	}
	issuer := q.Get("issuer")
	if len(issuer) > 64 {
		return invalidf("issuer is a key ID of at most 64 hex digits")
	}
	der, err := c.CRL(r.Context(), p.tenantID, issuer)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", CRLContentType)
	_, _ = w.Write(der)
	return nil
}

func (s *Server) expiringCertificates(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "days", "limit")
	if err != nil {
		return err
	}
	days := 30
	if v := q.Get("days"); v != "" {
		if days, err = strconv.Atoi(v); err != nil || days < 1 || days > 3650 {
			return invalidf("days must be a whole number from 1 to 3650, not %q", v)
		}
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	certs, err := c.Expiring(r.Context(), p.tenantID, time.Duration(days)*24*time.Hour, limit)
	if err != nil {
		return err
	}
	if certs, err = inScope(s, r.Context(), p, certs, func(c steward.Certificate) string { return c.DeviceID }); err != nil { // users.go
		return err
	}
	for i := range certs {
		certs[i].PEM = "" // the report is about dates; GET /devices/{id} has the certificates
	}
	return writeJSON(w, http.StatusOK, list(certs))
}

func (s *Server) revokeCertificate(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	var req RevokeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.RevokeDevices {
		return invalidf("revoke_devices goes with a manufacturer CA only")
	}
	cert, err := c.RevokeCertificate(r.Context(), p.tenantID, r.PathValue("serial"), steward.RevocationReason(req.Reason), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, cert)
}

func (s *Server) revokeGroup(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	var req RevokeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("reason", req.Reason); err != nil {
		return err
	}
	if req.RevokeDevices {
		return invalidf("revoking a group revokes its devices; revoke_devices goes with revoke-ca")
	}
	res, err := c.RevokeGroup(r.Context(), p.tenantID, r.PathValue("id"), req.Reason, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) revokeManufacturerCA(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	var req RevokeRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("reason", req.Reason); err != nil {
		return err
	}
	res, err := c.RevokeManufacturerCA(r.Context(), p.tenantID, r.PathValue("id"), req.Reason, req.RevokeDevices, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) rotateDeviceCredentials(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.credentials()
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if !steward.ValidDeviceID(id) {
		return invalidf("%q is not a valid device ID", id)
	}
	res, err := c.RotateDevice(r.Context(), p.tenantID, id, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}
