package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/steward-iot/steward"
)

// policySpec is the spec column: every policy field that is not a column.
type policySpec struct {
	Matchers         []steward.Matcher `json:"matchers"`
	Channels         []string          `json:"channels"`
	GroupBy          []string          `json:"group_by"`
	GroupWait        steward.Duration  `json:"group_wait"`
	GroupInterval    steward.Duration  `json:"group_interval"`
	RepeatInterval   steward.Duration  `json:"repeat_interval"`
	Continue         bool              `json:"continue"`
	EscalateAfter    steward.Duration  `json:"escalate_after"`
	EscalateChannels []string          `json:"escalate_channels"`
	Actions          []string          `json:"actions"`
}

const policyCols = `id, tenant_id, name, position, spec, created_at, updated_at`

// policySpecCol scans the spec column into the policy.
type policySpecCol struct{ p *steward.NotificationPolicy }

// Scan implements sql.Scanner.
func (c policySpecCol) Scan(src any) error {
	var sp policySpec
	if err := (jsonCol{&sp}).Scan(src); err != nil {
		return err
	}
	p := c.p
	p.Matchers, p.Channels, p.GroupBy = sp.Matchers, sp.Channels, sp.GroupBy
	p.GroupWait, p.GroupInterval, p.RepeatInterval = sp.GroupWait, sp.GroupInterval, sp.RepeatInterval
	p.Continue, p.EscalateAfter, p.EscalateChannels, p.Actions = sp.Continue, sp.EscalateAfter, sp.EscalateChannels, sp.Actions
	return nil
}

func scanPolicy(p *steward.NotificationPolicy) []any {
	return []any{&p.ID, &p.TenantID, &p.Name, &p.Order, policySpecCol{p}, timeCol{&p.CreatedAt}, timeCol{&p.UpdatedAt}}
}

// policyArgs validates p, checks that its channels are the tenant's and
// encodes its spec.
func (s *Store) policyArgs(ctx context.Context, p steward.NotificationPolicy) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	for _, id := range append(append([]string(nil), p.Channels...), p.EscalateChannels...) {
		if _, err := s.GetChannel(ctx, p.TenantID, id); err != nil {
			if steward.IsNotFound(err) {
				return "", invalid("policy channel %s is not a notification channel of the tenant", id)
			}
			return "", err
		}
	}
	if p.Matchers == nil {
		p.Matchers = []steward.Matcher{}
	}
	return jsonText(policySpec{Matchers: p.Matchers, Channels: p.Channels, GroupBy: p.GroupBy, GroupWait: p.GroupWait,
		GroupInterval: p.GroupInterval, RepeatInterval: p.RepeatInterval, Continue: p.Continue, EscalateAfter: p.EscalateAfter,
		EscalateChannels: p.EscalateChannels, Actions: p.Actions}, "{}")
}

// CreateNotificationPolicy implements steward.Store.
func (s *Store) CreateNotificationPolicy(ctx context.Context, p steward.NotificationPolicy) error {
	spec, err := s.policyArgs(ctx, p)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO notification_policies (`+policyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.TenantID, p.Name, p.Order, spec, ts(p.CreatedAt), ts(p.UpdatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", p.TenantID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "a notification policy named %q or with ID %s already exists", p.Name, p.ID)
	}
	return s.fail(err, "create notification policy %s", p.ID)
}

// GetNotificationPolicy implements steward.Store.
func (s *Store) GetNotificationPolicy(ctx context.Context, tenantID, id string) (steward.NotificationPolicy, error) {
	var p steward.NotificationPolicy
	err := s.queryRow(ctx, `SELECT `+policyCols+` FROM notification_policies WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanPolicy(&p)...)
	if errors.Is(err, sql.ErrNoRows) {
		return p, notFound("notification policy %s not found", id)
	}
	return p, s.fail(err, "get notification policy %s", id)
}

// ListNotificationPolicies implements steward.Store.
func (s *Store) ListNotificationPolicies(ctx context.Context, tenantID string) ([]steward.NotificationPolicy, error) {
	rows, err := s.query(ctx, `SELECT `+policyCols+` FROM notification_policies WHERE tenant_id = ? ORDER BY position, name, id`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list notification policies")
	}
	return collect(rows, scanPolicy, s, "list notification policies")
}

// UpdateNotificationPolicy implements steward.Store.
func (s *Store) UpdateNotificationPolicy(ctx context.Context, p steward.NotificationPolicy) error {
	spec, err := s.policyArgs(ctx, p)
	if err != nil {
		return err
	}
	res, err := s.exec(ctx, `UPDATE notification_policies SET name = ?, position = ?, spec = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		p.Name, p.Order, spec, ts(p.UpdatedAt), p.TenantID, p.ID)
	if err != nil {
		if s.d.IsUniqueViolation(err) {
			return steward.WrapError(steward.CodeConflict, err, "a notification policy named %q already exists", p.Name)
		}
		return s.fail(err, "update notification policy %s", p.ID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "update notification policy %s", p.ID)
	}
	if n == 0 {
		return notFound("notification policy %s not found", p.ID)
	}
	return nil
}

// DeleteNotificationPolicy implements steward.Store; the foreign keys
// cascade to its groups and actions.
func (s *Store) DeleteNotificationPolicy(ctx context.Context, tenantID, id string) error {
	return s.deleteOne(ctx, `DELETE FROM notification_policies WHERE tenant_id = ? AND id = ?`, tenantID, id, "notification policy")
}

const notifGroupCols = `tenant_id, policy_id, group_key, labels, alerts, changed, next_flush_at, last_sent_at, created_at, version`

func scanNotifGroup(g *steward.NotificationGroup) []any {
	return []any{&g.TenantID, &g.PolicyID, &g.GroupKey, jsonCol{&g.Labels}, jsonCol{&g.Alerts}, &g.Changed,
		timeCol{&g.NextFlushAt}, timePtrCol{&g.LastSentAt}, timeCol{&g.CreatedAt}, &g.Version}
}

// GetNotificationGroup implements steward.Store.
func (s *Store) GetNotificationGroup(ctx context.Context, tenantID, policyID, groupKey string) (steward.NotificationGroup, error) {
	var g steward.NotificationGroup
	err := s.queryRow(ctx, `SELECT `+notifGroupCols+` FROM notification_groups WHERE tenant_id = ? AND policy_id = ? AND group_key = ?`,
		tenantID, policyID, groupKey).Scan(scanNotifGroup(&g)...)
	if errors.Is(err, sql.ErrNoRows) {
		return g, notFound("notification group %s of policy %s not found", groupKey, policyID)
	}
	return g, s.fail(err, "get notification group")
}

// PutNotificationGroup implements steward.Store.
func (s *Store) PutNotificationGroup(ctx context.Context, g steward.NotificationGroup) (steward.NotificationGroup, error) {
	if err := g.Validate(); err != nil {
		return g, err
	}
	labels, err := jsonText(g.Labels, "{}")
	if err != nil {
		return g, invalid("group labels: %v", err)
	}
	alerts, err := jsonText(g.Alerts, "[]")
	if err != nil {
		return g, invalid("group alerts: %v", err)
	}
	if g.Version == 0 {
		_, err = s.exec(ctx, `INSERT INTO notification_groups (`+notifGroupCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1)`,
			g.TenantID, g.PolicyID, g.GroupKey, labels, alerts, g.Changed, ts(g.NextFlushAt), nullTSPtr(g.LastSentAt), ts(g.CreatedAt))
		switch {
		case err != nil && s.d.IsForeignKeyViolation(err):
			return g, steward.WrapError(steward.CodeNotFound, err, "notification policy %s not found", g.PolicyID)
		case err != nil && s.d.IsUniqueViolation(err):
			return g, steward.WrapError(steward.CodeConflict, err, "notification group %s already exists", g.GroupKey)
		case err != nil:
			return g, s.fail(err, "create notification group")
		}
	} else {
		res, err := s.exec(ctx, `UPDATE notification_groups SET labels = ?, alerts = ?, changed = ?, next_flush_at = ?, last_sent_at = ?,
			version = version + 1 WHERE tenant_id = ? AND policy_id = ? AND group_key = ? AND version = ?`,
			labels, alerts, g.Changed, ts(g.NextFlushAt), nullTSPtr(g.LastSentAt), g.TenantID, g.PolicyID, g.GroupKey, g.Version)
		if err != nil {
			return g, s.fail(err, "update notification group")
		}
		n, err := affected(res)
		if err != nil {
			return g, s.fail(err, "update notification group")
		}
		if n == 0 {
			return g, steward.Errorf(steward.CodeConflict, "notification group %s changed or is gone", g.GroupKey)
		}
	}
	return s.GetNotificationGroup(ctx, g.TenantID, g.PolicyID, g.GroupKey)
}

// DueNotificationGroups implements steward.Store.
func (s *Store) DueNotificationGroups(ctx context.Context, now time.Time, limit int) ([]steward.NotificationGroup, error) {
	if limit < 1 || limit > 1000 {
		return nil, invalid("due notification groups: limit %d is not within 1 to 1000", limit)
	}
	rows, err := s.query(ctx, `SELECT `+notifGroupCols+` FROM notification_groups WHERE next_flush_at <= ? ORDER BY next_flush_at, group_key LIMIT ?`,
		ts(now), limit)
	if err != nil {
		return nil, s.fail(err, "due notification groups")
	}
	return collect(rows, scanNotifGroup, s, "due notification groups")
}

// DeleteNotificationGroup implements steward.Store.
func (s *Store) DeleteNotificationGroup(ctx context.Context, tenantID, policyID, groupKey string, version int64) error {
	res, err := s.exec(ctx, `DELETE FROM notification_groups WHERE tenant_id = ? AND policy_id = ? AND group_key = ? AND version = ?`,
		tenantID, policyID, groupKey, version)
	if err != nil {
		return s.fail(err, "delete notification group")
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete notification group")
	}
	if n == 0 {
		if _, err := s.GetNotificationGroup(ctx, tenantID, policyID, groupKey); err != nil {
			return err
		}
		return steward.Errorf(steward.CodeConflict, "notification group %s changed", groupKey)
	}
	return nil
}

const actionCols = `tenant_id, alert_id, policy_id, kind, notification, due_at, done_at, result, created_at`

func scanAction(a *steward.AlertAction) []any {
	return []any{&a.TenantID, &a.AlertID, &a.PolicyID, &a.Kind, rawCol{&a.Notification}, timeCol{&a.DueAt}, timePtrCol{&a.DoneAt}, &a.Result, timeCol{&a.CreatedAt}}
}

// CreateAlertAction implements steward.Store.
func (s *Store) CreateAlertAction(ctx context.Context, a steward.AlertAction) error {
	if err := a.Validate(); err != nil {
		return err
	}
	_, err := s.exec(ctx, `INSERT INTO alert_actions (`+actionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		a.TenantID, a.AlertID, a.PolicyID, a.Kind, string(a.Notification), ts(a.DueAt), nullTSPtr(a.DoneAt), a.Result, ts(a.CreatedAt))
	switch {
	case err != nil && s.d.IsForeignKeyViolation(err):
		return steward.WrapError(steward.CodeNotFound, err, "notification policy %s not found", a.PolicyID)
	case err != nil && s.d.IsUniqueViolation(err):
		return steward.WrapError(steward.CodeConflict, err, "alert %s already has a %s action of policy %s", a.AlertID, a.Kind, a.PolicyID)
	}
	return s.fail(err, "create alert action")
}

// DueAlertActions implements steward.Store.
func (s *Store) DueAlertActions(ctx context.Context, now time.Time, limit int) ([]steward.AlertAction, error) {
	if limit < 1 || limit > 1000 {
		return nil, invalid("due alert actions: limit %d is not within 1 to 1000", limit)
	}
	rows, err := s.query(ctx, `SELECT `+actionCols+` FROM alert_actions WHERE done_at IS NULL AND due_at <= ? ORDER BY due_at, alert_id LIMIT ?`,
		ts(now), limit)
	if err != nil {
		return nil, s.fail(err, "due alert actions")
	}
	return collect(rows, scanAction, s, "due alert actions")
}

// FinishAlertAction implements steward.Store.
func (s *Store) FinishAlertAction(ctx context.Context, a steward.AlertAction) error {
	if a.DoneAt == nil || a.DoneAt.IsZero() {
		return invalid("finish alert action: done_at is required")
	}
	if len(a.Result) > 1024 {
		a.Result = a.Result[:1024]
	}
	res, err := s.exec(ctx, `UPDATE alert_actions SET done_at = ?, result = ? WHERE tenant_id = ? AND alert_id = ? AND policy_id = ? AND kind = ?`,
		ts(*a.DoneAt), a.Result, a.TenantID, a.AlertID, a.PolicyID, a.Kind)
	if err != nil {
		return s.fail(err, "finish alert action")
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "finish alert action")
	}
	if n == 0 {
		return notFound("alert action %s of alert %s not found", a.Kind, a.AlertID)
	}
	return nil
}
