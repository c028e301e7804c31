package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

func (e *env) deviceHealthCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "health ID",
		Short: "Show a device's health (ok, degraded or critical) and the reasons",
		Long: `Show a device's health, evaluated now by the server from its state and
presence, its latest metric values, its error and critical events of the last
hour and its reconnects per hour over the last day. The reasons come worst
first; a reason of level ok is only a note. docs/operations.md lists the rules.`,
		Example: `  steward devices health d-0123456789abcdefghij
  steward devices health d-0123456789abcdefghij -o json`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			h, err := c.DeviceHealth(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(h, func(w io.Writer) error {
				k := newKV(w)
				k.add("Device", h.DeviceID)
				k.add("Level", string(h.Level))
				k.add("Evaluated", when(h.EvaluatedAt))
				if err := k.flush(); err != nil {
					return err
				}
				if len(h.Reasons) == 0 {
					return nil
				}
				if _, err := fmt.Fprintln(w); err != nil {
					return err
				}
				tb := newTable(w, "LEVEL", "CODE", "MESSAGE")
				for _, r := range h.Reasons {
					tb.row(string(r.Level), r.Code, r.Message)
				}
				return tb.flush()
			})
		}),
	}
}
