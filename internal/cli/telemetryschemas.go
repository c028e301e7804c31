package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

func (e *env) telemetrySchemasCommand() *cobra.Command {
	g := group("telemetry-schemas", "Manage which metrics each device model may send", "telemetry-schema")
	var allow []string
	var none bool
	set := &cobra.Command{
		Use:   "set MODEL (--allow NAME,PREFIX.*,… | --none)",
		Short: "Create or replace the telemetry schema of a model",
		Long: `Devices of MODEL may then send only the metrics the schema allows: exact
names (cpu) and prefixes ending in ".*" (biz.*). Samples of other metrics
are dropped on arrival and counted. --none allows nothing; to allow
everything again, delete the schema. The standard metric names are in
docs/metrics.md.`,
		Example: `  steward telemetry-schemas set gw-100 --allow cpu,memory,temperature,biz.*
  steward telemetry-schemas set "Sensor Unit 2" --none`,
		Args: exactArgs("MODEL"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			model := args[0]
			if !steward.ValidModel(model) {
				return usagef("model %q: use 1 to %d characters, no '/', control characters or surrounding spaces", model, steward.MaxModelLen)
			}
			if none == cmd.Flags().Changed("allow") {
				return usagef("give either --allow with the metrics or --none")
			}
			if none {
				allow = []string{}
			}
			seen := map[string]bool{}
			for _, p := range allow {
				if !steward.ValidMetricPattern(p) {
					return usagef("--allow %q: want a metric name (letters, digits, '_', '-', '.') or a prefix ending in \".*\"", p)
				}
				if seen[p] {
					return usagef("--allow lists %q twice", p)
				}
				seen[p] = true
				if _, std := steward.LookupMetric(p); !std && !strings.HasSuffix(p, ".*") {
					fmt.Fprintf(e.stderr, "note: %s is not a standard metric name (see docs/metrics.md)\n", p)
				}
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			sc, err := c.PutTelemetrySchema(cmd.Context(), model, allow)
			if err != nil {
				return err
			}
			return e.emit(sc, func(w io.Writer) error { return schemaTable(w, sc) })
		}),
	}
	set.Flags().StringSliceVar(&allow, "allow", nil, "metric names and prefixes (`LIST`, comma-separated) the model may send")
	set.Flags().BoolVar(&none, "none", false, "allow no metric at all")
	get := &cobra.Command{
		Use: "get MODEL", Short: "Show the telemetry schema of a model", Args: exactArgs("MODEL"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			sc, err := c.GetTelemetrySchema(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(sc, func(w io.Writer) error { return schemaTable(w, sc) })
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List the telemetry schemas of your tenant", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			scs, err := c.ListTelemetrySchemas(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, scs, func(w io.Writer, scs []steward.TelemetrySchema) error {
				t := newTable(w, "MODEL", "ALLOW", "UPDATED")
				for _, sc := range scs {
					t.row(sc.Model, allowText(sc.Allow), when(sc.UpdatedAt))
				}
				return t.flush()
			})
		}),
	}
	del := &cobra.Command{
		Use: "delete MODEL", Short: "Delete the telemetry schema of a model: it may send any metric again", Args: exactArgs("MODEL"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteTelemetrySchema(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted the telemetry schema of %s", args[0])
		}),
	}
	g.AddCommand(set, get, list, del)
	return g
}

func schemaTable(w io.Writer, sc steward.TelemetrySchema) error {
	k := newKV(w)
	k.add("Model", sc.Model)
	k.add("Allow", allowText(sc.Allow))
	k.add("Updated", when(sc.UpdatedAt))
	return k.flush()
}

// allowText shows an allow-list; an empty one allows nothing.
func allowText(allow []string) string {
	return joinOr(allow, "(nothing)")
}
