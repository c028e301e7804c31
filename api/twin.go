package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/steward-iot/steward"
)

// TwinService is configuration as a device twin (twin.Service): templates,
// their immutable versions, diffs, each device's twin and drift.
type TwinService interface {
	CreateTemplate(ctx context.Context, t steward.ConfigTemplate, actor string) (steward.ConfigTemplate, error)
	GetTemplate(ctx context.Context, tenantID, id string) (steward.ConfigTemplate, error)
	ListTemplates(ctx context.Context, tenantID string) ([]steward.ConfigTemplate, error)
	UpdateTemplate(ctx context.Context, t steward.ConfigTemplate, actor string) (steward.ConfigTemplate, error)
	DeleteTemplate(ctx context.Context, tenantID, id, actor string) error
	CreateVersion(ctx context.Context, v steward.ConfigVersion, actor string) (steward.ConfigVersion, error)
	GetVersion(ctx context.Context, tenantID, id string) (steward.ConfigVersion, error)
	ListVersions(ctx context.Context, tenantID, templateID string) ([]steward.ConfigVersion, error)
	Diff(ctx context.Context, tenantID, id, against string) ([]steward.ConfigChange, error)
	GetTwin(ctx context.Context, tenantID, deviceID string) (steward.Twin, error)
	UpdateTwin(ctx context.Context, tenantID, deviceID string, patch json.RawMessage, ifMatch *int64, actor string) (steward.Twin, error)
	ApplyConfigVersion(ctx context.Context, tenantID, deviceID, versionID, actor string) (steward.Twin, error)
	Drifted(ctx context.Context, tenantID string, f steward.TwinFilter) ([]steward.Twin, int, error)
}

// ConfigTemplateRequest is the body of POST /api/v1/config-templates.
type ConfigTemplateRequest struct {
	Name        string              `json:"name"`
	Layer       steward.ConfigLayer `json:"layer"`
	Selector    string              `json:"selector,omitempty"`
	Description string              `json:"description,omitempty"`
}

// ConfigTemplatePatch is the body of PATCH /api/v1/config-templates/{id}:
// what may change of a template; nil fields stay.
type ConfigTemplatePatch struct {
	Name        *string `json:"name,omitempty"`
	Description *string `json:"description,omitempty"`
}

// ConfigVersionRequest is the body of POST
// /api/v1/config-templates/{id}/versions: a new immutable version.
type ConfigVersionRequest struct {
	Document json.RawMessage `json:"document"`
	Schema   json.RawMessage `json:"schema,omitempty"`
	Message  string          `json:"message"`
}

// ApplyVersionRequest is the body of POST /api/v1/devices/{id}/twin/apply.
type ApplyVersionRequest struct {
	VersionID string `json:"version_id"`
}

// Drift is the answer of GET /api/v1/drift.
type Drift struct {
	List[steward.Twin]
	// Count is how many of the tenant's devices are drifted in all.
	Count int `json:"count"`
}

func (s *Server) registerTwins() {
	s.handle("GET", "/api/v1/devices/{id}/twin", steward.PermConfigRead, s.getTwin)
	s.handle("PATCH", "/api/v1/devices/{id}/twin", steward.PermConfigWrite, s.patchTwin)
	s.handle("POST", "/api/v1/devices/{id}/twin/apply", steward.PermConfigWrite, s.applyTwinVersion)
	s.handle("GET", "/api/v1/config-templates", steward.PermConfigRead, s.listConfigTemplates)
	s.handle("POST", "/api/v1/config-templates", steward.PermConfigWrite, s.createConfigTemplate)
	s.handle("GET", "/api/v1/config-templates/{id}", steward.PermConfigRead, s.getConfigTemplate)
	s.handle("PATCH", "/api/v1/config-templates/{id}", steward.PermConfigWrite, s.patchConfigTemplate)
	s.handle("DELETE", "/api/v1/config-templates/{id}", steward.PermConfigWrite, s.deleteConfigTemplate)
	s.handle("GET", "/api/v1/config-templates/{id}/versions", steward.PermConfigRead, s.listConfigVersions)
	s.handle("POST", "/api/v1/config-templates/{id}/versions", steward.PermConfigWrite, s.createConfigVersion)
	s.handle("GET", "/api/v1/config-versions/{id}", steward.PermConfigRead, s.getConfigVersion)
	s.handle("GET", "/api/v1/config-versions/{id}/diff", steward.PermConfigRead, s.diffConfigVersion)
	s.handle("GET", "/api/v1/drift", steward.PermConfigRead, s.listDrift)
}

// twins returns the twin service, or CodeUnavailable on a node without one.
func (s *Server) twins() (TwinService, error) {
	if s.cfg.Twins == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "device twins are not available on this node")
	}
	return s.cfg.Twins, nil
}

// writeTwin answers with a twin and its desired version as the ETag, for
// the If-Match of the next change.
func writeTwin(w http.ResponseWriter, status int, t steward.Twin) error {
	w.Header().Set("ETag", strconv.Quote(strconv.FormatInt(t.DesiredVersion, 10)))
	return writeJSON(w, status, t)
}

func (s *Server) getTwin(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	t, err := svc.GetTwin(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeTwin(w, http.StatusOK, t)
}

// ifMatch reads an If-Match header holding one desired version, quoted as
// the ETag is or bare; no header is no condition.
func ifMatch(r *http.Request) (*int64, error) {
	h := strings.TrimSpace(r.Header.Get("If-Match"))
	if h == "" {
		return nil, nil
	}
	v, err := strconv.ParseInt(strings.Trim(strings.TrimPrefix(h, "W/"), `"`), 10, 64)
	if err != nil || v < 0 || strings.Contains(h, ",") {
		return nil, invalidf("If-Match must be one desired version, as the ETag gives it (\"3\"), not %q", h)
	}
	return &v, nil
}

func (s *Server) patchTwin(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	v, err := ifMatch(r)
	if err != nil {
		return err
	}
	var patch json.RawMessage
	if err := decodeJSON(w, r, &patch); err != nil {
		return err
	}
	t, err := svc.UpdateTwin(r.Context(), p.tenantID, r.PathValue("id"), patch, v, p.actor())
	if err != nil {
		if v != nil && steward.ErrorCode(err) == steward.CodeFailedPrecondition {
			// RFC 9110: a failed If-Match is 412, not the API's usual 409.
			return s.preconditionFailed(w, r, err)
		}
		return err
	}
	return writeTwin(w, http.StatusOK, t)
}

// preconditionFailed answers 412 with the problem document of err.
func (s *Server) preconditionFailed(w http.ResponseWriter, r *http.Request, err error) error {
	p := Problem{Type: "about:blank", Title: http.StatusText(http.StatusPreconditionFailed), Status: http.StatusPreconditionFailed,
		Detail: steward.ErrorMessage(err), Code: steward.CodeFailedPrecondition, RequestID: requestIDFrom(r.Context())}
	body, mErr := marshal(p)
	if mErr != nil {
		return steward.WrapError(steward.CodeInternal, mErr, "encode problem")
	}
	w.Header().Set("Content-Type", ProblemContentType)
	w.WriteHeader(http.StatusPreconditionFailed)
	_, _ = w.Write(body)
	return nil
}

func (s *Server) applyTwinVersion(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	var req ApplyVersionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if req.VersionID == "" {
		return invalidf("version_id is required")
	}
	t, err := svc.ApplyConfigVersion(r.Context(), p.tenantID, r.PathValue("id"), req.VersionID, p.actor())
	if err != nil {
		return err
	}
	return writeTwin(w, http.StatusOK, t)
}

func (s *Server) listConfigTemplates(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	ts, err := svc.ListTemplates(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ts))
}

func (s *Server) createConfigTemplate(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	var req ConfigTemplateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	t, err := svc.CreateTemplate(r.Context(), steward.ConfigTemplate{TenantID: p.tenantID, Name: req.Name, Layer: req.Layer,
		Selector: req.Selector, Description: req.Description}, p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/config-templates/"+t.ID)
	return writeJSON(w, http.StatusCreated, t)
}

func (s *Server) getConfigTemplate(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	t, err := svc.GetTemplate(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) patchConfigTemplate(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	var req ConfigTemplatePatch
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	t, err := svc.GetTemplate(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	if req.Name != nil {
		t.Name = *req.Name
	}
	if req.Description != nil {
		t.Description = *req.Description
	}
	t, err = svc.UpdateTemplate(r.Context(), t, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, t)
}

func (s *Server) deleteConfigTemplate(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	if err := svc.DeleteTemplate(r.Context(), p.tenantID, r.PathValue("id"), p.actor()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) listConfigVersions(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	vs, err := svc.ListVersions(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(vs))
}

func (s *Server) createConfigVersion(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	var req ConfigVersionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	v, err := svc.CreateVersion(r.Context(), steward.ConfigVersion{TenantID: p.tenantID, TemplateID: r.PathValue("id"),
		Document: req.Document, Schema: req.Schema, Message: req.Message}, p.actor())
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/config-versions/"+v.ID)
	return writeJSON(w, http.StatusCreated, v)
}

func (s *Server) getConfigVersion(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	v, err := svc.GetVersion(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) diffConfigVersion(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "against")
	if err != nil {
		return err
	}
	ch, err := svc.Diff(r.Context(), p.tenantID, r.PathValue("id"), q.Get("against"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ch))
}

func (s *Server) listDrift(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.twins()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "after", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	f := steward.TwinFilter{After: q.Get("after"), Limit: limit}
	ts, n, err := svc.Drifted(r.Context(), p.tenantID, f)
	if err != nil {
		return err
	}
	if limit == 0 {
		limit = 100
	}
	next := ""
	if len(ts) == limit {
		next = ts[len(ts)-1].DeviceID // of the page before the role's filter, so that paging goes on past it
	}
	if p.fleetQuery != "" {
		if ts, err = inScope(s, r.Context(), p, ts, func(t steward.Twin) string { return t.DeviceID }); err != nil { // users.go
			return err
		}
		if n, err = s.scopedDriftCount(r.Context(), svc, p); err != nil { // scope.go
			return err
		}
	}
	out := Drift{List: list(ts), Count: n}
	out.NextAfter = next
	return writeJSON(w, http.StatusOK, out)
}
