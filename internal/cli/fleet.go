package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// fleetFlags are the flags common to the fleet analytics commands.
type fleetFlags struct {
	groupBy, metric, event, query, from, to string
}

func (ff *fleetFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&ff.groupBy, "group-by", "", "group devices by firmware, model, site, state or labels.<key> (required)")
	f.StringVar(&ff.metric, "metric", "", "a metric: each device's mean over the window, summarised per group")
	f.StringVar(&ff.event, "event", "", "an event type: events per device-day per group")
	f.StringVar(&ff.query, "query", "", "only devices matching this fleet query (see docs/query.md)")
	f.StringVar(&ff.from, "from", "", "start of the window (RFC 3339, or how long ago such as 24h or 7d); default 24 hours before --to")
	f.StringVar(&ff.to, "to", "", "end of the window (RFC 3339, or how long ago); default now")
}

// read checks the flags and makes the query.
func (ff *fleetFlags) read() (steward.FleetStatsQuery, error) {
	if ff.groupBy == "" {
		return steward.FleetStatsQuery{}, usagef("--group-by is required: firmware, model, site, state or labels.<key>")
	}
	if !steward.ValidFleetGroupBy(ff.groupBy) {
		return steward.FleetStatsQuery{}, usagef("--group-by must be firmware, model, site, state or labels.<key>, not %q", ff.groupBy)
	}
	if ff.event != "" && !steward.ValidEventType(ff.event) {
		return steward.FleetStatsQuery{}, usagef("--event %q: use 1 to %d letters, digits, '_', '-', '.'", ff.event, steward.MaxEventTypeLen)
	}
	f, t, err := timeRangeFlags(ff.from, ff.to)
	if err != nil {
		return steward.FleetStatsQuery{}, err
	}
	return steward.FleetStatsQuery{GroupBy: ff.groupBy, Metric: ff.metric, Event: ff.event, Query: ff.query, From: f, To: t}, nil
}

// num writes a statistic for a table.
func num(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

// groupName shows a group value in a table: "-" for devices without one.
func groupName(v string) string {
	if v == "" {
		return "-"
	}
	return v
}

func (e *env) fleetCommand() *cobra.Command {
	g := group("fleet", "Fleet analytics: statistics per cohort and outlier cohorts")
	var sf fleetFlags
	stats := &cobra.Command{
		Use:   "stats --group-by G [--metric M] [--event E] [--query Q] [--from T] [--to T]",
		Short: "Show per cohort: devices, online share, a metric's mean, p50 and p95, an event's rate",
		Example: `  steward fleet stats --group-by firmware --metric cpu --event reboot --from 24h
  steward fleet stats --group-by labels.site --query 'model = gw-100' --from 7d`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			q, err := sf.read()
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			st, err := c.FleetStats(cmd.Context(), q)
			if err != nil {
				return err
			}
			return e.emit(st, func(w io.Writer) error {
				head := []string{groupByHeader(st.GroupBy), "DEVICES", "ONLINE"}
				if st.Metric != "" {
					head = append(head, "REPORTING", "MEAN", "P50", "P95")
				}
				if st.Event != "" {
					head = append(head, "EVENTS", "PER DEVICE-DAY")
				}
				tb := newTable(w, head...)
				for _, gr := range st.Groups {
					row := []string{groupName(gr.Value), strconv.Itoa(gr.Devices), fmt.Sprintf("%.0f%%", 100*gr.OnlineShare)}
					if m := gr.Metric; m != nil {
						row = append(row, strconv.Itoa(m.Devices), num(m.Mean), num(m.P50), num(m.P95))
					}
					if ev := gr.Event; ev != nil {
						row = append(row, strconv.FormatInt(ev.Events, 10), num(ev.PerDeviceDay))
					}
					tb.row(row...)
				}
				return tb.flush()
			})
		}),
	}
	sf.add(stats)

	var of fleetFlags
	var minDevices int
	outliers := &cobra.Command{
		Use:   "outliers --group-by G (--metric M | --event E) [--query Q] [--from T] [--to T] [--min-devices N]",
		Short: "Show the cohorts whose metric or event rate stands out from the rest of the fleet",
		Example: `  steward fleet outliers --group-by firmware --event reboot --from 7d
  steward fleet outliers --group-by model --metric cpu --min-devices 50`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			q, err := of.read()
			if err != nil {
				return err
			}
			if q.Metric == "" && q.Event == "" {
				return usagef("outliers need --metric or --event")
			}
			if minDevices < 0 || minDevices > 1000000 {
				return usagef("--min-devices must be from 1 to 1000000 (0: the server's default, 20)")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			out, err := c.FleetOutliers(cmd.Context(), q, minDevices)
			if err != nil {
				return err
			}
			return e.emit(out, func(w io.Writer) error {
				if len(out.Outliers) == 0 {
					_, err := fmt.Fprintf(w, "No outliers among %d devices (cohorts of at least %d devices compared).\n", out.Devices, out.Rule.MinDevices)
					return err
				}
				tb := newTable(w, groupByHeader(out.GroupBy), "KIND", "DEVICES", "OBSERVED", "REST", "EVIDENCE")
				for _, o := range out.Outliers {
					tb.row(groupName(o.Value), o.Kind, strconv.Itoa(o.Devices), num(o.Observed), num(o.Rest), o.Evidence)
				}
				return tb.flush()
			})
		}),
	}
	of.add(outliers)
	outliers.Flags().IntVar(&minDevices, "min-devices", 0, "the smallest cohort (and rest of the fleet) compared (default 20)")
	g.AddCommand(stats, outliers)
	return g
}

// groupByHeader names the group column after the grouping.
func groupByHeader(groupBy string) string { return strings.ToUpper(groupBy) }
