package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/steward-iot/steward"
)

// DeploymentRequest creates a deployment: a name, the spec and whether to
// keep it a draft.
type DeploymentRequest struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	Draft       bool   `json:"draft,omitempty"`
	steward.DeploymentSpec
}

// Deployment is a deployment as the API shows it, with its progress when
// it was read alone.
type Deployment struct {
	steward.Deployment
	Progress *DeploymentProgress `json:"progress,omitempty"`
}

// DeploymentProgress counts a deployment's devices by state, overall and
// per phase.
type DeploymentProgress struct {
	Total  int                         `json:"total"`
	States map[steward.UpdateState]int `json:"states"`
	Phases []struct {
		Index  int                         `json:"index"`
		Name   string                      `json:"name"`
		Total  int                         `json:"total"`
		States map[steward.UpdateState]int `json:"states"`
	} `json:"phases"`
}

// DeploymentDevice is one device of a deployment with its history.
type DeploymentDevice struct {
	steward.DeploymentDevice
	History []steward.DeploymentDeviceEvent `json:"history"`
}

// CreateDeployment creates a deployment.
func (c *Client) CreateDeployment(ctx context.Context, req DeploymentRequest) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/api/v1/deployments", nil, req, &out)
	return out, err
}

// ListDeployments returns the tenant's deployments (in one state, when
// given), newest first.
func (c *Client) ListDeployments(ctx context.Context, state steward.DeploymentState, limit int) ([]Deployment, error) {
	v := url.Values{}
	if state != "" {
		v.Set("state", string(state))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var out list[Deployment]
	err := c.do(ctx, http.MethodGet, "/api/v1/deployments", v, nil, &out)
	return out.Items, err
}

// GetDeployment returns a deployment with its progress.
func (c *Client) GetDeployment(ctx context.Context, id string) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodGet, "/api/v1/deployments/"+seg(id), nil, nil, &out)
	return out, err
}

// deploymentAction posts to /api/v1/deployments/{id}/{action}.
func (c *Client) deploymentAction(ctx context.Context, id, action string, body any) (Deployment, error) {
	var out Deployment
	err := c.do(ctx, http.MethodPost, "/api/v1/deployments/"+seg(id)+"/"+action, nil, body, &out)
	return out, err
}

// ApproveDeployment approves a deployment awaiting approval (not one's own).
func (c *Client) ApproveDeployment(ctx context.Context, id, comment string) (Deployment, error) {
	return c.deploymentAction(ctx, id, "approve", map[string]string{"comment": comment})
}

// PauseDeployment pauses a deployment.
func (c *Client) PauseDeployment(ctx context.Context, id, reason string) (Deployment, error) {
	return c.deploymentAction(ctx, id, "pause", map[string]string{"reason": reason})
}

// ResumeDeployment resumes a paused deployment or submits a draft.
func (c *Client) ResumeDeployment(ctx context.Context, id string) (Deployment, error) {
	return c.deploymentAction(ctx, id, "resume", nil)
}

// CancelDeployment aborts a deployment.
func (c *Client) CancelDeployment(ctx context.Context, id string) (Deployment, error) {
	return c.deploymentAction(ctx, id, "cancel", nil)
}

// RollbackDeployment starts the rollback of a deployment and returns the
// rollback deployment.
func (c *Client) RollbackDeployment(ctx context.Context, id string) (Deployment, error) {
	return c.deploymentAction(ctx, id, "rollback", nil)
}

// ListDeploymentDevices returns a deployment's devices matching f (Phase
// -1: all phases), by device ID, and the cursor of the next page.
func (c *Client) ListDeploymentDevices(ctx context.Context, id string, f steward.DeploymentDeviceFilter) ([]steward.DeploymentDevice, string, error) {
	v := url.Values{}
	if len(f.States) == 1 {
		v.Set("state", string(f.States[0]))
	}
	if f.Phase >= 0 {
		v.Set("phase", strconv.Itoa(f.Phase))
	}
	if f.After != "" {
		v.Set("after", f.After)
	}
	if f.Limit > 0 {
		v.Set("limit", strconv.Itoa(f.Limit))
	}
	var out list[steward.DeploymentDevice]
	err := c.do(ctx, http.MethodGet, "/api/v1/deployments/"+seg(id)+"/devices", v, nil, &out)
	return out.Items, out.NextAfter, err
}

// GetDeploymentDevice returns one device of a deployment with its history.
func (c *Client) GetDeploymentDevice(ctx context.Context, id, deviceID string) (DeploymentDevice, error) {
	var out DeploymentDevice
	err := c.do(ctx, http.MethodGet, "/api/v1/deployments/"+seg(id)+"/devices/"+seg(deviceID), nil, nil, &out)
	return out, err
}
