package deploy

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// evaluateGate compares, over [from, to), the devices of d updated so far
// (succeeded, in phases up to p) with those not updated yet (pending, in
// later phases), on each of the gate's checks, from the events, presence
// and samples the store keeps (FleetAggregates: one grouped query per
// check). The gate passes when no check finds the updated devices worse
// by more than it allows.
func (e *Engine) evaluateGate(ctx context.Context, d steward.Deployment, p int, from, to time.Time) (steward.GateEvidence, error) {
	ev := steward.GateEvidence{Phase: p, From: from, To: to, Passed: true}
	updated, err := e.members(ctx, d, steward.UpdateSucceeded, func(ph int) bool { return ph <= p })
	if err != nil {
		return ev, err
	}
	baseline, err := e.members(ctx, d, steward.UpdatePending, func(ph int) bool { return ph > p })
	if err != nil {
		return ev, err
	}
	ev.UpdatedDevices, ev.BaselineDevices = len(updated), len(baseline)
	for _, c := range d.Gate.Checks {
		q := steward.FleetStatsQuery{Query: d.Query, From: from, To: to}
		switch c.Signal {
		case steward.SignalReboots:
			q.Event = "reboot"
		case steward.SignalCrashes:
			q.Event = "crash"
		case steward.SignalMetric:
			q.Metric = c.Metric
		}
		aggs, err := e.cfg.Store.FleetAggregates(ctx, d.TenantID, q)
		if err != nil {
			return ev, fmt.Errorf("health gate %s: %w", c.Signal, err)
		}
		var u, b cohort
		for _, a := range aggs {
			switch {
			case updated[a.DeviceID]:
				u.add(c.Signal, a)
			case baseline[a.DeviceID]:
				b.add(c.Signal, a)
			}
		}
		s := steward.GateSignal{Signal: c.Signal, Metric: c.Metric, Updated: u.value(), Baseline: b.value(), MaxIncrease: c.MaxIncrease}
		s.Increase = s.Updated - s.Baseline
		s.Worse = u.n > 0 && s.Increase > c.MaxIncrease
		if s.Worse {
			ev.Passed = false
		}
		ev.Signals = append(ev.Signals, s)
	}
	return ev, nil
}

// cohort sums one signal over a group of devices.
type cohort struct {
	n     int     // devices counted
	total float64 // events, offline devices, or the sum of means
}

func (c *cohort) add(signal string, a steward.DeviceAggregate) {
	switch signal {
	case steward.SignalReboots, steward.SignalCrashes:
		c.n++
		c.total += float64(a.Events)
	case steward.SignalOffline:
		c.n++
		if !a.Online {
			c.total++
		}
	case steward.SignalMetric:
		if a.Samples > 0 {
			c.n++
			c.total += a.Mean
		}
	}
}

// value is the per-device figure: events per device, the offline share,
// or the mean of the devices' means.
func (c cohort) value() float64 {
	if c.n == 0 {
		return 0
	}
	return c.total / float64(c.n)
}

// members returns the IDs of d's devices in state st in the phases keep
// accepts.
func (e *Engine) members(ctx context.Context, d steward.Deployment, st steward.UpdateState, keep func(int) bool) (map[string]bool, error) {
	out := map[string]bool{}
	after := ""
	for {
		rows, err := e.cfg.Store.ListDeploymentDevices(ctx, d.TenantID, d.ID, steward.DeploymentDeviceFilter{Phase: -1,
			States: []steward.UpdateState{st}, After: after, Limit: 10000})
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			if keep(r.Phase) {
				out[r.DeviceID] = true
			}
			after = r.DeviceID
		}
		if len(rows) < 10000 {
			return out, nil
		}
	}
}

// worse describes the checks that failed, for the state reason.
func worse(ev steward.GateEvidence) string {
	var parts []string
	for _, s := range ev.Signals {
		if !s.Worse {
			continue
		}
		name := s.Signal
		if s.Metric != "" {
			name += " " + s.Metric
		}
		parts = append(parts, fmt.Sprintf("%s %.3g on %d updated devices against %.3g on %d not updated (+%.3g > %.3g)",
			name, s.Updated, ev.UpdatedDevices, s.Baseline, ev.BaselineDevices, s.Increase, s.MaxIncrease))
	}
	return strings.Join(parts, "; ")
}
