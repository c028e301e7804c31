// Package alerting evaluates alert rules: every interval, for each tenant's
// rules, it asks the store for the signals of the rule's scope in one
// grouped query, decides per device whether the condition holds, and moves
// the device's alert through pending, firing and resolved.
//
// A pending alert whose condition clears before the rule's For has passed
// is deleted: it never fired, so nobody was told, and keeping it would
// fill the history with noise from values that brush the threshold.
package alerting

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// DefaultInterval is how often rules are evaluated.
const DefaultInterval = 15 * time.Second

// maxOpenPerRule is how many open alerts of a rule one pass reads (the
// store's list limit); a rule with more has its other alerts evaluated as
// if new, which the store's upsert turns into updates, never duplicates.
const maxOpenPerRule = 1000

// Config configures an Evaluator.
type Config struct {
	Store    steward.Store
	Clock    steward.Clock
	Logger   *slog.Logger
	Interval time.Duration // default DefaultInterval
	// Leader reports whether this node should evaluate now. In a cluster
	// only one node should: two would do the work twice and interleave
	// their updates of the same alerts (the store's unique index of open
	// alerts still keeps them from duplicating). Wire it to the cluster's
	// leader election (a PostgreSQL advisory lock, say); nil means always,
	// which is right for the embedded single node.
	Leader func() bool
	// Notifier, when set, is told each alert that starts firing or
	// resolves (nil: alerts are only recorded).
	Notifier Notifier
}

// Notifier sends an alert's change to the tenant's channels (package
// notify implements it; silences are its business).
type Notifier interface {
	Notify(ctx context.Context, n steward.Notification) ([]steward.Delivery, *steward.Silence, error)
}

// Evaluator runs the alert rules.
type Evaluator struct {
	cfg Config
	mu  sync.Mutex // one pass at a time
}

// New returns an Evaluator; call Run to start it.
func New(cfg Config) *Evaluator {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Leader == nil {
		cfg.Leader = func() bool { return true }
	}
	return &Evaluator{cfg: cfg}
}

// Run evaluates every Interval until ctx is done.
func (e *Evaluator) Run(ctx context.Context) {
	t := time.NewTicker(e.cfg.Interval)
	defer t.Stop()
	for {
		if e.cfg.Leader() {
			if err := e.Evaluate(ctx); err != nil && ctx.Err() == nil {
				e.cfg.Logger.Error("alert evaluation", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Evaluate runs one pass over every rule of every tenant, at the clock's
// now. A rule that fails is logged and the others still run; the errors
// come back joined.
func (e *Evaluator) Evaluate(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	now := e.cfg.Clock.Now().UTC()
	tenants, err := e.cfg.Store.ListTenants(ctx)
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	var errs []error
	for _, tn := range tenants {
		rules, err := e.cfg.Store.ListAlertRules(ctx, tn.ID)
		if err != nil {
			errs = append(errs, fmt.Errorf("list alert rules of %s: %w", tn.ID, err))
			continue
		}
		for _, r := range rules {
			if err := e.EvaluateRule(ctx, r, now); err != nil {
				e.cfg.Logger.Warn("alert rule evaluation failed", "tenant", r.TenantID, "rule", r.ID, "err", err)
				errs = append(errs, fmt.Errorf("rule %s of %s: %w", r.ID, r.TenantID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// verdict is a rule's condition on one device.
type verdict struct {
	active  bool // the condition holds
	clear   bool // the resolve condition holds
	value   float64
	summary string
}

// EvaluateRule evaluates one rule at now: one store query for the scope's
// signals, one for the rule's open alerts, and the changes in one
// transaction.
func (e *Evaluator) EvaluateRule(ctx context.Context, r steward.AlertRule, now time.Time) error {
	open, err := e.cfg.Store.ListAlerts(ctx, r.TenantID, steward.AlertFilter{RuleID: r.ID, Open: true, Limit: maxOpenPerRule})
	if err != nil {
		return fmt.Errorf("list open alerts: %w", err)
	}
	byDevice := make(map[string]steward.Alert, len(open))
	for _, a := range open {
		byDevice[a.DeviceID] = a
	}
	var verdicts map[string]verdict
	if r.Enabled {
		sigs, err := e.cfg.Store.AlertSignals(ctx, r.TenantID, signalQuery(r, now))
		if err != nil {
			return fmt.Errorf("signals: %w", err)
		}
		verdicts = make(map[string]verdict, len(sigs))
		for _, s := range sigs {
			verdicts[s.DeviceID] = judge(r, s, now)
		}
	}
	var changed []steward.Alert // started firing or resolved in this pass
	err = e.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		changed = changed[:0] // InTx may retry
		for dev, v := range verdicts {
			a, ok := byDevice[dev]
			if err := e.step(ctx, tx, r, dev, a, ok, v, now, &changed); err != nil {
				return err
			}
		}
		// Open alerts of devices the rule no longer looks at (out of scope,
		// deleted, or the rule disabled) end now.
		for dev, a := range byDevice {
			if _, ok := verdicts[dev]; ok {
				continue
			}
			why := "the rule is disabled"
			if r.Enabled {
				why = "the device left the rule's scope"
			}
			if err := e.step(ctx, tx, r, dev, a, true, verdict{clear: true, value: a.Value, summary: why}, now, &changed); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	e.notify(ctx, r, changed, now)
	return nil
}

// notify hands the alerts that changed to the notifier once their change
// is committed. The key is the alert and its new state, so a pass that
// runs again enqueues nothing twice. A crash between the commit and the
// enqueue loses that one notification (the alert itself is recorded).
func (e *Evaluator) notify(ctx context.Context, r steward.AlertRule, changed []steward.Alert, now time.Time) {
	if e.cfg.Notifier == nil {
		return
	}
	for _, a := range changed {
		labels := map[string]string{"rule": r.Name, "severity": string(a.Severity)}
		for k, v := range a.Labels {
			labels[k] = v
		}
		if a.DeviceID != "" {
			labels["device"] = a.DeviceID
		}
		n := steward.Notification{
			Key:      a.ID + "/" + string(a.State),
			GroupKey: r.ID,
			TenantID: a.TenantID,
			AlertID:  a.ID,
			Rule:     r.Name,
			DeviceID: a.DeviceID,
			State:    string(a.State),
			Severity: string(a.Severity),
			Labels:   labels,
			Summary:  a.Summary,
			Value:    a.Value,
			StartsAt: a.StartedAt,
			EndsAt:   a.ResolvedAt,
			SentAt:   now,
		}
		if a.FiredAt != nil {
			n.StartsAt = *a.FiredAt
		}
		if _, silence, err := e.cfg.Notifier.Notify(ctx, n); err != nil {
			e.cfg.Logger.Warn("notify alert", "tenant", a.TenantID, "alert", a.ID, "state", a.State, "err", err)
		} else if silence != nil {
			e.cfg.Logger.Info("alert notification silenced", "tenant", a.TenantID, "alert", a.ID, "silence", silence.ID)
		}
	}
}

// step moves one device's alert: open one when the condition starts to
// hold, fire it after For, resolve it when the resolve condition holds,
// drop it (delete) when it clears while still pending.
func (e *Evaluator) step(ctx context.Context, tx steward.Store, r steward.AlertRule, dev string, a steward.Alert, exists bool, v verdict, now time.Time, changed *[]steward.Alert) error {
	if !exists {
		if !v.active {
			return nil
		}
		a = steward.Alert{ID: newID("al-"), TenantID: r.TenantID, RuleID: r.ID, DeviceID: dev, State: steward.AlertPending, StartedAt: now}
	}
	a.Severity, a.Labels, a.Value, a.Summary, a.LastEvaluatedAt = r.Severity, r.Labels, v.value, v.summary, now
	switch {
	case a.State == steward.AlertPending && !v.active:
		e.cfg.Logger.Debug("alert dropped before firing", "tenant", r.TenantID, "rule", r.ID, "device", dev)
		return tx.DeleteAlert(ctx, r.TenantID, a.ID)
	case a.State == steward.AlertPending && now.Sub(a.StartedAt) >= r.For.D():
		a.State, a.FiredAt = steward.AlertFiring, &now
		e.cfg.Logger.Info("alert firing", "tenant", r.TenantID, "rule", r.Name, "device", dev, "summary", v.summary)
		defer func() { *changed = append(*changed, a) }()
	case a.State == steward.AlertFiring && v.clear:
		a.State, a.ResolvedAt = steward.AlertResolved, &now
		e.cfg.Logger.Info("alert resolved", "tenant", r.TenantID, "rule", r.Name, "device", dev, "summary", v.summary)
		defer func() { *changed = append(*changed, a) }()
	}
	stored, err := tx.PutAlert(ctx, a)
	a = stored
	return err
}

// signalQuery is what rule r needs from the store at now.
func signalQuery(r steward.AlertRule, now time.Time) steward.AlertSignalQuery {
	// To is just after now, so that a sample stamped now counts.
	q := steward.AlertSignalQuery{Scope: r.Scope, From: now.Add(-r.Window()), To: now.Add(time.Microsecond)}
	switch {
	case r.Threshold != nil:
		q.Metric, q.Aggregation = r.Threshold.Metric, r.Threshold.Aggregation
	case r.Event != nil:
		q.Event, q.MinSeverity, q.Field, q.FieldValue = r.Event.Type, r.Event.MinSeverity, r.Event.Field, r.Event.FieldValue
	case r.Rate != nil:
		q.Event = r.Rate.Type
	}
	return q
}

// judge decides rule r's condition on one device's signals at now.
func judge(r steward.AlertRule, s steward.AlertSignal, now time.Time) verdict {
	switch {
	case r.Threshold != nil:
		c := r.Threshold
		if s.Samples == 0 {
			// No data is neither a breach nor a recovery: a firing alert
			// stays until data shows it cleared (absence rules watch silence).
			return verdict{summary: fmt.Sprintf("no %s samples in the last %s", c.Metric, c.Window.D())}
		}
		return verdict{
			active: c.Compare(s.Value, c.Value),
			clear:  !c.Compare(s.Value, c.Resolve()),
			value:  s.Value,
			summary: fmt.Sprintf("%s %s over %s is %g (fires %s %g, resolves past %g)",
				c.Metric, c.Aggregation, c.Window.D(), s.Value, c.Operator, c.Value, c.Resolve()),
		}
	case r.Absence != nil:
		c := r.Absence
		last, what := s.LastSample, "telemetry"
		if c.Signal == "offline" {
			last, what = s.LastSeen, "contact"
		}
		active := last.IsZero() || now.Sub(last) >= c.Window.D()
		if c.Signal == "offline" {
			active = active && !s.Online
		}
		v := verdict{active: active, clear: !active}
		if last.IsZero() {
			v.summary = "no " + what + " ever"
		} else {
			v.value = now.Sub(last).Seconds()
			v.summary = fmt.Sprintf("no %s for %s (window %s)", what, now.Sub(last).Truncate(time.Second), c.Window.D())
		}
		return v
	case r.Event != nil:
		n := s.Events
		return verdict{active: n > 0, clear: n == 0, value: float64(n),
			summary: fmt.Sprintf("%d %s events in the last %s", n, r.Event.Type, r.Event.Window.D())}
	case r.Rate != nil:
		c := r.Rate
		rate := float64(s.Events) / c.Window.D().Hours()
		resolve := c.PerHour
		if c.ResolvePerHour != nil {
			resolve = *c.ResolvePerHour
		}
		return verdict{active: rate > c.PerHour, clear: rate <= resolve, value: rate,
			summary: fmt.Sprintf("%.3g %s events per hour over %s (fires above %g)", rate, c.Type, c.Window.D(), c.PerHour)}
	}
	return verdict{}
}

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID makes a random alert ID: prefix + 20 lower-case base32 characters.
func newID(prefix string) string {
	b := make([]byte, 13)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + lowerBase32.EncodeToString(b)[:20]
}
