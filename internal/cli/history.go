package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// parseWhen reads a time flag: RFC 3339, or how long before now, as a Go
// duration (90m, 2h) or in whole days (7d). Empty is the zero time.
func parseWhen(flag, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n > 0 && n <= 100000 {
			return now.AddDate(0, 0, -n), nil
		}
	}
	return time.Time{}, usagef("--%s %q: want an RFC 3339 time (2026-11-27T10:00:00Z) or how long ago (such as 2h or 7d)", flag, s)
}

// timeRangeFlags reads --from and --to.
func timeRangeFlags(from, to string) (time.Time, time.Time, error) {
	now := time.Now()
	f, err := parseWhen("from", from, now)
	if err != nil {
		return f, f, err
	}
	t, err := parseWhen("to", to, now)
	if err != nil {
		return f, t, err
	}
	if !f.IsZero() && !t.IsZero() && !f.Before(t) {
		return f, t, usagef("--from must be before --to")
	}
	return f, t, nil
}

func (e *env) deviceEventsCommand() *cobra.Command {
	var typ, severity, from, to string
	var limit int
	cmd := &cobra.Command{
		Use:   "events ID [--type T] [--severity S] [--from T] [--to T] [--limit N]",
		Short: "Show the events a device reported, newest first",
		Example: `  steward devices events d-0123456789abcdefghij --severity warning --from 24h
  steward devices events d-0123456789abcdefghij --type reboot`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if severity != "" && !steward.Severity(severity).Valid() {
				return usagef("--severity must be one of debug, info, notice, warning, error, critical, not %q", severity)
			}
			if typ != "" && !steward.ValidEventType(typ) {
				return usagef("--type %q: use 1 to %d letters, digits, '_', '-', '.'", typ, steward.MaxEventTypeLen)
			}
			if limit < 0 || limit > 1000 {
				return usagef("--limit must be from 1 to 1000 (0: the server's default)")
			}
			f, t, err := timeRangeFlags(from, to)
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			evs, err := c.ListDeviceEvents(cmd.Context(), args[0], steward.DeviceEventFilter{
				Type: typ, MinSeverity: steward.Severity(severity), From: f, To: t, Limit: limit,
			})
			if err != nil {
				return err
			}
			return emitList(e, evs, func(w io.Writer, evs []steward.DeviceEvent) error {
				tb := newTable(w, "AT", "SEVERITY", "TYPE", "MESSAGE", "FIELDS")
				for _, ev := range evs {
					fields := ""
					if len(ev.Fields) > 0 {
						b, _ := json.Marshal(ev.Fields) // keys sorted: stable output
						fields = string(b)
					}
					tb.row(when(ev.At), string(ev.Severity), ev.Type, ev.Message, fields)
				}
				return tb.flush()
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&typ, "type", "", "only events of this type")
	f.StringVar(&severity, "severity", "", "only events of this severity or worse (debug, info, notice, warning, error, critical)")
	f.StringVar(&from, "from", "", "only events at or after this time (RFC 3339, or how long ago such as 24h or 7d)")
	f.StringVar(&to, "to", "", "only events before this time (RFC 3339, or how long ago)")
	f.IntVar(&limit, "limit", 0, "at most this many events (default 100)")
	return cmd
}

func (e *env) devicePresenceCommand() *cobra.Command {
	var from, to string
	var limit int
	cmd := &cobra.Command{
		Use:     "presence ID [--from T] [--to T] [--limit N]",
		Short:   "Show a device's connects and disconnects and how often it reconnects",
		Example: `  steward devices presence d-0123456789abcdefghij --from 7d`,
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if limit < 0 || limit > 1000 {
				return usagef("--limit must be from 1 to 1000 (0: the server's default)")
			}
			f, t, err := timeRangeFlags(from, to)
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			items, sum, err := c.DevicePresence(cmd.Context(), args[0], f, t, limit)
			if err != nil {
				return err
			}
			if items == nil {
				items = []steward.PresenceEvent{}
			}
			out := struct {
				Items   []steward.PresenceEvent `json:"items"`
				Summary steward.PresenceSummary `json:"summary"`
			}{items, sum}
			return e.emit(out, func(w io.Writer) error {
				k := newKV(w)
				k.add("Online", yesNo(sum.Online))
				k.add("Window", when(sum.From)+" to "+when(sum.To))
				k.add("Connects", fmt.Sprint(sum.Connects))
				k.add("Disconnects", fmt.Sprint(sum.Disconnects))
				k.add("Reconnects", fmt.Sprint(sum.Reconnects))
				k.add("Reconnects/hour", strconv.FormatFloat(sum.ReconnectsPerHour, 'f', 2, 64))
				if err := k.flush(); err != nil {
					return err
				}
				if _, err := fmt.Fprintln(w); err != nil {
					return err
				}
				tb := newTable(w, "AT", "EVENT", "REMOTE")
				for _, p := range items {
					what := "disconnect"
					if p.Online {
						what = "connect"
					}
					tb.row(when(p.At), what, p.RemoteAddr)
				}
				return tb.flush()
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "start of the window (RFC 3339, or how long ago such as 7d); default 24 hours before --to")
	f.StringVar(&to, "to", "", "end of the window (RFC 3339, or how long ago); default now")
	f.IntVar(&limit, "limit", 0, "at most this many connects and disconnects listed (default 100); the summary counts them all")
	return cmd
}
