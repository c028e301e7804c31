// Package tenants suspends, resumes and deletes tenants. A suspended tenant
// keeps its data; its tokens are refused by the API, its devices at the
// device plane, and its devices' live sessions are closed. Deletion removes
// every row of the tenant (the store finds the tables in its schema), after
// closing its sessions, and goes through the two-person rule when an
// approval policy of the caller's tenant covers "tenant.delete".
package tenants

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/steward-iot/steward"
)

// Store is what the service needs of the store.
type Store interface {
	GetTenant(ctx context.Context, id string) (steward.Tenant, error)
	ListDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) ([]steward.Device, error)
	CountDevices(ctx context.Context, tenantID string, q steward.DeviceQuery) (int, error)
	steward.TenantStore
}

// Config is what the service is built from.
type Config struct {
	Store Store
	// Bus closes the live sessions of a suspended or deleted tenant's
	// devices.
	Bus steward.Bus
	// Approvals, when set, gates deletion by the caller's tenant's
	// approval policies (action "tenant.delete", target "tenant:ID",
	// attributes "tenant" and "device_count").
	Approvals steward.Approvals
	// Auditor, when set, records every suspension, resumption and deletion.
	Auditor steward.Auditor
	Clock   steward.Clock
	Logger  *slog.Logger

	// Statuses, when set, is this node's cache of tenant statuses: it
	// forgets a tenant as soon as this service changes or deletes it.
	Statuses *StatusCache
}

// Service suspends, resumes and deletes tenants.
type Service struct {
	cfg Config
	log *slog.Logger
}

// New builds the service. Clock and Logger default to the system clock and
// a discarding logger.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

// ActionDelete is the approval and audit action of a tenant deletion.
const ActionDelete = "tenant.delete"

// checkNotDefault refuses to suspend or delete the default tenant: it holds
// the system tokens that administer every other tenant.
func checkNotDefault(id, verb string) error {
	if id == steward.DefaultTenant {
		return steward.Errorf(steward.CodeFailedPrecondition, "the default tenant holds the system tokens and cannot be %s", verb)
	}
	return nil
}

func (s *Service) record(ctx context.Context, r steward.AuditRecord) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	r.At = s.cfg.Clock.Now().UTC()
	if r.Outcome == "" {
		r.Outcome = steward.AuditSuccess
	}
	if err := s.cfg.Auditor.Record(ctx, r); err != nil {
		s.log.Error("audit record failed", "action", r.Action, "target", r.Target, "err", err)
		return fmt.Errorf("audit %s: %w", r.Action, err)
	}
	return nil
}

func asJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// Suspend suspends a tenant and closes its devices' live sessions.
// Suspending a suspended tenant changes nothing but its reason.
// actorTenant is the tenant of the caller, whose audit log records it.
func (s *Service) Suspend(ctx context.Context, id, reason, actor, actorTenant string) (steward.Tenant, error) {
	if err := checkNotDefault(id, "suspended"); err != nil {
		return steward.Tenant{}, err
	}
	before, err := s.cfg.Store.GetTenant(ctx, id)
	if err != nil {
		return steward.Tenant{}, err
	}
	t, err := s.cfg.Store.SetTenantStatus(ctx, id, steward.TenantSuspended, reason, s.cfg.Clock.Now())
	if err != nil {
		return steward.Tenant{}, err
	}
	s.cfg.Statuses.Forget(id) // refused on this node from the next request on
	s.log.Warn("tenant suspended", "tenant", id, "reason", reason, "actor", actor)
	if err := s.record(ctx, steward.AuditRecord{TenantID: actorTenant, Actor: actor, Action: "tenant.suspend", Target: "tenant:" + id,
		Detail: reason, Before: asJSON(before), After: asJSON(t)}); err != nil {
		return t, err
	}
	n, err := s.closeSessions(ctx, id, "tenant suspended")
	if err != nil {
		return t, err
	}
	s.log.Info("sessions of a suspended tenant closed", "tenant", id, "devices", n)
	return t, nil
}

// Resume makes a suspended tenant active again.
func (s *Service) Resume(ctx context.Context, id, actor, actorTenant string) (steward.Tenant, error) {
	before, err := s.cfg.Store.GetTenant(ctx, id)
	if err != nil {
		return steward.Tenant{}, err
	}
	t, err := s.cfg.Store.SetTenantStatus(ctx, id, steward.TenantActive, "", s.cfg.Clock.Now())
	if err != nil {
		return steward.Tenant{}, err
	}
	s.cfg.Statuses.Forget(id)
	s.log.Info("tenant resumed", "tenant", id, "actor", actor)
	return t, s.record(ctx, steward.AuditRecord{TenantID: actorTenant, Actor: actor, Action: "tenant.resume", Target: "tenant:" + id,
		Before: asJSON(before), After: asJSON(t)})
}

// closeSessions tells the device plane to close the session of every
// device of the tenant (a device without one is not affected), a page at
// a time, and returns how many devices it told.
func (s *Service) closeSessions(ctx context.Context, tenantID, reason string) (int, error) {
	if s.cfg.Bus == nil {
		return 0, nil
	}
	n, after := 0, ""
	for {
		ds, err := s.cfg.Store.ListDevices(ctx, tenantID, steward.DeviceQuery{After: after, Limit: 1000})
		if err != nil {
			return n, fmt.Errorf("list devices of tenant %s: %w", tenantID, err)
		}
		for _, d := range ds {
			if err := s.cfg.Bus.Control(ctx, steward.SessionControl{TenantID: tenantID, DeviceID: d.ID, Close: true, Reason: reason}); err != nil {
				return n, fmt.Errorf("close session of %s: %w", d.ID, err)
			}
			n++
		}
		if len(ds) < 1000 {
			return n, nil
		}
		after = ds[len(ds)-1].ID
	}
}

// DeleteResult is what Delete did: deleted the tenant, or opened an
// approval request that must be approved first.
type DeleteResult struct {
	Deleted bool
	// Approval is the request opened (Deleted false) or used (Deleted true).
	Approval *steward.ApprovalRequest
}

// Delete deletes a tenant and every row of it, after closing its devices'
// sessions. When an approval policy of the caller's tenant covers the
// deletion, the first call opens an approval request and returns it; once
// others approve it, the call is repeated with its ID. An approval only
// counts for this action on this tenant, and only when it is newer than the
// tenant (a tenant created again under the same ID needs a new one).
func (s *Service) Delete(ctx context.Context, id, approvalID, reason, actor, actorTenant string) (DeleteResult, error) {
	if err := checkNotDefault(id, "deleted"); err != nil {
		return DeleteResult{}, err
	}
	t, err := s.cfg.Store.GetTenant(ctx, id)
	if err != nil {
		return DeleteResult{}, err
	}
	var used *steward.ApprovalRequest
	if s.cfg.Approvals != nil {
		count, err := s.cfg.Store.CountDevices(ctx, id, steward.DeviceQuery{})
		if err != nil {
			return DeleteResult{}, fmt.Errorf("count devices of tenant %s: %w", id, err)
		}
		target := "tenant:" + id
		attrs := map[string]string{"tenant": id, "device_count": strconv.Itoa(count)}
		need, why, err := s.cfg.Approvals.Required(ctx, actorTenant, ActionDelete, target, attrs)
		if err != nil {
			return DeleteResult{}, err
		}
		switch {
		case need > 0 && approvalID == "":
			req, err := s.cfg.Approvals.Request(ctx, steward.ApprovalRequest{TenantID: actorTenant, Action: ActionDelete, Target: target,
				Reason: reason, Requester: actor, Attributes: attrs, Approvals: need})
			if err != nil {
				return DeleteResult{}, err
			}
			s.log.Info("tenant deletion waits for approval", "tenant", id, "approval", req.ID, "why", why)
			return DeleteResult{Approval: &req}, nil
		case approvalID != "":
			a, err := s.cfg.Approvals.Get(ctx, actorTenant, approvalID)
			if err != nil {
				return DeleteResult{}, err
			}
			switch {
			case a.Action != ActionDelete || a.Target != target:
				return DeleteResult{}, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is for %s on %s, not for deleting tenant %s", a.ID, a.Action, a.Target, id)
			case a.State != steward.ApprovalApproved:
				return DeleteResult{}, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is %s, not approved", a.ID, a.State)
			case a.CreatedAt.Before(t.CreatedAt):
				return DeleteResult{}, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is older than tenant %s", a.ID, id)
			}
			used = &a
		}
	}
	n, err := s.closeSessions(ctx, id, "tenant deleted")
	if err != nil {
		return DeleteResult{}, err
	}
	if err := s.cfg.Store.DeleteTenant(ctx, id); err != nil {
		return DeleteResult{}, err
	}
	s.cfg.Statuses.Forget(id)
	s.log.Warn("tenant deleted", "tenant", id, "devices", n, "actor", actor)
	detail := reason
	if used != nil {
		detail = "approved by request " + used.ID + "; " + reason
	}
	return DeleteResult{Deleted: true, Approval: used}, s.record(ctx, steward.AuditRecord{TenantID: actorTenant, Actor: actor,
		Action: ActionDelete, Target: "tenant:" + id, Detail: detail, Before: asJSON(t)})
}
