// Package approvals is the two-person rule: a tenant's approval policies say
// which actions need approval, when (conditions on the action's
// attributes) and by whom; a request waits for that many distinct
// approvers, none of them its requester, and expires if they do not come.
// Deployments, policy changes, role grants, bulk quarantine, decommissioning
// and tenant deletion all use this one mechanism (steward.Approvals).
package approvals

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Store is what the service needs of the store.
type Store interface {
	steward.ApprovalStore
	ListTokens(ctx context.Context, tenantID string) ([]steward.APIToken, error)
}

// Approver is what the service knows of someone who decides: the role
// they act in and the permissions they hold in the tenant.
type Approver struct {
	Role        steward.Role
	Permissions []steward.Permission
}

// can reports whether the approver holds p.
func (a Approver) can(p steward.Permission) bool { return slices.Contains(a.Permissions, p) }

// Resolver finds the rights of an actor ("token:ID", "user:ID") in a tenant,
// for Decide; CodeNotFound when there is no such actor.
type Resolver interface {
	Approver(ctx context.Context, tenantID, actor string) (Approver, error)
}

// Config is what the service is built from.
type Config struct {
	Store Store
	// Resolver finds an approver's rights for Decide; nil reads users,
	// account tokens and custom roles (OperatorResolver) when the store
	// has them, else API tokens (TokenResolver).
	Resolver Resolver
	// Auditor, when set, records every policy change, request and
	// decision.
	Auditor steward.Auditor
	// OnDecided, when set, is told of each request that Decide approves or
	// rejects, after it is stored: the requesting service may act at once
	// instead of waiting to be asked again.
	OnDecided func(ctx context.Context, r steward.ApprovalRequest)
	Clock     steward.Clock
	Logger    *slog.Logger
}

// Service implements steward.Approvals and manages approval policies.
type Service struct {
	store    Store
	resolver Resolver
	audit    steward.Auditor
	onDec    func(ctx context.Context, r steward.ApprovalRequest)
	clock    steward.Clock
	log      *slog.Logger
}

var _ steward.Approvals = (*Service)(nil)

// New builds the service. Clock and Logger default to the system clock and
// a discarding logger.
func New(cfg Config) *Service {
	s := &Service{store: cfg.Store, resolver: cfg.Resolver, audit: cfg.Auditor, onDec: cfg.OnDecided, clock: cfg.Clock, log: cfg.Logger}
	if s.clock == nil {
		s.clock = steward.SystemClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.resolver == nil {
		if os, ok := cfg.Store.(OperatorStore); ok {
			s.resolver = OperatorResolver{Store: os, Clock: s.clock}
		} else {
			s.resolver = TokenResolver{Store: cfg.Store}
		}
	}
	return s
}

// TokenResolver resolves "token:ID" actors through the store's API tokens
// and their built-in roles.
type TokenResolver struct {
	Store interface {
		ListTokens(ctx context.Context, tenantID string) ([]steward.APIToken, error)
	}
}

// Approver implements Resolver.
func (r TokenResolver) Approver(ctx context.Context, tenantID, actor string) (Approver, error) {
	id, ok := strings.CutPrefix(actor, "token:")
	if !ok || id == "" {
		return Approver{}, steward.Errorf(steward.CodeNotFound, "approver %q is not known here", actor)
	}
	toks, err := r.Store.ListTokens(ctx, tenantID)
	if err != nil {
		return Approver{}, fmt.Errorf("look up approver: %w", err)
	}
	for _, t := range toks {
		if t.ID == id {
			ps, _ := steward.RolePermissions(t.Role)
			return Approver{Role: t.Role, Permissions: ps}, nil
		}
	}
	return Approver{}, steward.Errorf(steward.CodeNotFound, "approver %q is not known here", actor)
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID makes a random ID with a prefix (100 bits).
func newID(prefix string) string {
	b := make([]byte, 13)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + lowerBase32.EncodeToString(b)[:20]
}

// record writes an audit record when the service has an Auditor.
func (s *Service) record(ctx context.Context, r steward.AuditRecord) error {
	if s.audit == nil {
		return nil
	}
	r.At = s.clock.Now().UTC()
	if r.Outcome == "" {
		r.Outcome = steward.AuditSuccess
	}
	if err := s.audit.Record(ctx, r); err != nil {
		s.log.Error("audit record failed", "action", r.Action, "target", r.Target, "err", err)
		return fmt.Errorf("audit %s: %w", r.Action, err)
	}
	return nil
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}

// CreatePolicy stores a new policy of p.TenantID; ID and creation time are
// set here, CreatedBy is the actor.
func (s *Service) CreatePolicy(ctx context.Context, p steward.ApprovalPolicy, actor string) (steward.ApprovalPolicy, error) {
	p.ID = newID("ap-")
	p.CreatedBy = actor
	p.CreatedAt = s.clock.Now().UTC()
	if p.Conditions == nil {
		p.Conditions = []steward.ApprovalCondition{}
	}
	if err := s.store.CreateApprovalPolicy(ctx, p); err != nil {
		return steward.ApprovalPolicy{}, err
	}
	stored, err := s.store.GetApprovalPolicy(ctx, p.TenantID, p.ID)
	if err != nil {
		return steward.ApprovalPolicy{}, err
	}
	return stored, s.record(ctx, steward.AuditRecord{TenantID: p.TenantID, Actor: actor, Action: "approval_policy.create",
		Target: "approval_policy:" + p.ID, After: mustJSON(stored)})
}

// GetPolicy returns a policy of the tenant.
func (s *Service) GetPolicy(ctx context.Context, tenantID, id string) (steward.ApprovalPolicy, error) {
	return s.store.GetApprovalPolicy(ctx, tenantID, id)
}

// ListPolicies returns the tenant's policies, by name.
func (s *Service) ListPolicies(ctx context.Context, tenantID string) ([]steward.ApprovalPolicy, error) {
	return s.store.ListApprovalPolicies(ctx, tenantID)
}

// DeletePolicy deletes a policy; the requests it set keep their
// requirements.
func (s *Service) DeletePolicy(ctx context.Context, tenantID, id, actor string) error {
	before, err := s.store.GetApprovalPolicy(ctx, tenantID, id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteApprovalPolicy(ctx, tenantID, id); err != nil {
		return err
	}
	return s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "approval_policy.delete",
		Target: "approval_policy:" + id, Before: mustJSON(before)})
}

// strictest returns the policy of the tenant that applies to action with
// attrs and demands the most approvals (the first by name among equals),
// and false when none applies.
func (s *Service) strictest(ctx context.Context, tenantID, action string, attrs map[string]string) (steward.ApprovalPolicy, bool, error) {
	ps, err := s.store.ListApprovalPolicies(ctx, tenantID)
	if err != nil {
		return steward.ApprovalPolicy{}, false, fmt.Errorf("approval policies: %w", err)
	}
	var best steward.ApprovalPolicy
	found := false
	for _, p := range ps {
		if p.Applies(action, attrs) && (!found || p.Approvals > best.Approvals) {
			best, found = p, true
		}
	}
	return best, found, nil
}

// Required implements steward.Approvals.
func (s *Service) Required(ctx context.Context, tenantID, action, target string, attrs map[string]string) (int, string, error) {
	if action == "" {
		return 0, "", steward.Errorf(steward.CodeInvalid, "an action is required")
	}
	p, ok, err := s.strictest(ctx, tenantID, action, attrs)
	if err != nil || !ok {
		return 0, "", err
	}
	return p.Approvals, fmt.Sprintf("approval policy %q (%s) requires %d approval(s) for %s", p.Name, p.ID, p.Approvals, action), nil
}

// Request implements steward.Approvals. It sets the ID, state, times and
// decisions; it matches the tenant's policies on r.Attributes and takes
// the strictest one's approvals (when more than r.Approvals), approver
// requirements and expiry. A request no policy covers needs r.Approvals
// of at least 1 and waits DefaultApprovalExpiry.
func (s *Service) Request(ctx context.Context, r steward.ApprovalRequest) (steward.ApprovalRequest, error) {
	switch {
	case r.TenantID == "" || r.Action == "" || r.Target == "" || r.Requester == "":
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "an approval request needs a tenant, an action, a target and a requester")
	case r.Approvals < 0 || r.Approvals > steward.MaxApprovers:
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "approvals must be 0 to %d", steward.MaxApprovers)
	case len(r.Reason) > 1024:
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "a reason is at most 1024 bytes")
	case len(r.Payload) > 0 && !json.Valid(r.Payload):
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "an approval payload must be JSON")
	}
	p, ok, err := s.strictest(ctx, r.TenantID, r.Action, r.Attributes)
	if err != nil {
		return steward.ApprovalRequest{}, err
	}
	expiry := steward.DefaultApprovalExpiry
	r.PolicyID, r.ApproverPermission, r.ApproverRole = "", "", ""
	if ok {
		r.Approvals = max(r.Approvals, p.Approvals)
		r.PolicyID, r.ApproverPermission, r.ApproverRole = p.ID, p.ApproverPermission, p.ApproverRole
		expiry = p.ExpiryOrDefault()
	}
	if r.Approvals < 1 {
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "no approval policy covers %s: say how many approvals it needs", r.Action)
	}
	now := s.clock.Now().UTC()
	r.ID = newID("ar-")
	r.State = steward.ApprovalPending
	r.Decisions = nil
	r.CreatedAt, r.ExpiresAt = now, now.Add(expiry)
	if err := s.store.CreateApprovalRequest(ctx, r); err != nil {
		return steward.ApprovalRequest{}, err
	}
	stored, err := s.store.GetApprovalRequest(ctx, r.TenantID, r.ID)
	if err != nil {
		return steward.ApprovalRequest{}, err
	}
	return stored, s.record(ctx, steward.AuditRecord{TenantID: r.TenantID, Actor: r.Requester, Action: "approval.request",
		Target: "approval:" + r.ID, Detail: r.Action + " " + r.Target, After: mustJSON(stored)})
}

// Get implements steward.Approvals; a pending request past its expiry is
// expired first (and stays so).
func (s *Service) Get(ctx context.Context, tenantID, id string) (steward.ApprovalRequest, error) {
	r, err := s.store.GetApprovalRequest(ctx, tenantID, id)
	if err != nil || !s.due(r) {
		return r, err
	}
	return s.store.UpdateApprovalRequest(ctx, tenantID, id, func(r *steward.ApprovalRequest) error {
		if s.due(*r) {
			r.State = steward.ApprovalExpired
		}
		return nil
	})
}

// due reports whether r is pending and past its expiry.
func (s *Service) due(r steward.ApprovalRequest) bool {
	return r.State == steward.ApprovalPending && !s.clock.Now().Before(r.ExpiresAt)
}

// List returns the tenant's requests matching f, newest first, after
// expiring the tenant's requests that are due.
func (s *Service) List(ctx context.Context, tenantID string, f steward.ApprovalFilter) ([]steward.ApprovalRequest, error) {
	if _, err := s.store.ExpireApprovalRequests(ctx, tenantID, s.clock.Now()); err != nil {
		return nil, err
	}
	return s.store.ListApprovalRequests(ctx, tenantID, f)
}

// Decide implements steward.Approvals: the approver's rights come from the
// Resolver.
func (s *Service) Decide(ctx context.Context, tenantID, id string, d steward.Decision) (steward.ApprovalRequest, error) {
	if d.Approver == "" {
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "a decision needs its approver")
	}
	a, err := s.resolver.Approver(ctx, tenantID, d.Approver)
	if steward.IsNotFound(err) {
		err = steward.WrapError(steward.CodePermissionDenied, err, "%s may not decide approval requests here", d.Approver)
		_ = s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: d.Approver, Action: decisionVerb(d),
			Target: "approval:" + id, Outcome: steward.AuditDenied, Detail: steward.ErrorMessage(err)})
		return steward.ApprovalRequest{}, err
	}
	if err != nil {
		return steward.ApprovalRequest{}, err
	}
	return s.DecideAs(ctx, tenantID, id, d, a)
}

// ErrExpired is wrapped in the error of a decision on an expired request.
var ErrExpired = errors.New("approval request expired")

// DecideAs records a decision by an approver whose rights the caller
// already knows (the API knows its caller's). The approver may not be the
// requester nor have decided already, and needs PermApprovalsDecide plus
// what the request's policy asks: its permission, and its role (or every
// permission that role holds). One rejection rejects the request; enough
// distinct approvals approve it. A request past its expiry is expired,
// never approved: deciding it is CodeConflict.
func (s *Service) DecideAs(ctx context.Context, tenantID, id string, d steward.Decision, a Approver) (steward.ApprovalRequest, error) {
	if d.Approver == "" {
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "a decision needs its approver")
	}
	if len(d.Comment) > 1024 {
		return steward.ApprovalRequest{}, steward.Errorf(steward.CodeInvalid, "a comment is at most 1024 bytes")
	}
	d.At = s.clock.Now().UTC()
	var before steward.ApprovalRequest
	expired := false
	r, err := s.store.UpdateApprovalRequest(ctx, tenantID, id, func(r *steward.ApprovalRequest) error {
		before = *r
		before.Decisions = slices.Clone(r.Decisions)
		if s.due(*r) {
			r.State = steward.ApprovalExpired
			expired = true
			return nil
		}
		if r.State != steward.ApprovalPending {
			return steward.Errorf(steward.CodeConflict, "approval request %s is %s, no longer pending", id, r.State)
		}
		if err := permitted(*r, d, a); err != nil {
			return err
		}
		r.Decisions = append(r.Decisions, d)
		approvals := 0
		for _, x := range r.Decisions {
			if x.Approve {
				approvals++
			}
		}
		switch {
		case !d.Approve:
			r.State = steward.ApprovalRejected
		case approvals >= r.Approvals:
			r.State = steward.ApprovalApproved
		}
		return nil
	})
	verb := decisionVerb(d)
	if err != nil {
		if c := steward.ErrorCode(err); c == steward.CodePermissionDenied || c == steward.CodeConflict {
			_ = s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: d.Approver, Action: verb,
				Target: "approval:" + id, Outcome: steward.AuditDenied, Detail: steward.ErrorMessage(err)})
		}
		return steward.ApprovalRequest{}, err
	}
	if expired {
		_ = s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: d.Approver, Action: verb,
			Target: "approval:" + id, Outcome: steward.AuditDenied, Detail: "expired"})
		return r, steward.WrapError(steward.CodeConflict, ErrExpired, "approval request %s expired at %s", id, r.ExpiresAt.Format(time.RFC3339))
	}
	if err := s.record(ctx, steward.AuditRecord{TenantID: tenantID, Actor: d.Approver, Action: verb,
		Target: "approval:" + id, Detail: r.Action + " " + r.Target + ": " + r.State,
		Before: mustJSON(before), After: mustJSON(r)}); err != nil {
		return r, err
	}
	if r.State != steward.ApprovalPending && s.onDec != nil {
		s.onDec(ctx, r)
	}
	return r, nil
}

// decisionVerb is the audit action of a decision.
func decisionVerb(d steward.Decision) string {
	if d.Approve {
		return "approval.approve"
	}
	return "approval.reject"
}

// permitted checks that a may decide r.
func permitted(r steward.ApprovalRequest, d steward.Decision, a Approver) error {
	if d.Approver == r.Requester {
		return steward.Errorf(steward.CodePermissionDenied, "the requester of an approval request may not decide it")
	}
	for _, x := range r.Decisions {
		if x.Approver == d.Approver {
			return steward.Errorf(steward.CodePermissionDenied, "%s has already decided approval request %s", d.Approver, r.ID)
		}
	}
	if !a.can(steward.PermApprovalsDecide) {
		return steward.Errorf(steward.CodePermissionDenied, "deciding needs the permission %s", steward.PermApprovalsDecide)
	}
	if r.ApproverPermission != "" && !a.can(r.ApproverPermission) {
		return steward.Errorf(steward.CodePermissionDenied, "this request's approvers need the permission %s", r.ApproverPermission)
	}
	if r.ApproverRole != "" && a.Role != r.ApproverRole {
		need, _ := steward.RolePermissions(r.ApproverRole)
		for _, p := range need {
			if !a.can(p) {
				return steward.Errorf(steward.CodePermissionDenied, "this request's approvers need the role %s", r.ApproverRole)
			}
		}
	}
	return nil
}

// Sweep expires the pending requests of every tenant that are past their
// expiry, and returns how many.
func (s *Service) Sweep(ctx context.Context) (int, error) {
	n, err := s.store.ExpireApprovalRequests(ctx, "", s.clock.Now())
	if err != nil {
		return 0, fmt.Errorf("expire approval requests: %w", err)
	}
	return n, nil
}

// Run sweeps every interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if n, err := s.Sweep(ctx); err != nil {
				s.log.Warn("approval sweep failed", "err", err)
			} else if n > 0 {
				s.log.Info("approval requests expired", "count", n)
			}
		}
	}
}
