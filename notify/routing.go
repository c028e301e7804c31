package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Quarantiner quarantines a device (*lifecycle.Service is one); the
// "quarantine" action of a notification policy uses it.
type Quarantiner interface {
	Quarantine(ctx context.Context, tenantID, id, reason, actor string) (steward.Device, error)
}

// groupBatch is how many due groups and actions one pass takes.
const groupBatch = 100

// policyMatches reports whether every matcher of p matches labels; a
// policy without matchers matches everything.
func policyMatches(p steward.NotificationPolicy, labels map[string]string) bool {
	return len(p.Matchers) == 0 || matchAll(p.Matchers, labels)
}

// Route returns the policies of ps (in order) that take a notification
// with labels: up to and including the first match without Continue.
func Route(ps []steward.NotificationPolicy, labels map[string]string) []steward.NotificationPolicy {
	var out []steward.NotificationPolicy
	for _, p := range ps {
		if !policyMatches(p, labels) {
			continue
		}
		out = append(out, p)
		if !p.Continue {
			break
		}
	}
	return out
}

// GroupKey is the key of the group of labels under group_by: the labels
// in group_by order, as {name="value",…}.
func GroupKey(groupBy []string, labels map[string]string) (string, map[string]string) {
	var b strings.Builder
	kv := make(map[string]string, len(groupBy))
	b.WriteByte('{')
	for i, name := range groupBy {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.Quote(labels[name]))
		kv[name] = labels[name]
	}
	b.WriteByte('}')
	return b.String(), kv
}

// route hands n to the policies that match it: it adds it to their
// groups and records its escalation and actions. It reports whether any
// policy took it.
func (nt *Notifier) route(ctx context.Context, n steward.Notification) (bool, error) {
	ps, err := nt.cfg.Store.ListNotificationPolicies(ctx, n.TenantID)
	if err != nil {
		return false, fmt.Errorf("notification policies: %w", err)
	}
	matched := Route(ps, n.Labels)
	now := nt.clock.Now().UTC()
	var errs []error
	for _, p := range matched {
		p = p.WithDefaults()
		if len(p.Channels) > 0 {
			if err := nt.addToGroup(ctx, p, n, now); err != nil {
				errs = append(errs, fmt.Errorf("policy %s: %w", p.Name, err))
			}
		}
		if n.State != string(steward.AlertFiring) {
			continue
		}
		if p.EscalateAfter > 0 {
			if err := nt.newAction(ctx, p, n, steward.AlertActionEscalate, n.StartsAt.Add(p.EscalateAfter.D()), now); err != nil {
				errs = append(errs, err)
			}
		}
		if slices.Contains(p.Actions, steward.PolicyActionQuarantine) && n.DeviceID != "" {
			if err := nt.newAction(ctx, p, n, steward.AlertActionQuarantine, now, now); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(matched) > 0 {
		nt.Wake()
	}
	return len(matched) > 0, errors.Join(errs...)
}

// newAction records a once-per-alert action; one already recorded stays.
// A quarantine runs at once too (the worker retries it if this fails).
func (nt *Notifier) newAction(ctx context.Context, p steward.NotificationPolicy, n steward.Notification, kind string, due, now time.Time) error {
	body, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	a := steward.AlertAction{TenantID: n.TenantID, AlertID: n.AlertID, PolicyID: p.ID, Kind: kind, Notification: body, DueAt: due, CreatedAt: now}
	if err := nt.cfg.Store.CreateAlertAction(ctx, a); err != nil {
		if steward.IsConflict(err) {
			return nil
		}
		return fmt.Errorf("record %s action: %w", kind, err)
	}
	if kind == steward.AlertActionQuarantine {
		return nt.runAction(ctx, a)
	}
	return nil
}

// addToGroup puts n in its group of p: a new group is due after
// group_wait; a change to a group already sent is due group_interval
// after the last message.
func (nt *Notifier) addToGroup(ctx context.Context, p steward.NotificationPolicy, n steward.Notification, now time.Time) error {
	key, labels := GroupKey(p.GroupBy, n.Labels)
	if n.SentAt.IsZero() {
		n.SentAt = now
	}
	for range 5 { // optimistic: retry when another writer changed the group
		g, err := nt.cfg.Store.GetNotificationGroup(ctx, n.TenantID, p.ID, key)
		switch {
		case steward.IsNotFound(err):
			g = steward.NotificationGroup{TenantID: n.TenantID, PolicyID: p.ID, GroupKey: key, Labels: labels,
				NextFlushAt: now.Add(p.GroupWait.D()), CreatedAt: now}
		case err != nil:
			return err
		}
		i := slices.IndexFunc(g.Alerts, func(x steward.Notification) bool { return x.AlertID == n.AlertID })
		if i >= 0 {
			g.Alerts[i] = n
		} else {
			g.Alerts = append(g.Alerts, n)
			slices.SortFunc(g.Alerts, func(a, b steward.Notification) int { return strings.Compare(a.AlertID, b.AlertID) })
		}
		g.Changed = true
		if g.LastSentAt != nil {
			g.NextFlushAt = minTime(g.NextFlushAt, maxTime(now, g.LastSentAt.Add(p.GroupInterval.D())))
		}
		_, err = nt.cfg.Store.PutNotificationGroup(ctx, g)
		if steward.IsConflict(err) {
			continue
		}
		return err
	}
	return steward.Errorf(steward.CodeUnavailable, "notification group %s keeps changing: try again", key)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// FlushDue sends the groups due now and runs the alert actions due now
// (escalations, quarantines to retry); Run calls it before each round of
// deliveries, and tests call it with a fake clock. It returns how many
// groups and actions it handled.
func (nt *Notifier) FlushDue(ctx context.Context) (int, error) {
	now := nt.clock.Now().UTC()
	gs, err := nt.cfg.Store.DueNotificationGroups(ctx, now, groupBatch)
	if err != nil {
		return 0, fmt.Errorf("due notification groups: %w", err)
	}
	var errs []error
	for _, g := range gs {
		if err := nt.flushGroup(ctx, g, now); err != nil {
			errs = append(errs, err)
		}
	}
	as, err := nt.cfg.Store.DueAlertActions(ctx, now, groupBatch)
	if err != nil {
		return len(gs), errors.Join(append(errs, fmt.Errorf("due alert actions: %w", err))...)
	}
	for _, a := range as {
		if err := nt.runAction(ctx, a); err != nil {
			errs = append(errs, err)
		}
	}
	return len(gs) + len(as), errors.Join(errs...)
}

// flushGroup sends a due group when it changed or, still firing, is due
// a repeat; then it drops the resolved alerts it sent and the group once
// none fires. The deliveries are enqueued before the group is written,
// under a key of the group's version, so that a crash in between sends
// the same message again, never loses it, and the queue drops the copy.
func (nt *Notifier) flushGroup(ctx context.Context, g steward.NotificationGroup, now time.Time) error {
	p, err := nt.cfg.Store.GetNotificationPolicy(ctx, g.TenantID, g.PolicyID)
	if err != nil {
		return fmt.Errorf("group %s: %w", g.GroupKey, err)
	}
	p = p.WithDefaults()
	firing := slices.ContainsFunc(g.Alerts, func(n steward.Notification) bool { return n.State == string(steward.AlertFiring) })
	repeat := firing && g.LastSentAt != nil && !now.Before(g.LastSentAt.Add(p.RepeatInterval.D()))
	if g.Changed || repeat {
		status := string(steward.AlertResolved)
		if firing {
			status = string(steward.AlertFiring)
		}
		msg := steward.GroupMessage{GroupKey: g.GroupKey, Policy: p.Name, Status: status, Alerts: g.Alerts}
		key := fmt.Sprintf("group/%s/%s/%d", p.ID, shortHash(g.GroupKey), g.Version)
		if err := nt.enqueueAll(ctx, g.TenantID, p.Channels, key, msg, now); err != nil {
			return fmt.Errorf("group %s: %w", g.GroupKey, err)
		}
		g.LastSentAt = &now
		g.Changed = false
		g.Alerts = slices.DeleteFunc(g.Alerts, func(n steward.Notification) bool { return n.State != string(steward.AlertFiring) })
	}
	if len(g.Alerts) == 0 {
		if err := nt.cfg.Store.DeleteNotificationGroup(ctx, g.TenantID, g.PolicyID, g.GroupKey, g.Version); err != nil && !steward.IsConflict(err) && !steward.IsNotFound(err) {
			return fmt.Errorf("group %s: %w", g.GroupKey, err)
		}
		return nil
	}
	g.NextFlushAt = g.LastSentAt.Add(p.RepeatInterval.D())
	if _, err := nt.cfg.Store.PutNotificationGroup(ctx, g); err != nil && !steward.IsConflict(err) {
		return fmt.Errorf("group %s: %w", g.GroupKey, err)
	}
	return nil
}

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:8])
}

// enqueueAll enqueues a group message to each enabled channel of ids; a
// channel deleted since the policy was written is skipped.
func (nt *Notifier) enqueueAll(ctx context.Context, tenantID string, ids []string, key string, msg steward.GroupMessage, now time.Time) error {
	body, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("encode group message: %w", err)
	}
	var errs []error
	for _, id := range ids {
		ch, err := nt.cfg.Store.GetChannel(ctx, tenantID, id)
		if steward.IsNotFound(err) {
			nt.log.Warn("notify: policy channel is gone", "tenant", tenantID, "channel", id)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !ch.Enabled {
			continue
		}
		d := steward.Delivery{ID: newID("dl-"), TenantID: tenantID, ChannelID: id, NotificationKey: key, Payload: body,
			Status: steward.DeliveryPending, NextAttemptAt: now, CreatedAt: now}
		if err := nt.cfg.Store.EnqueueDelivery(ctx, d); err != nil && !steward.IsConflict(err) {
			errs = append(errs, fmt.Errorf("enqueue group message: %w", err))
		}
	}
	nt.Wake()
	return errors.Join(errs...)
}

// runAction runs one due action and records its result; a failure that
// may pass (the store or the lifecycle service unavailable) leaves it to
// the next pass.
func (nt *Notifier) runAction(ctx context.Context, a steward.AlertAction) error {
	var n steward.Notification
	if err := json.Unmarshal(a.Notification, &n); err != nil {
		return nt.finish(ctx, a, "bad notification: "+err.Error())
	}
	switch a.Kind {
	case steward.AlertActionQuarantine:
		if nt.cfg.Quarantiner == nil {
			return nt.finish(ctx, a, "skipped: no quarantiner configured")
		}
		reason := "alert " + n.Rule + ": " + n.Summary
		_, err := nt.cfg.Quarantiner.Quarantine(ctx, n.TenantID, n.DeviceID, reason, "alert:"+n.Rule)
		switch code := steward.ErrorCode(err); {
		case err == nil:
			nt.log.Info("alert quarantined device", "tenant", n.TenantID, "device", n.DeviceID, "alert", n.AlertID)
			return nt.finish(ctx, a, "quarantined")
		case code == steward.CodeUnavailable || code == steward.CodeInternal:
			return fmt.Errorf("quarantine %s: %w", n.DeviceID, err)
		default:
			return nt.finish(ctx, a, "not quarantined: "+err.Error())
		}
	case steward.AlertActionEscalate:
		al, err := nt.cfg.Store.GetAlert(ctx, a.TenantID, a.AlertID)
		switch {
		case steward.IsNotFound(err):
			return nt.finish(ctx, a, "skipped: alert is gone")
		case err != nil:
			return fmt.Errorf("escalate alert %s: %w", a.AlertID, err)
		case al.AcknowledgedAt != nil:
			return nt.finish(ctx, a, "skipped: acknowledged by "+al.AcknowledgedBy)
		case al.State != steward.AlertFiring:
			return nt.finish(ctx, a, "skipped: alert is "+string(al.State))
		}
		p, err := nt.cfg.Store.GetNotificationPolicy(ctx, a.TenantID, a.PolicyID)
		if err != nil {
			return fmt.Errorf("escalate alert %s: %w", a.AlertID, err)
		}
		p = p.WithDefaults()
		key, _ := GroupKey(p.GroupBy, n.Labels)
		msg := steward.GroupMessage{GroupKey: key, Policy: p.Name, Status: string(steward.AlertFiring), Alerts: []steward.Notification{n}}
		if err := nt.enqueueAll(ctx, a.TenantID, p.EscalateChannels, "escalate/"+a.PolicyID+"/"+a.AlertID, msg, nt.clock.Now().UTC()); err != nil {
			return fmt.Errorf("escalate alert %s: %w", a.AlertID, err)
		}
		return nt.finish(ctx, a, "escalated")
	}
	return nt.finish(ctx, a, "unknown action kind")
}

func (nt *Notifier) finish(ctx context.Context, a steward.AlertAction, result string) error {
	now := nt.clock.Now().UTC()
	a.DoneAt, a.Result = &now, result
	if err := nt.cfg.Store.FinishAlertAction(ctx, a); err != nil {
		return fmt.Errorf("finish %s action of alert %s: %w", a.Kind, a.AlertID, err)
	}
	return nil
}
