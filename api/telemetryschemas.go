package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

// TelemetrySchemaRequest is the body of PUT /api/v1/telemetry-schemas/{model}:
// the metric names and prefixes ("biz.*") devices of the model may send.
// An empty list allows nothing; to allow everything, delete the schema.
type TelemetrySchemaRequest struct {
	Allow []string `json:"allow"`
}

// schemaModel reads the {model} path value. A model no schema can have is
// not found on reads; on a write it is invalid.
func schemaModel(r *http.Request, write bool) (string, error) {
	m := r.PathValue("model")
	if !steward.ValidModel(m) {
		if write {
			return "", invalidf("model %q: use 1 to %d characters, no '/', control characters or surrounding spaces", m, steward.MaxModelLen)
		}
		return "", steward.Errorf(steward.CodeNotFound, "telemetry schema of model %q not found", m)
	}
	return m, nil
}

func (s *Server) listTelemetrySchemas(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	schemas, err := s.cfg.Store.ListTelemetrySchemas(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(schemas))
}

func (s *Server) getTelemetrySchema(w http.ResponseWriter, r *http.Request, p principal) error {
	model, err := schemaModel(r, false)
	if err != nil {
		return err
	}
	sc, err := s.cfg.Store.GetTelemetrySchema(r.Context(), p.tenantID, model)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, sc)
}

func (s *Server) putTelemetrySchema(w http.ResponseWriter, r *http.Request, p principal) error {
	model, err := schemaModel(r, true)
	if err != nil {
		return err
	}
	var req TelemetrySchemaRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.Allow == nil {
		return invalidf("allow is required: a list of metric names and prefixes such as \"biz.*\" (an empty list allows nothing)")
	}
	sc := steward.TelemetrySchema{TenantID: p.tenantID, Model: model, Allow: req.Allow, UpdatedAt: s.clock.Now().UTC()}
	if err := sc.Validate(); err != nil {
		return err
	}
	if err := s.cfg.Store.PutTelemetrySchema(r.Context(), sc); err != nil {
		return err
	}
	s.schemasChanged(p.tenantID)
	stored, err := s.cfg.Store.GetTelemetrySchema(r.Context(), p.tenantID, model)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, stored)
}

func (s *Server) deleteTelemetrySchema(w http.ResponseWriter, r *http.Request, p principal) error {
	model, err := schemaModel(r, false)
	if err != nil {
		return err
	}
	if err := s.cfg.Store.DeleteTelemetrySchema(r.Context(), p.tenantID, model); err != nil {
		return err
	}
	s.schemasChanged(p.tenantID)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// schemasChanged tells the telemetry intake of this node, so that the
// change applies at once here (other nodes see it within their cache's
// TTL).
func (s *Server) schemasChanged(tenantID string) {
	if s.cfg.TelemetrySchemasChanged != nil {
		s.cfg.TelemetrySchemasChanged(tenantID)
	}
}
