package health

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/steward-iot/steward"
)

// Input is what an evaluation looks at.
type Input struct {
	Device steward.Device
	// Latest is the latest value of each metric of the device.
	Latest []steward.Sample
	// Events are the device's recent events; those before the event
	// window or below error severity are ignored.
	Events []steward.DeviceEvent
	// Presence is the device's connection quality over the reconnect
	// window.
	Presence steward.PresenceSummary
	Now      time.Time
}

// maxEventText bounds how much of an event's message a reason quotes.
const maxEventText = 120

// Evaluate grades a device by the rules: the level is the worst of the
// reasons found, and the reasons are sorted worst first (in rule order
// within a level). It reads nothing but its arguments.
//
// A decommissioned device and a registered one (not enrolled yet) get a
// note and nothing else: nothing is expected of them. A device in
// maintenance is ok but noted, and the connection rules (offline, stale
// telemetry, reconnects) are not applied to it; its metrics and events
// still are.
func Evaluate(in Input, r Rules) steward.DeviceHealth {
	d := in.Device
	now := in.Now.UTC()
	h := steward.DeviceHealth{DeviceID: d.ID, Level: steward.HealthOK, Reasons: []steward.HealthReason{}, EvaluatedAt: now}
	add := func(l steward.HealthLevel, code, format string, args ...any) {
		h.Reasons = append(h.Reasons, steward.HealthReason{Level: l, Code: code, Message: fmt.Sprintf(format, args...)})
		if l.Rank() > h.Level.Rank() {
			h.Level = l
		}
	}

	switch d.State {
	case steward.StateDecommissioned:
		add(steward.HealthOK, CodeDecommissioned, "decommissioned since %s: not monitored", stamp(d.StateChangedAt))
		return h
	case steward.StateRegistered:
		add(steward.HealthOK, CodeNotEnrolled, "registered, not enrolled yet: not monitored")
		return h
	case steward.StateQuarantined:
		if d.StateReason != "" {
			add(steward.HealthCritical, CodeQuarantined, "quarantined since %s: %s", stamp(d.StateChangedAt), d.StateReason)
		} else {
			add(steward.HealthCritical, CodeQuarantined, "quarantined since %s", stamp(d.StateChangedAt))
		}
	case steward.StateMaintenance:
		if d.StateReason != "" {
			add(steward.HealthOK, CodeMaintenance, "in maintenance since %s: %s", stamp(d.StateChangedAt), d.StateReason)
		} else {
			add(steward.HealthOK, CodeMaintenance, "in maintenance since %s", stamp(d.StateChangedAt))
		}
	}
	connection := d.State != steward.StateMaintenance

	if connection && !d.Presence.Online && r.OfflineAfter > 0 {
		since, never := d.Presence.LastSeen, d.Presence.LastSeen.IsZero()
		if never {
			since = d.CreatedAt
		}
		switch {
		case never && now.Sub(since) > r.OfflineAfter:
			add(steward.HealthCritical, CodeOffline, "never connected since it was created at %s (more than %s)", stamp(since), span(r.OfflineAfter))
		case never:
			add(steward.HealthOK, CodeOffline, "not connected yet (created at %s)", stamp(since))
		case now.Sub(since) > r.OfflineAfter:
			add(steward.HealthCritical, CodeOffline, "offline since %s (more than %s)", stamp(since), span(r.OfflineAfter))
		default:
			add(steward.HealthOK, CodeOffline, "offline since %s", stamp(since))
		}
	}

	latest := map[string]steward.Sample{}
	var newest time.Time
	for _, s := range in.Latest {
		latest[s.Metric] = s
		if s.At.After(newest) {
			newest = s.At
		}
	}
	switch {
	case len(in.Latest) == 0:
		add(steward.HealthOK, CodeNoTelemetry, "no telemetry reported")
	case connection && d.Presence.Online && r.StaleAfter > 0 && now.Sub(newest) > r.StaleAfter:
		add(steward.HealthDegraded, CodeStaleTelemetry, "online, but no telemetry since %s (more than %s)", stamp(newest), span(r.StaleAfter))
	}

	if connection && r.ReconnectsPerHour > 0 && in.Presence.ReconnectsPerHour >= r.ReconnectsPerHour {
		add(steward.HealthDegraded, CodeReconnects, "%s reconnects per hour over the last %s (%d in all; degraded at %s)",
			num(in.Presence.ReconnectsPerHour), span(r.ReconnectWindow), in.Presence.Reconnects, num(r.ReconnectsPerHour))
	}

	for _, m := range r.Metrics {
		s, ok := latest[m.Metric]
		if !ok || math.IsNaN(s.Value) {
			continue
		}
		for _, lim := range m.Limits {
			if m.Low && s.Value <= lim.Value || !m.Low && s.Value >= lim.Value {
				op := "≥"
				if m.Low {
					op = "≤"
				}
				add(lim.Level, m.Code, "%s %s at %s (%s at %s %s)", m.Metric, m.format(s.Value), stamp(s.At), lim.Level, op, m.format(lim.Value))
				break
			}
		}
	}

	var critical, errs int
	var worst *steward.DeviceEvent // the newest critical event
	from := now.Add(-r.EventWindow)
	for i, e := range in.Events {
		if e.At.Before(from) {
			continue
		}
		switch e.Severity {
		case steward.SeverityCritical:
			critical++
			if worst == nil || e.At.After(worst.At) {
				worst = &in.Events[i]
			}
		case steward.SeverityError:
			errs++
		}
	}
	if r.CriticalEvents > 0 && critical >= r.CriticalEvents {
		msg := worst.Type
		if worst.Message != "" {
			msg += ": " + clip(worst.Message, maxEventText)
		}
		add(steward.HealthCritical, CodeCriticalEvents, "%d critical event(s) in the last %s, the latest at %s: %s", critical, span(r.EventWindow), stamp(worst.At), msg)
	}
	if r.ErrorEvents > 0 && errs >= r.ErrorEvents {
		add(steward.HealthDegraded, CodeErrorEvents, "%d error events in the last %s (degraded at %d)", errs, span(r.EventWindow), r.ErrorEvents)
	}

	slices.SortStableFunc(h.Reasons, func(a, b steward.HealthReason) int {
		return cmp.Compare(b.Level.Rank(), a.Level.Rank())
	})
	return h
}

// format shows a metric value in the rule's unit.
func (m MetricRule) format(v float64) string {
	switch m.Unit {
	case "%":
		return num(v*100) + "%"
	case "":
		return num(v)
	}
	return num(v) + " " + m.Unit
}

// num shows a number with at most one decimal.
func num(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// stamp shows a time in UTC to the second.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// span shows a duration the short way: 15m, 1h, 24h.
func span(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return d.String()
}

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
