package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

// DecommissionCertificateContentType is the media type of a
// decommissioning certificate: a PEM CMS SignedData.
const DecommissionCertificateContentType = "application/pkcs7-mime"

// registerDecommission registers decommissioning and transfer.
func (s *Server) registerDecommission() {
	s.handle("POST", "/api/v1/devices/{id}/decommission", steward.PermDevicesDecommission, s.decommissionDevice)
	s.handle("POST", "/api/v1/devices/{id}/transfer", steward.PermDevicesDecommission, s.transferDevice)
	s.handle("GET", "/api/v1/decommissions", steward.PermDevicesRead, s.listDecommissions)
	s.handle("GET", "/api/v1/decommissions/{id}", steward.PermDevicesRead, s.getDecommission)
	s.handle("GET", "/api/v1/decommissions/{id}/certificate", steward.PermDevicesRead, s.decommissionCertificate)
}

func (s *Server) decommissioner() (steward.Decommissioner, error) {
	if s.cfg.Decommissioner == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "decommissioning is not available on this node")
	}
	return s.cfg.Decommissioner, nil
}

func (s *Server) decommissionDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.decommissioner()
	if err != nil {
		return err
	}
	var req steward.DecommissionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if !steward.ValidDeviceID(id) {
		return invalidf("%q is not a valid device ID", id)
	}
	res, err := d.Decommission(r.Context(), p.tenantID, id, req, p.actor())
	if err != nil {
		return err
	}
	if res.Approval != nil {
		return writeJSON(w, http.StatusAccepted, res)
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) transferDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.decommissioner()
	if err != nil {
		return err
	}
	var req steward.TransferRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if !steward.ValidDeviceID(id) {
		return invalidf("%q is not a valid device ID", id)
	}
	dev, err := d.Transfer(r.Context(), p.tenantID, id, req, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, dev)
}

func (s *Server) listDecommissions(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.decommissioner()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "device")
	if err != nil {
		return err
	}
	if dev := q.Get("device"); dev != "" && !steward.ValidDeviceID(dev) {
		return invalidf("device %q is not a valid device ID", dev)
	}
	recs, err := d.ListDecommissions(r.Context(), p.tenantID, q.Get("device"))
	if err != nil {
		return err
	}
	if recs, err = inScope(s, r.Context(), p, recs, func(d steward.Decommission) string { return d.DeviceID }); err != nil { // users.go
		return err
	}
	return writeJSON(w, http.StatusOK, list(recs))
}

func (s *Server) getDecommission(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.decommissioner()
	if err != nil {
		return err
	}
	rec, err := d.GetDecommission(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, rec)
}

func (s *Server) decommissionCertificate(w http.ResponseWriter, r *http.Request, p principal) error {
	d, err := s.decommissioner()
	if err != nil {
		return err
	}
	rec, err := d.GetDecommission(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if rec.Certificate == "" {
		return steward.Errorf(steward.CodeFailedPrecondition, "decommissioning %s is %s and has no certificate", rec.ID, rec.State)
	}
	w.Header().Set("Content-Type", DecommissionCertificateContentType)
	_, _ = w.Write([]byte(rec.Certificate))
	return nil
}
