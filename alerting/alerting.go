// Package alerting evaluates alert rules: every interval, for each tenant's
// rules, it asks the store for the signals of the rule's scope in one
// grouped query, decides per device whether the condition holds, and moves
// the device's alert through pending, firing and resolved.
//
// A pending alert whose condition clears before the rule's For has passed
// is deleted: it never fired, so nobody was told, and keeping it would
// fill the history with noise from values that brush the threshold.
//
// Each pass checks the tenant's sites first: when many of a site's
// devices are offline at once (the tenant's site_connectivity rule, or
// the built-in default of 50% and 3 devices, stored as a rule the first
// time a site goes dark), one site alert fires, and the offline alerts of
// that site's devices fire too but are inhibited: recorded with
// InhibitedBy naming the site alert, not handed to the notifier. When the
// site alert resolves, its devices' alerts stay inhibited for the rule's
// recovery grace (2 minutes by default), since devices come back from an
// outage one by one; a device still offline after it is notified on its own.
// Devices in maintenance raise no absence alerts, and their other alerts
// are recorded as Suppressed, not notified.
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
		// Sites first: their alerts decide which device alerts are inhibited.
		sites, stored := siteRules(tn.ID, rules, now)
		for _, site := range sites {
			if err := e.evaluateSites(ctx, site, stored, now); err != nil {
				e.cfg.Logger.Warn("site connectivity evaluation failed", "tenant", tn.ID, "rule", site.ID, "err", err)
				errs = append(errs, fmt.Errorf("site connectivity rule %s of %s: %w", site.ID, tn.ID, err))
			}
		}
		inhibitors, err := e.inhibitingSites(ctx, sites, stored, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("site alerts of %s: %w", tn.ID, err))
			continue
		}
		for _, r := range rules {
			if r.Kind == steward.RuleSiteConnectivity {
				continue
			}
			if err := e.evaluateRule(ctx, r, now, inhibitors); err != nil {
				e.cfg.Logger.Warn("alert rule evaluation failed", "tenant", r.TenantID, "rule", r.ID, "err", err)
				errs = append(errs, fmt.Errorf("rule %s of %s: %w", r.ID, r.TenantID, err))
			}
		}
	}
	return errors.Join(errs...)
}

// siteRules returns the tenant's site connectivity rules among rules, or
// the built-in default alone (not yet stored: stored is false).
func siteRules(tenantID string, rules []steward.AlertRule, now time.Time) (out []steward.AlertRule, stored bool) {
	for _, r := range rules {
		if r.Kind == steward.RuleSiteConnectivity {
			out = append(out, r)
		}
	}
	if len(out) > 0 {
		return out, true
	}
	return []steward.AlertRule{{ID: steward.BuiltinSiteRuleID, TenantID: tenantID, Name: steward.BuiltinSiteRuleName,
		Kind: steward.RuleSiteConnectivity, Severity: steward.AlertMajor, Enabled: true,
		Labels: map[string]string{"builtin": "true"}, Site: &steward.SiteCondition{}, CreatedAt: now, UpdatedAt: now}}, false
}

// inhibitingSites maps each site whose connectivity alert (of any of
// sites' rules) fires, or resolved less than the rule's recovery grace
// before now, to that alert's ID.
func (e *Evaluator) inhibitingSites(ctx context.Context, sites []steward.AlertRule, stored bool, now time.Time) (map[string]string, error) {
	out := map[string]string{}
	for _, site := range sites {
		if !stored {
			// The built-in rule, created in this pass perhaps: its alerts
			// count only if it exists.
			if _, err := e.cfg.Store.GetAlertRule(ctx, site.TenantID, site.ID); steward.ErrorCode(err) == steward.CodeNotFound {
				continue
			} else if err != nil {
				return nil, err
			}
		}
		c := steward.SiteCondition{}
		if site.Site != nil {
			c = *site.Site
		}
		grace := c.Effective().RecoveryGrace.D()
		for _, state := range []steward.AlertState{steward.AlertFiring, steward.AlertResolved} {
			alerts, err := e.cfg.Store.ListAlerts(ctx, site.TenantID, steward.AlertFilter{RuleID: site.ID, State: state, Limit: maxOpenPerRule})
			if err != nil {
				return nil, err
			}
			for _, a := range alerts {
				if state == steward.AlertResolved && (a.ResolvedAt == nil || !a.ResolvedAt.Add(grace).After(now)) {
					continue
				}
				if _, ok := out[a.Subject]; !ok {
					out[a.Subject] = a.ID
				}
			}
		}
	}
	return out, nil
}

// evaluateSites runs the site connectivity rule r: one grouped count of
// the tenant's devices per site, one alert per site (subject and label
// "site", no device). The built-in rule is stored the first time a site
// alert opens, so that its alerts have a rule (and operators can tune or
// disable it like any other).
func (e *Evaluator) evaluateSites(ctx context.Context, r steward.AlertRule, stored bool, now time.Time) error {
	var open []steward.Alert
	if stored {
		var err error
		if open, err = e.cfg.Store.ListAlerts(ctx, r.TenantID, steward.AlertFilter{RuleID: r.ID, Open: true, Limit: maxOpenPerRule}); err != nil {
			return fmt.Errorf("list open alerts: %w", err)
		}
	}
	var verdicts map[key]verdict
	if r.Enabled {
		counts, err := e.cfg.Store.SiteConnectivity(ctx, r.TenantID)
		if err != nil {
			return fmt.Errorf("count devices per site: %w", err)
		}
		c := steward.SiteCondition{}
		if r.Site != nil {
			c = *r.Site
		}
		c = c.Effective()
		verdicts = make(map[key]verdict, len(counts))
		for _, n := range counts {
			share := 0.0
			if n.Devices > 0 {
				share = float64(n.Offline) / float64(n.Devices)
			}
			active := n.Offline >= c.MinDevices && share >= c.MinShare
			labels := map[string]string{"site": n.Site}
			for k, v := range r.Labels {
				labels[k] = v
			}
			verdicts[key{subject: n.Site}] = verdict{active: active, clear: !active, value: share, labels: labels,
				summary: fmt.Sprintf("%d of %d devices of site %s offline (fires at %d and %g%%)", n.Offline, n.Devices, n.Site, c.MinDevices, c.MinShare*100)}
		}
	}
	if !stored {
		need := false
		for _, v := range verdicts {
			need = need || v.active
		}
		if !need {
			return nil
		}
		if err := e.cfg.Store.CreateAlertRule(ctx, r); err != nil && steward.ErrorCode(err) != steward.CodeConflict {
			return fmt.Errorf("create the built-in site connectivity rule: %w", err)
		}
	}
	return e.apply(ctx, r, open, verdicts, now)
}

// EvaluateRule evaluates one rule at now, with the inhibiting site alerts
// read from the store.
func (e *Evaluator) EvaluateRule(ctx context.Context, r steward.AlertRule, now time.Time) error {
	rules, err := e.cfg.Store.ListAlertRules(ctx, r.TenantID)
	if err != nil {
		return fmt.Errorf("list alert rules: %w", err)
	}
	if r.Kind == steward.RuleSiteConnectivity {
		return e.evaluateSites(ctx, r, true, now)
	}
	sites, stored := siteRules(r.TenantID, rules, now)
	inhibitors, err := e.inhibitingSites(ctx, sites, stored, now)
	if err != nil {
		return fmt.Errorf("site alerts: %w", err)
	}
	return e.evaluateRule(ctx, r, now, inhibitors)
}

// verdict is a rule's condition on one device (or site, or scope).
type verdict struct {
	active  bool // the condition holds
	clear   bool // the resolve condition holds
	value   float64
	summary string
	labels  map[string]string // the alert's labels, when not the rule's
	// inhibitedBy and suppressed keep a firing alert from the notifier.
	inhibitedBy string
	suppressed  string
}

// key tells apart the open alerts of one rule.
type key struct{ device, subject string }

// maintenanceReason is the Suppressed text of a device in maintenance.
const maintenanceReason = "device in maintenance"

// evaluateRule evaluates one rule at now: one store query for the scope's
// signals, one for the rule's open alerts, and the changes in one
// transaction. inhibitors maps a site to its firing connectivity alert.
func (e *Evaluator) evaluateRule(ctx context.Context, r steward.AlertRule, now time.Time, inhibitors map[string]string) error {
	open, err := e.cfg.Store.ListAlerts(ctx, r.TenantID, steward.AlertFilter{RuleID: r.ID, Open: true, Limit: maxOpenPerRule})
	if err != nil {
		return fmt.Errorf("list open alerts: %w", err)
	}
	var verdicts map[key]verdict
	if r.Enabled {
		sigs, err := e.cfg.Store.AlertSignals(ctx, r.TenantID, signalQuery(r, now))
		if err != nil {
			return fmt.Errorf("signals: %w", err)
		}
		verdicts = make(map[key]verdict, len(sigs))
		if r.Share != nil {
			verdicts[key{}] = judgeShare(r.Share, sigs, now)
		}
		for _, s := range sigs {
			if r.Share != nil {
				break
			}
			v := judge(r, s, now)
			switch {
			case s.State == steward.StateMaintenance && r.Absence != nil:
				// Expected to be away: no absence alert at all.
				v = verdict{clear: true, value: v.value, summary: maintenanceReason}
			case s.State == steward.StateMaintenance:
				v.suppressed = maintenanceReason
			case r.Absence != nil && r.Absence.Signal == "offline" && s.Site != "":
				v.inhibitedBy = inhibitors[s.Site]
			}
			verdicts[key{device: s.DeviceID}] = v
		}
	}
	return e.apply(ctx, r, open, verdicts, now)
}

// apply moves rule r's alerts by verdicts in one transaction, then
// notifies the changes.
func (e *Evaluator) apply(ctx context.Context, r steward.AlertRule, open []steward.Alert, verdicts map[key]verdict, now time.Time) error {
	byKey := make(map[key]steward.Alert, len(open))
	for _, a := range open {
		byKey[key{a.DeviceID, a.Subject}] = a
	}
	var changed []steward.Alert // started firing or resolved in this pass
	err := e.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		changed = changed[:0] // InTx may retry
		for k, v := range verdicts {
			a, ok := byKey[k]
			if err := e.step(ctx, tx, r, k, a, ok, v, now, &changed); err != nil {
				return err
			}
		}
		// Open alerts of devices the rule no longer looks at (out of scope,
		// deleted, or the rule disabled) end now.
		for k, a := range byKey {
			if _, ok := verdicts[k]; ok {
				continue
			}
			why := "the rule is disabled"
			if r.Enabled {
				why = "the device left the rule's scope"
			}
			if err := e.step(ctx, tx, r, k, a, true, verdict{clear: true, value: a.Value, summary: why, labels: a.Labels}, now, &changed); err != nil {
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

// step moves one alert: open one when the condition starts to hold,
// fire it after For, resolve it when the resolve condition holds, drop it
// (delete) when it clears while still pending.
//
// An alert that fires while inhibited or suppressed is not notified, and
// keeps the reason; should the reason end while it still fires, the
// reason is cleared and the alert notified then. Its resolution is
// notified only if its firing was. An alert notified once is never marked
// later: whoever was told it fires must be told it resolved.
func (e *Evaluator) step(ctx context.Context, tx steward.Store, r steward.AlertRule, k key, a steward.Alert, exists bool, v verdict, now time.Time, changed *[]steward.Alert) error {
	if !exists {
		if !v.active {
			return nil
		}
		a = steward.Alert{ID: newID("al-"), TenantID: r.TenantID, RuleID: r.ID, DeviceID: k.device, Subject: k.subject,
			State: steward.AlertPending, StartedAt: now}
	}
	labels := r.Labels
	if v.labels != nil {
		labels = v.labels
	}
	a.Severity, a.Labels, a.Value, a.Summary, a.LastEvaluatedAt = r.Severity, labels, v.value, v.summary, now
	held := a.InhibitedBy != "" || a.Suppressed != "" // a firing alert not yet notified
	dev := k.device + k.subject
	switch {
	case a.State == steward.AlertPending && !v.active:
		e.cfg.Logger.Debug("alert dropped before firing", "tenant", r.TenantID, "rule", r.ID, "device", dev)
		return tx.DeleteAlert(ctx, r.TenantID, a.ID)
	case a.State == steward.AlertPending && now.Sub(a.StartedAt) >= r.For.D():
		a.State, a.FiredAt = steward.AlertFiring, &now
		a.InhibitedBy, a.Suppressed = v.inhibitedBy, v.suppressed
		e.cfg.Logger.Info("alert firing", "tenant", r.TenantID, "rule", r.Name, "device", dev, "summary", v.summary,
			"inhibited_by", a.InhibitedBy, "suppressed", a.Suppressed)
		if a.InhibitedBy == "" && a.Suppressed == "" {
			defer func() { *changed = append(*changed, a) }()
		}
	case a.State == steward.AlertPending:
		a.InhibitedBy, a.Suppressed = v.inhibitedBy, v.suppressed
	case a.State == steward.AlertFiring && v.clear:
		a.State, a.ResolvedAt = steward.AlertResolved, &now
		e.cfg.Logger.Info("alert resolved", "tenant", r.TenantID, "rule", r.Name, "device", dev, "summary", v.summary)
		if !held {
			defer func() { *changed = append(*changed, a) }()
		}
	case a.State == steward.AlertFiring && held:
		a.InhibitedBy, a.Suppressed = v.inhibitedBy, v.suppressed
		if a.InhibitedBy == "" && a.Suppressed == "" {
			e.cfg.Logger.Info("alert no longer held back", "tenant", r.TenantID, "rule", r.Name, "device", dev)
			defer func() { *changed = append(*changed, a) }()
		}
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
	case r.Share != nil && r.Share.Threshold != nil:
		q.Metric, q.Aggregation = r.Share.Threshold.Metric, r.Share.Threshold.Aggregation
	}
	return q
}

// judgeShare decides a share rule's condition over its scope's signals.
// Devices in maintenance are left out, as are devices without samples in
// the window for a threshold share.
func judgeShare(c *steward.ShareCondition, sigs []steward.AlertSignal, now time.Time) verdict {
	var total, held int
	for _, s := range sigs {
		if s.State == steward.StateMaintenance {
			continue
		}
		if t := c.Threshold; t != nil {
			if s.Samples == 0 {
				continue
			}
			total++
			if t.Compare(s.Value, t.Value) {
				held++
			}
			continue
		}
		total++
		if !s.Online && (s.LastSeen.IsZero() || now.Sub(s.LastSeen) >= c.Window.D()) {
			held++
		}
	}
	share := 0.0
	if total > 0 {
		share = float64(held) / float64(total)
	}
	what := "offline"
	if t := c.Threshold; t != nil {
		what = fmt.Sprintf("with %s %s %s %g", t.Metric, t.Aggregation, t.Operator, t.Value)
	}
	return verdict{
		active: total > 0 && held >= c.MinDevices && share >= c.Share,
		clear:  total == 0 || share < c.Resolve(),
		value:  share,
		summary: fmt.Sprintf("%d of %d devices (%.3g%%) %s (fires at %g%%, resolves below %g%%)",
			held, total, share*100, what, c.Share*100, c.Resolve()*100),
	}
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
