package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward/client"
)

// seriesFlags are the flags of `devices telemetry` that ask for one metric
// over time instead of the latest values.
type seriesFlags struct {
	metric, from, to, resolution string
	limit                        int
}

func (f *seriesFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.metric, "metric", "", "show this metric over time instead of the latest values")
	fl.StringVar(&f.from, "from", "1h", "with --metric: start of the window (RFC 3339, or how long ago such as 2h or 7d)")
	fl.StringVar(&f.to, "to", "", "with --metric: end of the window (RFC 3339, or how long ago; default now)")
	fl.StringVar(&f.resolution, "resolution", "auto", "with --metric: raw, 1m, 1h or auto (raw up to 6h, 1m up to 7d, else 1h)")
	fl.IntVar(&f.limit, "limit", 0, "with --metric: at most this many points (default 1000, at most 5000)")
}

// wanted reports whether the command asks for a series: --metric or any
// of its companion flags is given.
func (f *seriesFlags) wanted(cmd *cobra.Command) bool {
	for _, name := range []string{"metric", "from", "to", "resolution", "limit"} {
		if cmd.Flags().Changed(name) {
			return true
		}
	}
	return false
}

// deviceSeries prints one metric of a device over time.
func (e *env) deviceSeries(cmd *cobra.Command, id string, f seriesFlags) error {
	if f.metric == "" {
		return usagef("--from, --to, --resolution and --limit go with --metric")
	}
	switch f.resolution {
	case "raw", "1m", "1h", "auto":
	default:
		return usagef("--resolution must be raw, 1m, 1h or auto, not %q", f.resolution)
	}
	if f.limit < 0 || f.limit > 5000 {
		return usagef("--limit must be from 1 to 5000 (0: the server's default)")
	}
	from, to, err := timeRangeFlags(f.from, f.to)
	if err != nil {
		return err
	}
	c, err := e.client(0)
	if err != nil {
		return err
	}
	s, err := c.DeviceTelemetry(cmd.Context(), id, client.SeriesQuery{Metric: f.metric, From: from, To: to, Resolution: f.resolution, Limit: f.limit})
	if err != nil {
		return err
	}
	if err := e.emit(s, func(w io.Writer) error {
		if s.Resolution == "raw" {
			t := newTable(w, "AT", "VALUE")
			for _, p := range s.Points {
				t.row(when(p.At), optNum(p.Value))
			}
			return t.flush()
		}
		t := newTable(w, "AT", "MIN", "MAX", "AVG", "COUNT")
		for _, p := range s.Points {
			count := ""
			if p.Count != nil {
				count = strconv.FormatInt(*p.Count, 10)
			}
			t.row(when(p.At), optNum(p.Min), optNum(p.Max), optNum(p.Avg), count)
		}
		return t.flush()
	}); err != nil {
		return err
	}
	if s.Truncated {
		fmt.Fprintf(cmd.ErrOrStderr(), "more points in the window than shown (%d): narrow it, use --limit or a coarser --resolution\n", len(s.Points))
	}
	return nil
}

// optNum formats an optional number.
func optNum(v *float64) string {
	if v == nil {
		return ""
	}
	return strconv.FormatFloat(*v, 'g', -1, 64)
}
