package api

import (
	"context"
	"net/http"

	"github.com/steward-iot/steward"
)

// PrivacyService serves a person's rights over a device's data
// (privacy.Service implements it).
type PrivacyService interface {
	Export(ctx context.Context, tenantID, deviceID string) (steward.DeviceExport, error)
	Erase(ctx context.Context, tenantID, deviceID, actor string) (steward.DeviceTombstone, error)
	Consent(ctx context.Context, tenantID, deviceID string) (steward.DeviceConsent, error)
	SetConsent(ctx context.Context, c steward.DeviceConsent, actor string) (steward.DeviceConsent, error)
}

// ConsentRequest is the body of PUT /api/v1/devices/{id}/consent.
type ConsentRequest struct {
	// Personal says the device belongs to a person, whose consent then
	// decides what is kept of its data.
	Personal bool `json:"personal"`
	// Granted lists the data classes consented to: telemetry, events,
	// location.
	Granted []string `json:"granted"`
}

func (s *Server) registerPrivacy() {
	s.handle("GET", "/api/v1/devices/{id}/export", steward.PermDevicesRead, s.exportDevice)
	s.handle("POST", "/api/v1/devices/{id}/erase", steward.PermDevicesDecommission, s.eraseDevice)
	s.handle("GET", "/api/v1/devices/{id}/consent", steward.PermDevicesRead, s.getConsent)
	s.handle("PUT", "/api/v1/devices/{id}/consent", steward.PermDevicesWrite, s.putConsent)
}

func (s *Server) privacy() (PrivacyService, error) {
	if s.cfg.Privacy == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "device export and erasure are not enabled on this server")
	}
	return s.cfg.Privacy, nil
}

func (s *Server) exportDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.privacy()
	if err != nil {
		return err
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	id := d.ID
	x, err := svc.Export(r.Context(), p.tenantID, id)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Disposition", `attachment; filename="device-`+id+`.json"`)
	return writeJSON(w, http.StatusOK, x)
}

func (s *Server) eraseDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.privacy()
	if err != nil {
		return err
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	id := d.ID
	t, err := svc.Erase(r.Context(), p.tenantID, id, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) getConsent(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.privacy()
	if err != nil {
		return err
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	id := d.ID
	c, err := svc.Consent(r.Context(), p.tenantID, id)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}

func (s *Server) putConsent(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.privacy()
	if err != nil {
		return err
	}
	var req ConsentRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	id := d.ID
	c, err := svc.SetConsent(r.Context(), steward.DeviceConsent{TenantID: p.tenantID, DeviceID: id, Personal: req.Personal, Granted: req.Granted}, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, c)
}
