package api

import (
	"context"
	"net/http"
	"strconv"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/deploy"
)

// DeploymentService runs deployments (deploy.Engine implements it).
type DeploymentService interface {
	Create(ctx context.Context, tenantID, actor string, req deploy.CreateRequest) (steward.Deployment, error)
	Approve(ctx context.Context, tenantID, id, actor, comment string) (steward.Deployment, error)
	Pause(ctx context.Context, tenantID, id, actor, reason string) (steward.Deployment, error)
	Resume(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error)
	Cancel(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error)
	Rollback(ctx context.Context, tenantID, id, actor string) (steward.Deployment, error)
	Progress(ctx context.Context, d steward.Deployment) (deploy.Progress, error)
}

// DeploymentRequest is the body of POST /api/v1/deployments: a name, the
// spec (target, query, phases, limits, gate, windows …) and whether to keep
// it a draft.
type DeploymentRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Draft       bool   `json:"draft,omitempty"`
	steward.DeploymentSpec
}

// DeploymentView is a deployment with its progress.
type DeploymentView struct {
	steward.Deployment
	Progress *deploy.Progress `json:"progress,omitempty"`
}

// DeploymentDeviceView is one device of a deployment with its history.
type DeploymentDeviceView struct {
	steward.DeploymentDevice
	History []steward.DeploymentDeviceEvent `json:"history"`
}

// DeploymentActionRequest is the optional body of approve and pause.
type DeploymentActionRequest struct {
	Comment string `json:"comment,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

func (s *Server) registerDeployments() {
	s.handle("GET", "/api/v1/deployments", steward.PermDeploymentsRead, s.listDeployments)
	s.handle("POST", "/api/v1/deployments", steward.PermDeploymentsCreate, s.createDeployment)
	s.handle("GET", "/api/v1/deployments/{id}", steward.PermDeploymentsRead, s.getDeployment)
	s.handle("POST", "/api/v1/deployments/{id}/approve", steward.PermDeploymentsApprove, s.deploymentAction("approve"))
	s.handle("POST", "/api/v1/deployments/{id}/pause", steward.PermDeploymentsControl, s.deploymentAction("pause"))
	s.handle("POST", "/api/v1/deployments/{id}/resume", steward.PermDeploymentsControl, s.deploymentAction("resume"))
	s.handle("POST", "/api/v1/deployments/{id}/cancel", steward.PermDeploymentsControl, s.deploymentAction("cancel"))
	s.handle("POST", "/api/v1/deployments/{id}/rollback", steward.PermDeploymentsControl, s.deploymentAction("rollback"))
	s.handle("GET", "/api/v1/deployments/{id}/devices", steward.PermDeploymentsRead, s.listDeploymentDevices)
	s.handle("GET", "/api/v1/deployments/{id}/devices/{device}", steward.PermDeploymentsRead, s.getDeploymentDevice)
}

// deployments returns the service, or 503 on a node without one.
func (s *Server) deployments() (DeploymentService, error) {
	if s.cfg.Deployments == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "deployments are not enabled on this node")
	}
	return s.cfg.Deployments, nil
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "state", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	st := steward.DeploymentState(q.Get("state"))
	if st != "" && !st.Valid() {
		return invalidf("unknown deployment state %q", st)
	}
	ds, err := s.cfg.Store.ListDeployments(r.Context(), p.tenantID, steward.DeploymentFilter{State: st, Limit: limit})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ds))
}

func (s *Server) createDeployment(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.deployments()
	if err != nil {
		return err
	}
	var req DeploymentRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := checkName("name", req.Name); err != nil {
		return err
	}
	// A caller limited to a fleet query deploys only within it.
	if req.Query, err = p.deviceQuery(req.Query); err != nil {
		return steward.WrapError(steward.CodeInvalid, err, "query: %v", err)
	}
	d, err := svc.Create(r.Context(), p.tenantID, p.actor(), deploy.CreateRequest{Name: req.Name, Description: req.Description,
		DeploymentSpec: req.DeploymentSpec, Draft: req.Draft})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, DeploymentView{Deployment: d})
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, p principal) error {
	svc, err := s.deployments()
	if err != nil {
		return err
	}
	if _, err := queryParams(r); err != nil {
		return err
	}
	d, err := s.cfg.Store.GetDeployment(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	pr, err := svc.Progress(r.Context(), d)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, DeploymentView{Deployment: d, Progress: &pr})
}

// deploymentAction serves approve, pause, resume, cancel and rollback; the
// answer is the deployment as it is now (for rollback: the new rollback
// deployment, 201).
func (s *Server) deploymentAction(action string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p principal) error {
		svc, err := s.deployments()
		if err != nil {
			return err
		}
		if _, err := queryParams(r); err != nil {
			return err
		}
		var req DeploymentActionRequest
		if r.ContentLength != 0 {
			if err := decodeJSON(w, r, &req); err != nil {
				return err
			}
		}
		id, ctx, tenant, actor := r.PathValue("id"), r.Context(), p.tenantID, p.actor()
		var d steward.Deployment
		status := http.StatusOK
		switch action {
		case "approve":
			d, err = svc.Approve(ctx, tenant, id, actor, req.Comment)
		case "pause":
			d, err = svc.Pause(ctx, tenant, id, actor, req.Reason)
		case "resume":
			d, err = svc.Resume(ctx, tenant, id, actor)
		case "cancel":
			d, err = svc.Cancel(ctx, tenant, id, actor)
		case "rollback":
			d, err = svc.Rollback(ctx, tenant, id, actor)
			status = http.StatusCreated
		}
		if err != nil {
			return err
		}
		return writeJSON(w, status, DeploymentView{Deployment: d})
	}
}

func (s *Server) listDeploymentDevices(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "state", "phase", "after", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	f := steward.DeploymentDeviceFilter{Phase: -1, After: q.Get("after"), Limit: limit}
	if f.Limit == 0 {
		f.Limit = 100
	}
	if st := steward.UpdateState(q.Get("state")); st != "" {
		if !st.Valid() {
			return invalidf("unknown device state %q", st)
		}
		f.States = []steward.UpdateState{st}
	}
	if ph := q.Get("phase"); ph != "" {
		if f.Phase, err = strconv.Atoi(ph); err != nil || f.Phase < 0 {
			return invalidf("phase must be a whole number from 0, not %q", ph)
		}
	}
	id := r.PathValue("id")
	if _, err := s.cfg.Store.GetDeployment(r.Context(), p.tenantID, id); err != nil {
		return err
	}
	rows, err := s.cfg.Store.ListDeploymentDevices(r.Context(), p.tenantID, id, f)
	if err != nil {
		return err
	}
	next := ""
	if len(rows) == f.Limit {
		next = rows[len(rows)-1].DeviceID // of the page before the role's filter, so that paging goes on past it
	}
	if rows, err = inScope(s, r.Context(), p, rows, func(d steward.DeploymentDevice) string { return d.DeviceID }); err != nil { // users.go
		return err
	}
	out := list(rows)
	out.NextAfter = next
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getDeploymentDevice(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	id, dev := r.PathValue("id"), r.PathValue("device")
	row, err := s.cfg.Store.GetDeploymentDevice(r.Context(), p.tenantID, id, dev)
	if err != nil {
		return err
	}
	hist, err := s.cfg.Store.ListDeploymentDeviceEvents(r.Context(), p.tenantID, id, dev)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, DeploymentDeviceView{DeploymentDevice: row, History: hist})
}
