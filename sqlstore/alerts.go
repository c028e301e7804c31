package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// Alert list limits of ListAlerts.
const (
	DefaultAlertLimit = 100
	MaxAlertLimit     = 1000
)

const ruleCols = `tenant_id, id, name, kind, severity, labels, scope, for_ns, enabled, condition, created_at, updated_at`

// ruleCondition is how a rule's condition is stored: the one of its kind.
type ruleCondition struct {
	Threshold *steward.ThresholdCondition `json:"threshold,omitempty"`
	Absence   *steward.AbsenceCondition   `json:"absence,omitempty"`
	Event     *steward.EventCondition     `json:"event,omitempty"`
	Rate      *steward.RateCondition      `json:"rate,omitempty"`
	Share     *steward.ShareCondition     `json:"share,omitempty"`
	Site      *steward.SiteCondition      `json:"site,omitempty"`
}

// ruleRow scans a rule; done fills the rule from what was scanned.
type ruleRow struct {
	r    steward.AlertRule
	forN int64
	cond ruleCondition
}

func scanRule(rr *ruleRow) []any {
	r := &rr.r
	return []any{&r.TenantID, &r.ID, &r.Name, &r.Kind, &r.Severity, jsonCol{&r.Labels}, &r.Scope, &rr.forN, &r.Enabled,
		jsonCol{&rr.cond}, timeCol{&r.CreatedAt}, timeCol{&r.UpdatedAt}}
}

func (rr *ruleRow) rule() steward.AlertRule {
	r := rr.r
	r.For = steward.Duration(rr.forN)
	r.Threshold, r.Absence, r.Event, r.Rate = rr.cond.Threshold, rr.cond.Absence, rr.cond.Event, rr.cond.Rate
	r.Share, r.Site = rr.cond.Share, rr.cond.Site
	if r.Labels == nil {
		r.Labels = map[string]string{}
	}
	return r
}

// ruleArgs validates r (its scope included) and returns its column values
// in ruleCols order.
func (s *Store) ruleArgs(r steward.AlertRule) ([]any, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if _, _, err := s.deviceFilter(steward.DeviceQuery{Query: r.Scope}, 1); err != nil {
		return nil, err
	}
	labels, err := jsonText(r.Labels, "{}")
	if err != nil {
		return nil, invalid("alert rule labels: %v", err)
	}
	cond, err := json.Marshal(ruleCondition{r.Threshold, r.Absence, r.Event, r.Rate, r.Share, r.Site})
	if err != nil {
		return nil, invalid("alert rule condition: %v", err)
	}
	return []any{r.TenantID, r.ID, r.Name, string(r.Kind), string(r.Severity), labels, r.Scope, int64(r.For), r.Enabled,
		string(cond), ts(r.CreatedAt), ts(r.UpdatedAt)}, nil
}

// CreateAlertRule implements steward.Store.
func (s *Store) CreateAlertRule(ctx context.Context, r steward.AlertRule) error {
	args, err := s.ruleArgs(r)
	if err != nil {
		return err
	}
	_, err = s.exec(ctx, `INSERT INTO alert_rules (`+ruleCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.WrapError(steward.CodeNotFound, err, "tenant %s not found", r.TenantID)
	}
	if err != nil && s.d.IsUniqueViolation(err) {
		return steward.WrapError(steward.CodeConflict, err, "an alert rule named %q or with id %s already exists", r.Name, r.ID)
	}
	return s.fail(err, "create alert rule %s", r.Name)
}

// GetAlertRule implements steward.Store.
func (s *Store) GetAlertRule(ctx context.Context, tenantID, id string) (steward.AlertRule, error) {
	var rr ruleRow
	err := s.queryRow(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanRule(&rr)...)
	if errors.Is(err, sql.ErrNoRows) {
		return steward.AlertRule{}, notFound("alert rule %s not found", id)
	}
	if err != nil {
		return steward.AlertRule{}, s.fail(err, "get alert rule %s", id)
	}
	return rr.rule(), nil
}

// ListAlertRules implements steward.Store.
func (s *Store) ListAlertRules(ctx context.Context, tenantID string) ([]steward.AlertRule, error) {
	rows, err := s.query(ctx, `SELECT `+ruleCols+` FROM alert_rules WHERE tenant_id = ? ORDER BY name`, tenantID)
	if err != nil {
		return nil, s.fail(err, "list alert rules")
	}
	rrs, err := collect(rows, scanRule, s, "list alert rules")
	if err != nil {
		return nil, err
	}
	out := make([]steward.AlertRule, len(rrs))
	for i := range rrs {
		out[i] = rrs[i].rule()
	}
	return out, nil
}

// UpdateAlertRule implements steward.Store.
func (s *Store) UpdateAlertRule(ctx context.Context, r steward.AlertRule) error {
	args, err := s.ruleArgs(r)
	if err != nil {
		return err
	}
	// Every column but the key and created_at; the key goes last.
	res, err := s.exec(ctx, `UPDATE alert_rules SET name = ?, kind = ?, severity = ?, labels = ?, scope = ?, for_ns = ?, enabled = ?,
		condition = ?, updated_at = ? WHERE tenant_id = ? AND id = ?`,
		append(append([]any{}, args[2:10]...), args[11], r.TenantID, r.ID)...)
	if err != nil && s.d.IsUniqueViolation(err) {
		return steward.WrapError(steward.CodeConflict, err, "an alert rule named %q already exists", r.Name)
	}
	if err != nil {
		return s.fail(err, "update alert rule %s", r.ID)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "update alert rule %s", r.ID)
	}
	if n == 0 {
		return notFound("alert rule %s not found", r.ID)
	}
	return nil
}

// DeleteAlertRule implements steward.Store; the foreign key deletes the
// rule's alerts with it.
func (s *Store) DeleteAlertRule(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, `DELETE FROM alert_rules WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return s.fail(err, "delete alert rule %s", id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete alert rule %s", id)
	}
	if n == 0 {
		return notFound("alert rule %s not found", id)
	}
	return nil
}

const alertCols = `tenant_id, id, rule_id, device_id, state, severity, labels, summary, value, started_at, fired_at, resolved_at,
	last_evaluated_at, acknowledged_by, acknowledged_at, assignee, subject, inhibited_by, suppressed`

func scanAlert(a *steward.Alert) []any {
	return []any{&a.TenantID, &a.ID, &a.RuleID, &a.DeviceID, &a.State, &a.Severity, jsonCol{&a.Labels}, &a.Summary, &a.Value,
		timeCol{&a.StartedAt}, timePtrCol{&a.FiredAt}, timePtrCol{&a.ResolvedAt}, timeCol{&a.LastEvaluatedAt},
		&a.AcknowledgedBy, timePtrCol{&a.AcknowledgedAt}, &a.Assignee, &a.Subject, &a.InhibitedBy, &a.Suppressed}
}

func normAlert(a steward.Alert) steward.Alert {
	if a.Labels == nil {
		a.Labels = map[string]string{}
	}
	return a
}

// PutAlert implements steward.Store with one upsert on the partial unique
// index of open alerts: a second writer of the same rule and device finds
// the first one's row and updates it. The first firing time is kept.
func (s *Store) PutAlert(ctx context.Context, a steward.Alert) (steward.Alert, error) {
	if err := a.Validate(); err != nil {
		return steward.Alert{}, err
	}
	if a.ID == "" {
		return steward.Alert{}, invalid("an alert needs an id")
	}
	labels, err := jsonText(a.Labels, "{}")
	if err != nil {
		return steward.Alert{}, invalid("alert labels: %v", err)
	}
	var out steward.Alert
	if a.State == steward.AlertResolved {
		// A resolved row is outside the partial index, so the upsert below
		// would not find the open alert it closes: update that one.
		err = s.w.QueryRowContext(ctx, s.q(`UPDATE alerts SET state = ?, severity = ?, labels = ?, summary = ?, value = ?,
				resolved_at = ?, last_evaluated_at = ?, inhibited_by = ?, suppressed = ?
			WHERE tenant_id = ? AND rule_id = ? AND device_id = ? AND subject = ? AND state <> 'resolved' RETURNING `+alertCols),
			string(a.State), string(a.Severity), labels, a.Summary, a.Value, nullTSPtr(a.ResolvedAt), ts(a.LastEvaluatedAt),
			a.InhibitedBy, a.Suppressed, a.TenantID, a.RuleID, a.DeviceID, a.Subject).Scan(scanAlert(&out)...)
		if err == nil {
			return normAlert(out), nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return steward.Alert{}, s.fail(err, "resolve alert of rule %s", a.RuleID)
		}
	}
	err = s.w.QueryRowContext(ctx, s.q(`INSERT INTO alerts (`+alertCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (tenant_id, rule_id, device_id, subject) WHERE state <> 'resolved' DO UPDATE SET
			state = excluded.state, severity = excluded.severity, labels = excluded.labels, summary = excluded.summary,
			value = excluded.value, fired_at = COALESCE(alerts.fired_at, excluded.fired_at), resolved_at = excluded.resolved_at,
			last_evaluated_at = excluded.last_evaluated_at, inhibited_by = excluded.inhibited_by, suppressed = excluded.suppressed
		RETURNING `+alertCols),
		a.TenantID, a.ID, a.RuleID, a.DeviceID, string(a.State), string(a.Severity), labels, a.Summary, a.Value,
		ts(a.StartedAt), nullTSPtr(a.FiredAt), nullTSPtr(a.ResolvedAt), ts(a.LastEvaluatedAt),
		a.AcknowledgedBy, nullTSPtr(a.AcknowledgedAt), a.Assignee, a.Subject, a.InhibitedBy, a.Suppressed).Scan(scanAlert(&out)...)
	if err != nil && s.d.IsForeignKeyViolation(err) {
		return steward.Alert{}, steward.WrapError(steward.CodeNotFound, err, "alert rule %s not found", a.RuleID)
	}
	if err != nil {
		return steward.Alert{}, s.fail(err, "put alert of rule %s", a.RuleID)
	}
	return normAlert(out), nil
}

// GetAlert implements steward.Store.
func (s *Store) GetAlert(ctx context.Context, tenantID, id string) (steward.Alert, error) {
	var a steward.Alert
	err := s.queryRow(ctx, `SELECT `+alertCols+` FROM alerts WHERE tenant_id = ? AND id = ?`, tenantID, id).Scan(scanAlert(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("alert %s not found", id)
	}
	return normAlert(a), s.fail(err, "get alert %s", id)
}

// ListAlerts implements steward.Store.
func (s *Store) ListAlerts(ctx context.Context, tenantID string, f steward.AlertFilter) ([]steward.Alert, error) {
	limit := f.Limit
	switch {
	case limit < 0 || limit > MaxAlertLimit:
		return nil, invalid("limit %d: want 0 to %d", limit, MaxAlertLimit)
	case f.State != "" && !f.State.Valid():
		return nil, invalid("alert state %q: want pending, firing or resolved", f.State)
	case f.Severity != "" && !f.Severity.Valid():
		return nil, invalid("alert severity %q: want one of critical, major, minor, warning, info", f.Severity)
	case limit == 0:
		limit = DefaultAlertLimit
	}
	var b strings.Builder
	b.WriteString(`SELECT ` + alertCols + ` FROM alerts WHERE tenant_id = ?`)
	args := []any{tenantID}
	for _, c := range []struct{ col, v string }{{"state", string(f.State)}, {"severity", string(f.Severity)}, {"rule_id", f.RuleID}, {"device_id", f.DeviceID}} {
		if c.v != "" {
			b.WriteString(` AND ` + c.col + ` = ?`)
			args = append(args, c.v)
		}
	}
	if f.Open {
		b.WriteString(` AND state <> 'resolved'`)
	}
	b.WriteString(` ORDER BY started_at DESC, id DESC LIMIT ?`)
	args = append(args, limit)
	rows, err := s.query(ctx, b.String(), args...)
	if err != nil {
		return nil, s.fail(err, "list alerts")
	}
	out, err := collect(rows, scanAlert, s, "list alerts")
	for i := range out {
		out[i] = normAlert(out[i])
	}
	return out, err
}

// DeleteAlert implements steward.Store.
func (s *Store) DeleteAlert(ctx context.Context, tenantID, id string) error {
	res, err := s.exec(ctx, `DELETE FROM alerts WHERE tenant_id = ? AND id = ?`, tenantID, id)
	if err != nil {
		return s.fail(err, "delete alert %s", id)
	}
	n, err := affected(res)
	if err != nil {
		return s.fail(err, "delete alert %s", id)
	}
	if n == 0 {
		return notFound("alert %s not found", id)
	}
	return nil
}

// updateAlert runs an UPDATE of one alert and returns it as stored.
func (s *Store) updateAlert(ctx context.Context, tenantID, id, set string, args ...any) (steward.Alert, error) {
	var a steward.Alert
	err := s.w.QueryRowContext(ctx, s.q(`UPDATE alerts SET `+set+` WHERE tenant_id = ? AND id = ? RETURNING `+alertCols),
		append(args, tenantID, id)...).Scan(scanAlert(&a)...)
	if errors.Is(err, sql.ErrNoRows) {
		return a, notFound("alert %s not found", id)
	}
	return normAlert(a), s.fail(err, "update alert %s", id)
}

// MaxAlertActorLen bounds who acknowledged or is assigned an alert.
const MaxAlertActorLen = 256

// AcknowledgeAlert implements steward.Store.
func (s *Store) AcknowledgeAlert(ctx context.Context, tenantID, id, by string, at time.Time) (steward.Alert, error) {
	switch {
	case by == "" || len(by) > MaxAlertActorLen:
		return steward.Alert{}, invalid("who acknowledges an alert: 1 to %d characters", MaxAlertActorLen)
	case at.IsZero():
		return steward.Alert{}, invalid("an acknowledgement needs its time")
	}
	return s.updateAlert(ctx, tenantID, id, `acknowledged_by = ?, acknowledged_at = ?`, by, ts(at))
}

// AssignAlert implements steward.Store.
func (s *Store) AssignAlert(ctx context.Context, tenantID, id, assignee string) (steward.Alert, error) {
	if len(assignee) > MaxAlertActorLen {
		return steward.Alert{}, invalid("assignee: at most %d characters", MaxAlertActorLen)
	}
	return s.updateAlert(ctx, tenantID, id, `assignee = ?`, assignee)
}

// CountAlerts implements steward.Store with one grouped count.
func (s *Store) CountAlerts(ctx context.Context) ([]steward.AlertCount, error) {
	rows, err := s.query(ctx, `SELECT tenant_id, state, severity, COUNT(*) FROM alerts GROUP BY tenant_id, state, severity ORDER BY tenant_id, state, severity`)
	if err != nil {
		return nil, s.fail(err, "count alerts")
	}
	return collect(rows, func(c *steward.AlertCount) []any { return []any{&c.TenantID, &c.State, &c.Severity, &c.Count} }, s, "count alerts")
}

// AlertSignals implements steward.Store with one statement over the
// scope's devices, as FleetAggregates: the metric's samples (sampleRows)
// aggregated per device (min, max, avg, or the newest one for last) and
// joined, the events counted by a correlated subquery on the
// (tenant_id, device_id, type, at) index, the newest telemetry read from
// metric_latest.
func (s *Store) AlertSignals(ctx context.Context, tenantID string, q steward.AlertSignalQuery) ([]steward.AlertSignal, error) {
	switch {
	case tenantID == "":
		return nil, invalid("tenant id is required")
	case (q.Metric != "" || q.Event != "") && (q.From.IsZero() || q.To.IsZero() || !q.From.Before(q.To)):
		return nil, invalid("alert signals need a time range with from before to")
	case q.Metric != "" && !steward.ValidMetricName(q.Metric):
		return nil, invalid("metric %q is not a metric name", q.Metric)
	case q.Metric != "" && q.Aggregation != steward.AggAvg && q.Aggregation != steward.AggMin && q.Aggregation != steward.AggMax && q.Aggregation != steward.AggLast:
		return nil, invalid("aggregation %q: want avg, min, max or last", q.Aggregation)
	case q.Event != "" && !steward.ValidEventType(q.Event):
		return nil, invalid("event type %q: use 1 to %d letters, digits, '_', '-', '.'", q.Event, steward.MaxEventTypeLen)
	case q.Field != "" && !steward.ValidMetricName(q.Field):
		return nil, invalid("event field %q: use letters, digits, '_', '-', '.'", q.Field)
	case q.MinSeverity != "" && !q.MinSeverity.Valid():
		return nil, invalid("event severity %q is unknown", q.MinSeverity)
	}
	from, to := ts(q.From), ts(q.To)
	var head strings.Builder
	var args []any
	head.WriteString(`SELECT d.id, d.site, d.state, d.online, d.last_seen,
		(SELECT l.at FROM metric_latest l WHERE l.tenant_id = d.tenant_id AND l.device_id = d.id), `)
	if q.Metric == "" {
		head.WriteString(`0, NULL, `)
	} else {
		head.WriteString(`COALESCE(s.n, 0), s.v, `)
	}
	if q.Event != "" {
		head.WriteString(`(SELECT COUNT(*) FROM device_events e
			WHERE e.tenant_id = d.tenant_id AND e.device_id = d.id AND e.type = ? AND e.at >= ? AND e.at < ?`)
		args = append(args, q.Event, from, to)
		if q.MinSeverity != "" {
			sevs := q.MinSeverity.AtLeast()
			head.WriteString(` AND e.severity IN (?` + strings.Repeat(", ?", len(sevs)-1) + `)`)
			for _, v := range sevs {
				args = append(args, string(v))
			}
		}
		if q.Field != "" {
			// Compared as text on both backends: strings and numbers match
			// alike; booleans read 1/0 on SQLite and true/false on PostgreSQL.
			if s.d.Numbered {
				head.WriteString(` AND e.fields ->> CAST(? AS TEXT) = ?`)
				args = append(args, q.Field, q.FieldValue)
			} else {
				head.WriteString(` AND CAST(json_extract(e.fields, ?) AS TEXT) = ?`)
				args = append(args, `$."`+q.Field+`"`, q.FieldValue)
			}
		}
		head.WriteString(`)`)
	} else {
		head.WriteString(`0`)
	}
	head.WriteString(` FROM (SELECT id, tenant_id, site, state, online, last_seen FROM devices WHERE tenant_id = ?`)
	args = append(args, tenantID)
	stmt := s.d.Rebind(head.String(), 1)
	cond, condArgs, err := s.deviceFilter(steward.DeviceQuery{Query: q.Scope}, len(args)+1)
	if err != nil {
		return nil, err
	}
	if cond != "" {
		stmt += ` AND (` + cond + `)`
		args = append(args, condArgs...)
	}
	tail := `) d`
	if q.Metric != "" {
		// The metric's samples are aggregated per device before they meet
		// the devices, as in FleetAggregates: samples read per device on
		// its key, the recent ones in one range scan.
		rows, rowArgs := s.sampleRows(true, `r.tenant_id = ? AND j.key = ? AND r.at >= ? AND r.at < ?`, tenantID, q.Metric, from, to)
		if q.Aggregation == steward.AggLast {
			tail += ` LEFT JOIN (SELECT device_id, n, value AS v FROM (SELECT device_id, value,
				COUNT(*) OVER (PARTITION BY device_id) AS n, ROW_NUMBER() OVER (PARTITION BY device_id ORDER BY at DESC) AS k
				FROM (` + rows + `) x) w WHERE k = 1) s ON s.device_id = d.id`
		} else {
			tail += ` LEFT JOIN (SELECT device_id, COUNT(value) AS n, ` + strings.ToUpper(q.Aggregation) + `(value) AS v
				FROM (` + rows + `) x GROUP BY device_id) s ON s.device_id = d.id`
		}
		args = append(args, rowArgs...)
	}
	tail += ` ORDER BY d.id`
	stmt += s.d.Rebind(tail, len(args)-countArgs(tail)+1)
	rows, err := s.queryRebound(ctx, stmt, args...)
	if err != nil {
		return nil, s.fail(err, "alert signals")
	}
	return collect(rows, func(a *steward.AlertSignal) []any {
		return []any{&a.DeviceID, &a.Site, &a.State, &a.Online, timeCol{&a.LastSeen}, timeCol{&a.LastSample}, &a.Samples, nullFloat{&a.Value}, &a.Events}
	}, s, "alert signals")
}

// SiteConnectivity implements steward.Store with one grouped count over
// the tenant's devices that have a site.
func (s *Store) SiteConnectivity(ctx context.Context, tenantID string) ([]steward.SiteConnectivity, error) {
	if tenantID == "" {
		return nil, invalid("tenant id is required")
	}
	rows, err := s.query(ctx, `SELECT site, COUNT(*), SUM(CASE WHEN online THEN 0 ELSE 1 END) FROM devices
		WHERE tenant_id = ? AND site <> '' AND state NOT IN ('registered', 'maintenance', 'decommissioned')
		GROUP BY site ORDER BY site`, tenantID)
	if err != nil {
		return nil, s.fail(err, "site connectivity")
	}
	return collect(rows, func(c *steward.SiteConnectivity) []any { return []any{&c.Site, &c.Devices, &c.Offline} }, s, "site connectivity")
}
