package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// The audit log's retention. A record is a leaf of the Merkle tree that
// every later checkpoint commits to, so it is never deleted: once past its
// tenant's period its body is removed and its leaf hash kept (pruned). The
// tree, the signed checkpoints and the proofs of the other records still
// hold; Verify checks the kept hashes against every checkpoint as before
// and reports the pruned ranges. Each pruning appends a signed record
// (PruneAction) saying which records it removed, and Verify refuses a
// record without a body that no such record covers: a body erased behind
// the log's back is tampering, not retention.

// RetentionClass is the name of the audit log's data class in the
// retention registry.
const RetentionClass = "audit.log"

// MinRetention is the shortest retention period a tenant's audit log may
// have: shorter would let someone who may change the period erase the
// evidence of what they did soon after doing it.
const MinRetention = 365 * 24 * time.Hour

// Actions of the audit log's own records.
const (
	// PruneAction is the record of a pruning: After holds {"from": F,
	// "to": T, "before": TIME}, the records F to T-1 whose bodies it
	// removed, all older than TIME.
	PruneAction = "audit.prune"
	// RetentionAction is the record of a change of a tenant's audit log
	// retention period, with the period before and after.
	RetentionAction = "audit.retention"
	pruneActor      = "system:retention"
)

// maxPruneChunk bounds the records one Prune call reads.
const maxPruneChunk = 10000

// pruneState is the After of a PruneAction record.
type pruneState struct {
	From   int64     `json:"from"`
	To     int64     `json:"to"`
	Before time.Time `json:"before"`
}

// Class returns the audit log's retention class for the registry the
// retention job prunes: kept for good by default (steward.MaxRetention, a
// century), a tenant's period no shorter than MinRetention.
func (l *Log) Class() steward.RetentionClass {
	return steward.RetentionClass{Name: RetentionClass,
		Description: "the audit log: bodies of records older than the period are removed, their leaf hashes kept",
		Default:     steward.MaxRetention, Min: MinRetention, Prune: l.Prune}
}

// Prune removes the bodies of the oldest records of tenant's log that are
// older than before, at most limit of them, and returns how many it
// removed. It goes in index order and stops at the first record that is
// not older than before, so the pruned records are always the log's first
// ones. In one transaction it appends the signed record of the pruning
// (PruneAction) and removes the bodies, so that a pruned body is never
// without the record that explains it.
func (l *Log) Prune(ctx context.Context, tenant string, before time.Time, limit int) (int, error) {
	if limit < 1 {
		return 0, steward.Errorf(steward.CodeInvalid, "prune the audit log: limit %d must be at least 1", limit)
	}
	if before.IsZero() {
		return 0, steward.Errorf(steward.CodeInvalid, "prune the audit log: a time to prune before is required")
	}
	limit = min(limit, maxPruneChunk)
	before = before.UTC()
	// Most runs find nothing due: say so from two reads, without taking
	// the log's lock (on SQLite, the database's writer).
	if due, err := l.pruneDue(ctx, tenant, before); err != nil || !due {
		return 0, err
	}
	var n int
	err := l.store.InTx(ctx, func(tx steward.Store) error {
		size, err := tx.LockAuditLog(ctx, tenant)
		if err != nil {
			return err
		}
		from, err := prunedUpTo(ctx, tx, tenant)
		if err != nil || from >= size {
			return err
		}
		es, err := tx.AuditEntries(ctx, tenant, from, limit)
		if err != nil {
			return err
		}
		to := from
		for _, e := range es {
			if e.Record.Index != to || !e.Record.At.Before(before) {
				break
			}
			to++
		}
		if to == from {
			return nil
		}
		if err := l.archive(tenant, es[:to-from], before); err != nil {
			return err
		}
		after, err := json.Marshal(pruneState{From: from, To: to, Before: before})
		if err != nil {
			return err
		}
		rec := steward.AuditRecord{TenantID: tenant, Actor: pruneActor, Action: PruneAction, Target: retentionTarget(tenant),
			Outcome: steward.AuditSuccess, After: after, At: l.clock.Now().UTC().Truncate(time.Microsecond),
			Detail: fmt.Sprintf("records %d to %d, older than %s: bodies removed by retention, leaf hashes kept", from, to-1, before.Format(time.RFC3339))}
		if err := l.appendTx(ctx, tx, tenant, []steward.AuditRecord{rec}); err != nil {
			return err
		}
		n, err = tx.PruneAudit(ctx, tenant, from, to)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("prune the audit log %q: %w", tenant, err)
	}
	return n, nil
}

// pruneDue reports whether the first record of tenant's log not yet
// pruned is older than before.
func (l *Log) pruneDue(ctx context.Context, tenant string, before time.Time) (bool, error) {
	from, err := prunedUpTo(ctx, l.store, tenant)
	if err != nil {
		return false, err
	}
	es, err := l.store.AuditEntries(ctx, tenant, from, 1)
	if err != nil {
		return false, err
	}
	return len(es) > 0 && es[0].Record.At.Before(before), nil
}

// prunedUpTo returns the end of the pruned prefix of tenant's log as the
// latest signed pruning record states it (0 when it was never pruned).
func prunedUpTo(ctx context.Context, store steward.Store, tenant string) (int64, error) {
	rs, err := store.SearchAudit(ctx, tenant, steward.AuditFilter{Actor: pruneActor, Action: PruneAction, Desc: true,
		Cursor: steward.NoAuditCursor, Limit: 1})
	if err != nil || len(rs) == 0 {
		return 0, err
	}
	var st pruneState
	if err := json.Unmarshal(rs[0].After, &st); err != nil {
		return 0, steward.WrapError(steward.CodeInternal, err, "the audit log's pruning record %d is malformed: run steward audit verify", rs[0].Index)
	}
	return st.To, nil
}

// RetentionPolicy is a tenant's audit log retention as the API shows it.
type RetentionPolicy struct {
	Log string `json:"log"`
	// Period is how long records keep their bodies; absent: for good.
	Period *steward.Duration `json:"period,omitempty"`
	// Minimum is the shortest period that may be set.
	Minimum steward.Duration `json:"minimum"`
	// PrunedUpTo is how many of the log's first records were pruned: their
	// bodies removed, their leaf hashes kept.
	PrunedUpTo int64      `json:"pruned_up_to"`
	UpdatedAt  *time.Time `json:"updated_at,omitempty"`
}

// Retention returns tenant's audit log retention.
func (l *Log) Retention(ctx context.Context, tenant string) (RetentionPolicy, error) {
	p := RetentionPolicy{Log: tenant, Minimum: steward.Duration(MinRetention)}
	os, err := l.store.ListRetentionOverrides(ctx, tenant)
	if err != nil {
		return p, err
	}
	for _, o := range os {
		if o.Class == RetentionClass {
			d, at := steward.Duration(max(time.Duration(o.Period), MinRetention)), o.UpdatedAt
			p.Period, p.UpdatedAt = &d, &at
		}
	}
	p.PrunedUpTo, err = prunedUpTo(ctx, l.store, tenant)
	return p, err
}

// RetentionChange asks to set a tenant's audit log retention period.
type RetentionChange struct {
	Tenant string
	// Period is how long records keep their bodies; 0 keeps them for
	// good.
	Period time.Duration
	// Actor asks, from ActorTenant, whose approval policies apply.
	Actor, ActorTenant string
	// ApprovalID is the approved request, when a policy asks for one.
	ApprovalID        string
	Remote, RequestID string
}

// SetApprovals makes changes of a retention period subject to the
// approval policies of the asking tenant (action RetentionAction, with the
// attributes tenant, period_days and shorter: "true" when the change
// removes bodies sooner than before). Call it before the log serves.
func (l *Log) SetApprovals(a steward.Approvals) { l.approvals = a }

// SetRetention sets a tenant's audit log retention period. A period under
// MinRetention is CodeInvalid and changes nothing. When an approval policy
// covers the change and c.ApprovalID is empty, nothing changes and the
// request opened is returned; called again with its ID once approved, the
// change is made. The change and a record of it (RetentionAction, the
// period before and after) land in the tenant's log together.
func (l *Log) SetRetention(ctx context.Context, c RetentionChange) (RetentionPolicy, *steward.ApprovalRequest, error) {
	period := c.Period
	if period != 0 && (period < MinRetention || period > steward.MaxRetention) {
		return RetentionPolicy{}, nil, steward.Errorf(steward.CodeInvalid,
			"the audit log's retention period must be at least %d days (or 0, for good) and at most %d days, not %s",
			int(MinRetention/(24*time.Hour)), int(steward.MaxRetention/(24*time.Hour)), period)
	}
	if period%time.Second != 0 {
		return RetentionPolicy{}, nil, steward.Errorf(steward.CodeInvalid, "the audit log's retention period is a whole number of seconds, not %s", period)
	}
	old, err := l.Retention(ctx, c.Tenant)
	if err != nil {
		return RetentionPolicy{}, nil, err
	}
	detail, req, err := l.retentionApproval(ctx, c, old)
	if err != nil || req != nil {
		return RetentionPolicy{}, req, err
	}
	now := l.clock.Now().UTC().Truncate(time.Microsecond)
	show := func(p *steward.Duration) json.RawMessage {
		v := "forever"
		if p != nil {
			v = time.Duration(*p).String()
		}
		b, _ := json.Marshal(map[string]string{"period": v})
		return b
	}
	var next *steward.Duration
	if period != 0 {
		d := steward.Duration(period)
		next = &d
	}
	err = l.store.InTx(ctx, func(tx steward.Store) error {
		if period == 0 {
			if err := tx.DeleteRetentionOverride(ctx, c.Tenant, RetentionClass); err != nil && !steward.IsNotFound(err) {
				return err
			}
		} else if err := tx.PutRetentionOverride(ctx, steward.RetentionOverride{TenantID: c.Tenant, Class: RetentionClass,
			Period: steward.Duration(period), UpdatedAt: now}); err != nil {
			return err
		}
		return l.RecordIn(ctx, tx, steward.AuditRecord{TenantID: c.Tenant, Actor: c.Actor, Action: RetentionAction,
			Target: retentionTarget(c.Tenant), Outcome: steward.AuditSuccess, Remote: c.Remote, RequestID: c.RequestID,
			Detail: detail, Before: show(old.Period), After: show(next), At: now})
	})
	if err != nil {
		return RetentionPolicy{}, nil, err
	}
	p, err := l.Retention(ctx, c.Tenant)
	return p, nil, err
}

// retentionTarget names a tenant's audit log as a target.
func retentionTarget(tenant string) string { return "audit-log:" + Origin(tenant) }

// retentionApproval applies the asking tenant's approval policies to c:
// the request to approve first when one is needed and not given, or a
// detail naming the approved request used.
func (l *Log) retentionApproval(ctx context.Context, c RetentionChange, old RetentionPolicy) (string, *steward.ApprovalRequest, error) {
	if l.approvals == nil {
		if c.ApprovalID != "" {
			return "", nil, steward.Errorf(steward.CodeInvalid, "no approval policies apply here: leave the approval out")
		}
		return "", nil, nil
	}
	shorter := c.Period != 0 && (old.Period == nil || c.Period < time.Duration(*old.Period))
	target := retentionTarget(c.Tenant)
	attrs := map[string]string{"tenant": c.Tenant, "period_days": strconv.Itoa(int(c.Period / (24 * time.Hour))),
		"shorter": strconv.FormatBool(shorter)}
	need, why, err := l.approvals.Required(ctx, c.ActorTenant, RetentionAction, target, attrs)
	if err != nil {
		return "", nil, err
	}
	switch {
	case need > 0 && c.ApprovalID == "":
		req, err := l.approvals.Request(ctx, steward.ApprovalRequest{TenantID: c.ActorTenant, Action: RetentionAction, Target: target,
			Reason:    "audit log retention of " + c.Tenant + ": " + attrs["period_days"] + " days (0: for good); " + why,
			Requester: c.Actor, Attributes: attrs, Approvals: need})
		if err != nil {
			return "", nil, err
		}
		return "", &req, nil
	case c.ApprovalID != "":
		a, err := l.approvals.Get(ctx, c.ActorTenant, c.ApprovalID)
		if err != nil {
			return "", nil, err
		}
		switch {
		case a.Action != RetentionAction || a.Target != target || a.Attributes["period_days"] != attrs["period_days"]:
			return "", nil, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is for %s on %s (%s days), not for %s days on %s",
				a.ID, a.Action, a.Target, a.Attributes["period_days"], attrs["period_days"], target)
		case a.State != steward.ApprovalApproved:
			return "", nil, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is %s, not approved", a.ID, a.State)
		}
		return "approved by request " + a.ID, nil, nil
	}
	return "", nil, nil
}
