package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// ruleFile is one rule as written in a file: the API's request body, with
// enabled true unless said otherwise.
type ruleFile struct {
	Name      string                      `json:"name"`
	Kind      steward.AlertRuleKind       `json:"kind"`
	Severity  steward.AlertSeverity       `json:"severity"`
	Labels    map[string]string           `json:"labels,omitempty"`
	Scope     string                      `json:"scope,omitempty"`
	For       steward.Duration            `json:"for,omitempty"`
	Enabled   *bool                       `json:"enabled,omitempty"`
	Threshold *steward.ThresholdCondition `json:"threshold,omitempty"`
	Absence   *steward.AbsenceCondition   `json:"absence,omitempty"`
	Event     *steward.EventCondition     `json:"event,omitempty"`
	Rate      *steward.RateCondition      `json:"rate,omitempty"`
	Share     *steward.ShareCondition     `json:"share,omitempty"`
	Site      *steward.SiteCondition      `json:"site,omitempty"`
}

func (f ruleFile) rule() steward.AlertRule {
	return steward.AlertRule{Name: f.Name, Kind: f.Kind, Severity: f.Severity, Labels: f.Labels, Scope: f.Scope, For: f.For,
		Enabled: f.Enabled == nil || *f.Enabled, Threshold: f.Threshold, Absence: f.Absence, Event: f.Event, Rate: f.Rate,
		Share: f.Share, Site: f.Site}
}

// readRules reads one rule (a JSON object) or several (an array, or an
// object {"rules": [...]}) from a file; unknown keys are errors, so that a
// misspelt key is not silently ignored.
func (e *env) readRules(name string) ([]steward.AlertRule, error) {
	b, err := e.readInput(name)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimSpace(b)
	decode := func(b []byte, v any) error {
		d := json.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(v); err != nil {
			return usagef("%s: %v", name, err)
		}
		return nil
	}
	var files []ruleFile
	switch {
	case bytes.HasPrefix(b, []byte("[")):
		err = decode(b, &files)
	case bytes.Contains(b, []byte(`"rules"`)):
		var wrap struct {
			Rules []ruleFile `json:"rules"`
		}
		err = decode(b, &wrap)
		files = wrap.Rules
	default:
		var one ruleFile
		err = decode(b, &one)
		files = []ruleFile{one}
	}
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, usagef("%s holds no rules", name)
	}
	out := make([]steward.AlertRule, len(files))
	seen := map[string]bool{}
	for i, f := range files {
		if f.Name == "" {
			return nil, usagef("%s: rule %d has no name", name, i+1)
		}
		if seen[f.Name] {
			return nil, usagef("%s: rule %q is there twice", name, f.Name)
		}
		seen[f.Name] = true
		out[i] = f.rule()
	}
	return out, nil
}

func (e *env) alertRulesCommand() *cobra.Command {
	g := group("alert-rules", "Manage alert rules", "alert-rule")
	create := &cobra.Command{
		Use:   "create FILE",
		Short: "Create an alert rule from a JSON file (- for stdin)",
		Long: `FILE holds one rule as a JSON object; docs/operations.md ("Alerts") shows
every kind. To create or update several rules by name, use apply.`,
		Example: `  steward alert-rules create hot.json`,
		Args:    exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			rules, err := e.readRules(args[0])
			if err != nil {
				return err
			}
			if len(rules) != 1 {
				return usagef("%s holds %d rules: create takes one (apply takes several)", args[0], len(rules))
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			r, err := c.CreateAlertRule(cmd.Context(), rules[0])
			if err != nil {
				return err
			}
			return e.emit(r, func(w io.Writer) error { return ruleTable(w, r) })
		}),
	}
	apply := &cobra.Command{
		Use:   "apply FILE",
		Short: "Create or update alert rules by name from a JSON file (- for stdin)",
		Long: `FILE holds a JSON array of rules (or {"rules": [...]}, or one rule). A rule
whose name exists in your tenant is replaced, any other is created; rules
not in the file are left alone.`,
		Example: `  steward alert-rules apply rules.json`,
		Args:    exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			rules, err := e.readRules(args[0])
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			existing, err := c.ListAlertRules(cmd.Context())
			if err != nil {
				return err
			}
			byName := map[string]string{}
			for _, r := range existing {
				byName[r.Name] = r.ID
			}
			type result struct {
				Action string            `json:"action"`
				Rule   steward.AlertRule `json:"rule"`
			}
			var out []result
			for _, r := range rules {
				var stored steward.AlertRule
				action := "created"
				if id, ok := byName[r.Name]; ok {
					action = "updated"
					stored, err = c.UpdateAlertRule(cmd.Context(), id, r)
				} else {
					stored, err = c.CreateAlertRule(cmd.Context(), r)
				}
				if err != nil {
					return fmt.Errorf("rule %q: %w", r.Name, err)
				}
				out = append(out, result{action, stored})
			}
			return e.emit(out, func(w io.Writer) error {
				t := newTable(w, "ACTION", "NAME", "ID")
				for _, r := range out {
					t.row(r.Action, r.Rule.Name, r.Rule.ID)
				}
				return t.flush()
			})
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List the alert rules of your tenant", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			rules, err := c.ListAlertRules(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, rules, func(w io.Writer, rules []steward.AlertRule) error {
				t := newTable(w, "NAME", "KIND", "SEVERITY", "FOR", "ENABLED", "SCOPE")
				for _, r := range rules {
					t.row(r.Name, string(r.Kind), string(r.Severity), r.For.D().String(), yesNo(r.Enabled), orText(r.Scope, "(all)"))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show an alert rule", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			r, err := c.GetAlertRule(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(r, func(w io.Writer) error { return ruleTable(w, r) })
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete an alert rule and its alerts", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteAlertRule(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted alert rule %s", args[0])
		}),
	}
	g.AddCommand(create, apply, list, get, del)
	return g
}

func ruleTable(w io.Writer, r steward.AlertRule) error {
	k := newKV(w)
	k.add("ID", r.ID)
	k.add("Name", r.Name)
	k.add("Kind", string(r.Kind))
	k.add("Severity", string(r.Severity))
	k.add("Scope", orText(r.Scope, "(all devices)"))
	k.add("For", r.For.D().String())
	k.add("Enabled", yesNo(r.Enabled))
	k.add("Labels", labelText(r.Labels))
	cond, _ := json.Marshal(struct {
		T *steward.ThresholdCondition `json:"threshold,omitempty"`
		A *steward.AbsenceCondition   `json:"absence,omitempty"`
		E *steward.EventCondition     `json:"event,omitempty"`
		R *steward.RateCondition      `json:"rate,omitempty"`
		S *steward.ShareCondition     `json:"share,omitempty"`
		C *steward.SiteCondition      `json:"site,omitempty"`
	}{r.Threshold, r.Absence, r.Event, r.Rate, r.Share, r.Site})
	k.add("Condition", string(cond))
	k.add("Updated", when(r.UpdatedAt))
	return k.flush()
}

func (e *env) alertsCommand() *cobra.Command {
	g := group("alerts", "List, acknowledge and assign alerts", "alert")
	var f steward.AlertFilter
	var state, severity string
	list := &cobra.Command{
		Use: "list", Short: "List your tenant's alerts, newest first", Args: exactArgs(),
		Example: `  steward alerts list --state firing --severity critical`,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			f.State, f.Severity = steward.AlertState(state), steward.AlertSeverity(severity)
			if state != "" && !f.State.Valid() {
				return usagef("--state %q: want pending, firing or resolved", state)
			}
			if severity != "" && !f.Severity.Valid() {
				return usagef("--severity %q: want critical, major, minor, warning or info", severity)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			alerts, err := c.ListAlerts(cmd.Context(), f)
			if err != nil {
				return err
			}
			return emitList(e, alerts, func(w io.Writer, alerts []steward.Alert) error {
				t := newTable(w, "ID", "STATE", "SEVERITY", "DEVICE", "STARTED", "ACK", "ASSIGNEE", "INHIBITED", "SUPPRESSED", "SUMMARY")
				for _, a := range alerts {
					t.row(a.ID, string(a.State), string(a.Severity), orText(a.DeviceID, a.Subject), when(a.StartedAt), a.AcknowledgedBy, a.Assignee,
						a.InhibitedBy, a.Suppressed, a.Summary)
				}
				return t.flush()
			})
		}),
	}
	list.Flags().StringVar(&state, "state", "", "only alerts in this `STATE` (pending, firing, resolved)")
	list.Flags().StringVar(&severity, "severity", "", "only alerts of this `SEVERITY`")
	list.Flags().StringVar(&f.DeviceID, "device", "", "only this device's alerts")
	list.Flags().StringVar(&f.RuleID, "rule", "", "only this rule's alerts")
	list.Flags().IntVar(&f.Limit, "limit", 0, "at most this many (1 to 1000)")
	show := func(use, short string, call func(cmd *cobra.Command, args []string) (steward.Alert, error), args ...string) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: exactArgs(args...),
			RunE: run(func(cmd *cobra.Command, args []string) error {
				a, err := call(cmd, args)
				if err != nil {
					return err
				}
				return e.emit(a, func(w io.Writer) error { return alertTable(w, a) })
			}),
		}
	}
	get := show("get ID", "Show an alert", func(cmd *cobra.Command, args []string) (steward.Alert, error) {
		c, err := e.client(0)
		if err != nil {
			return steward.Alert{}, err
		}
		return c.GetAlert(cmd.Context(), args[0])
	}, "ID")
	ack := show("ack ID", "Acknowledge an alert", func(cmd *cobra.Command, args []string) (steward.Alert, error) {
		c, err := e.client(0)
		if err != nil {
			return steward.Alert{}, err
		}
		return c.AcknowledgeAlert(cmd.Context(), args[0])
	}, "ID")
	assign := show("assign ID ASSIGNEE", "Assign an alert (\"\" unassigns)", func(cmd *cobra.Command, args []string) (steward.Alert, error) {
		c, err := e.client(0)
		if err != nil {
			return steward.Alert{}, err
		}
		return c.AssignAlert(cmd.Context(), args[0], args[1])
	}, "ID", "ASSIGNEE")
	g.AddCommand(list, get, ack, assign)
	return g
}

func alertTable(w io.Writer, a steward.Alert) error {
	k := newKV(w)
	k.add("ID", a.ID)
	k.add("Rule", a.RuleID)
	k.add("Device", a.DeviceID)
	if a.Subject != "" {
		k.add("Subject", a.Subject)
	}
	k.add("State", string(a.State))
	k.add("Severity", string(a.Severity))
	k.add("Summary", a.Summary)
	k.add("Value", strconv.FormatFloat(a.Value, 'g', -1, 64))
	k.add("Started", when(a.StartedAt))
	k.add("Fired", whenPtr(a.FiredAt))
	k.add("Resolved", whenPtr(a.ResolvedAt))
	k.add("Acknowledged", orText(a.AcknowledgedBy, "no"))
	k.add("Assignee", a.Assignee)
	if a.InhibitedBy != "" {
		k.add("Inhibited by", a.InhibitedBy)
	}
	if a.Suppressed != "" {
		k.add("Suppressed", a.Suppressed)
	}
	return k.flush()
}

// whenPtr formats an optional time; "" when unset.
func whenPtr(t *time.Time) string {
	if t == nil {
		return ""
	}
	return when(*t)
}

// orText returns s, or none when s is empty.
func orText(s, none string) string {
	if s == "" {
		return none
	}
	return s
}
