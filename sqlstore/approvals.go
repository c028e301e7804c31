package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"time"

	"github.com/steward-iot/steward"
)

// approvalSpec is the spec column of a policy: its settings but the
// identifying ones.
type approvalSpec struct {
	Action             string                      `json:"action"`
	Conditions         []steward.ApprovalCondition `json:"conditions"`
	Approvals          int                         `json:"approvals"`
	ApproverPermission steward.Permission          `json:"approver_permission,omitempty"`
	ApproverRole       steward.Role                `json:"approver_role,omitempty"`
	Expiry             steward.Duration            `json:"expiry"`
}

const approvalPolicyCols = `id, tenant_id, name, spec, created_by, created_at`

func scanApprovalPolicy(p *steward.ApprovalPolicy) []any {
	return []any{&p.ID, &p.TenantID, &p.Name, approvalSpecCol{p}, &p.CreatedBy, timeCol{&p.CreatedAt}}
}

// approvalSpecCol scans the spec column into the policy's settings.
type approvalSpecCol struct{ p *steward.ApprovalPolicy }

// Scan implements sql.Scanner.
func (c approvalSpecCol) Scan(src any) error {
	var sp approvalSpec
	if err := (jsonCol{&sp}).Scan(src); err != nil {
		return err
	}
	if sp.Conditions == nil {
		sp.Conditions = []steward.ApprovalCondition{}
	}
	c.p.Action, c.p.Conditions, c.p.Approvals = sp.Action, sp.Conditions, sp.Approvals
	c.p.ApproverPermission, c.p.ApproverRole, c.p.Expiry = sp.ApproverPermission, sp.ApproverRole, sp.Expiry
	return nil
}

// CreateApprovalPolicy implements steward.ApprovalStore.
func (s *Store) CreateApprovalPolicy(ctx context.Context, p steward.ApprovalPolicy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	spec, err := jsonText(approvalSpec{Action: p.Action, Conditions: p.Conditions, Approvals: p.Approvals,
		ApproverPermission: p.ApproverPermission, ApproverRole: p.ApproverRole, Expiry: p.Expiry}, "{}")
	if err != nil {
		return invalid("approval policy: %v", err)
	}
	_, err = s.exec(ctx, `INSERT INTO approval_policies (`+approvalPolicyCols+`) VALUES (?, ?, ?, ?, ?, ?)`,
		p.ID, p.TenantID, p.Name, spec, p.CreatedBy, ts(p.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", p.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "an approval policy named %q or with ID %s already exists", p.Name, p.ID)
	}
	return s.fail(err, "create approval policy %s", p.ID)
}

// GetApprovalPolicy implements steward.ApprovalStore.
func (s *Store) GetApprovalPolicy(ctx context.Context, tenantID, id string) (steward.ApprovalPolicy, error) {
	var p steward.ApprovalPolicy
	err := s.queryRow(ctx, `SELECT `+approvalPolicyCols+` FROM approval_policies WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanApprovalPolicy(&p)...)
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound("approval policy %s not found", id)
	}
	return p, s.fail(err, "get approval policy %s", id)
}

// ListApprovalPolicies implements steward.ApprovalStore.
func (s *Store) ListApprovalPolicies(ctx context.Context, tenantID string) ([]steward.ApprovalPolicy, error) {
	rows, err := s.query(ctx, `SELECT `+approvalPolicyCols+` FROM approval_policies WHERE tenant_id = ? ORDER BY name, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list approval policies")
	}
	return collect(rows, scanApprovalPolicy, s, "list approval policies")
}

// DeleteApprovalPolicy implements steward.ApprovalStore. Requests it set
// keep what they were given.
func (s *Store) DeleteApprovalPolicy(ctx context.Context, tenantID, id string) error {
	return s.deleteOne(ctx, `DELETE FROM approval_policies WHERE tenant_id = ? AND id = ?`, tenantID, id, "approval policy")
}

const approvalRequestCols = `id, tenant_id, action, target, payload, reason, requester, attributes, approvals,
	policy_id, approver_permission, approver_role, state, decisions, created_at, expires_at`

func scanApprovalRequest(r *steward.ApprovalRequest) []any {
	return []any{&r.ID, &r.TenantID, &r.Action, &r.Target, nullRawCol{&r.Payload}, &r.Reason, &r.Requester,
		jsonCol{&r.Attributes}, &r.Approvals, &r.PolicyID, &r.ApproverPermission, &r.ApproverRole, &r.State,
		jsonCol{&r.Decisions}, timeCol{&r.CreatedAt}, timeCol{&r.ExpiresAt}}
}

// nullRawCol scans a nullable TEXT column holding JSON into a
// json.RawMessage, byte for byte (NULL: nil).
type nullRawCol struct{ b *json.RawMessage }

// Scan implements sql.Scanner.
func (c nullRawCol) Scan(src any) error {
	if src == nil {
		*c.b = nil
		return nil
	}
	return rawCol(c).Scan(src)
}

// normApproval fills the empty collections a stored request reads back with.
func normApproval(r *steward.ApprovalRequest) {
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	if r.Decisions == nil {
		r.Decisions = []steward.Decision{}
	}
}

func validApprovalState(st string) bool {
	switch st {
	case steward.ApprovalPending, steward.ApprovalApproved, steward.ApprovalRejected, steward.ApprovalExpired:
		return true
	}
	return false
}

// CreateApprovalRequest implements steward.ApprovalStore.
func (s *Store) CreateApprovalRequest(ctx context.Context, r steward.ApprovalRequest) error {
	if err := required("approval request id", r.ID, "tenant id", r.TenantID, "action", r.Action,
		"target", r.Target, "requester", r.Requester); err != nil {
		return err
	}
	switch {
	case r.State != steward.ApprovalPending:
		return invalid("a new approval request must be pending, not %q", r.State)
	case r.Approvals < 1:
		return invalid("an approval request needs at least one approval")
	case len(r.Decisions) > 0:
		return invalid("a new approval request has no decisions")
	case r.ExpiresAt.IsZero() || r.CreatedAt.IsZero():
		return invalid("an approval request needs its creation and expiry times")
	case len(r.Payload) > steward.MaxApprovalPayload:
		return invalid("an approval payload is at most %d bytes", steward.MaxApprovalPayload)
	}
	attrs, err := jsonText(r.Attributes, "{}")
	if err != nil {
		return invalid("approval attributes: %v", err)
	}
	var payload any
	if len(r.Payload) > 0 {
		payload = string(r.Payload)
	}
	_, err = s.exec(ctx, `INSERT INTO approval_requests (`+approvalRequestCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.TenantID, r.Action, r.Target, payload, r.Reason, r.Requester, attrs, r.Approvals,
		r.PolicyID, string(r.ApproverPermission), string(r.ApproverRole), r.State, "[]", ts(r.CreatedAt), ts(r.ExpiresAt))
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", r.TenantID)
	}
	return s.fail(err, "create approval request %s", r.ID)
}

// GetApprovalRequest implements steward.ApprovalStore.
func (s *Store) GetApprovalRequest(ctx context.Context, tenantID, id string) (steward.ApprovalRequest, error) {
	var r steward.ApprovalRequest
	err := s.queryRow(ctx, `SELECT `+approvalRequestCols+` FROM approval_requests WHERE tenant_id = ? AND id = ?`, tenantID, id).
		Scan(scanApprovalRequest(&r)...)
	if errors.Is(err, sql.ErrNoRows) {
		return r, notFound("approval request %s not found", id)
	}
	if err != nil {
		return r, s.fail(err, "get approval request %s", id)
	}
	normApproval(&r)
	return r, nil
}

// ListApprovalRequests implements steward.ApprovalStore.
func (s *Store) ListApprovalRequests(ctx context.Context, tenantID string, f steward.ApprovalFilter) ([]steward.ApprovalRequest, error) {
	if f.State != "" && !validApprovalState(f.State) {
		return nil, invalid("approval state %q: want pending, approved, rejected or expired", f.State)
	}
	switch {
	case f.Limit < 0 || f.Limit > 1000:
		return nil, invalid("limit must be from 1 to 1000")
	case f.Limit == 0:
		f.Limit = 100
	}
	q := `SELECT ` + approvalRequestCols + ` FROM approval_requests WHERE tenant_id = ?`
	args := []any{tenantID}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if f.Action != "" {
		q += ` AND action = ?`
		args = append(args, f.Action)
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, f.Limit)
	rows, err := s.query(ctx, q, args...)
	if err != nil {
		return nil, s.fail(err, "list approval requests")
	}
	out, err := collect(rows, scanApprovalRequest, s, "list approval requests")
	for i := range out {
		normApproval(&out[i])
	}
	return out, err
}

// UpdateApprovalRequest implements steward.ApprovalStore. The first
// statement is an update of the row to itself: it takes the row's write
// lock on PostgreSQL (and the database's on SQLite) before the read, so a
// second caller waits and then reads what the first wrote.
func (s *Store) UpdateApprovalRequest(ctx context.Context, tenantID, id string, fn func(r *steward.ApprovalRequest) error) (steward.ApprovalRequest, error) {
	var out steward.ApprovalRequest
	err := s.InTx(ctx, func(txs steward.Store) error {
		tx := txs.(*Store)
		res, err := tx.exec(ctx, `UPDATE approval_requests SET state = state WHERE tenant_id = ? AND id = ?`, tenantID, id)
		if err != nil {
			return tx.fail(err, "lock approval request %s", id)
		}
		if n, err := affected(res); err != nil {
			return tx.fail(err, "lock approval request %s", id)
		} else if n == 0 {
			return notFound("approval request %s not found", id)
		}
		r, err := tx.GetApprovalRequest(ctx, tenantID, id)
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return err
		}
		if !validApprovalState(r.State) {
			return invalid("approval state %q: want pending, approved, rejected or expired", r.State)
		}
		for i := range r.Decisions {
			r.Decisions[i].At = ts(r.Decisions[i].At)
		}
		dec, err := jsonText(r.Decisions, "[]")
		if err != nil {
			return invalid("approval decisions: %v", err)
		}
		if _, err := tx.exec(ctx, `UPDATE approval_requests SET state = ?, decisions = ? WHERE tenant_id = ? AND id = ?`,
			r.State, dec, tenantID, id); err != nil {
			return tx.fail(err, "update approval request %s", id)
		}
		out = r
		return nil
	})
	if err != nil {
		return steward.ApprovalRequest{}, err
	}
	// Read it back as stored (times to the microsecond).
	out.CreatedAt, out.ExpiresAt = ts(out.CreatedAt), ts(out.ExpiresAt)
	normApproval(&out)
	return out, nil
}

// ExpireApprovalRequests implements steward.ApprovalStore.
func (s *Store) ExpireApprovalRequests(ctx context.Context, tenantID string, now time.Time) (int, error) {
	q := `UPDATE approval_requests SET state = 'expired' WHERE state = 'pending' AND expires_at <= ?`
	args := []any{ts(now)}
	if tenantID != "" {
		q += ` AND tenant_id = ?`
		args = append(args, tenantID)
	}
	res, err := s.exec(ctx, q, args...)
	if err != nil {
		return 0, s.fail(err, "expire approval requests")
	}
	n, err := affected(res)
	if err != nil {
		return 0, s.fail(err, "expire approval requests")
	}
	return int(n), nil
}
