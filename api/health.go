package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

func (s *Server) deviceHealth(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	if s.cfg.Health == nil {
		return steward.Errorf(steward.CodeUnavailable, "device health is not enabled on this server")
	}
	h, err := s.cfg.Health.Device(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, h)
}
