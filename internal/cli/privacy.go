package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
)

// addPrivacyCommands adds export, erase and consent under devices.
func (e *env) addPrivacyCommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		if c.Name() == "devices" {
			c.AddCommand(e.deviceExportCommand(), e.deviceEraseCommand(), e.deviceConsentCommand())
		}
	}
}

func (e *env) deviceExportCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "export ID [--file F]",
		Short: "Write everything the server holds about a device as a JSON archive",
		Long: `Write everything the server holds about a device as one JSON document: its
record, consent, certificates, lifecycle, security events, events, presence,
telemetry (latest values, raw samples, minute, hour and day rollups), alerts,
and the rows of any other table that names it. To standard output, or to a
file with --file (created, never overwritten).`,
		Example: `  steward devices export d-0123456789abcdefghij --file device.json`,
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			x, err := c.ExportDevice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			w := e.stdout
			if file != "" {
				f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			if err := enc.Encode(x); err != nil {
				return err
			}
			if file != "" {
				_, err = fmt.Fprintf(e.stdout, "wrote %s: %d samples, %d events, %d certificates\n", file, len(x.Samples), len(x.Events), len(x.Certificates))
			}
			return err
		}),
	}
	cmd.Flags().StringVar(&file, "file", "", "write the archive to this new file")
	return cmd
}

func (e *env) deviceEraseCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "erase ID --yes",
		Short: "Erase a device and everything held about it (keeps a tombstone and the audit record)",
		Long: `Erase a device: revoke its certificates, then delete the device and every
row about it in every table but the audit log's. A tombstone (who, when, the
certificate serials) and the audit record of the erasure are kept. This cannot
be undone: --yes is required.`,
		Example: `  steward devices export d-0123456789abcdefghij --file device.json
  steward devices erase d-0123456789abcdefghij --yes`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if !yes {
				return usagef("erasing a device cannot be undone: add --yes")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.EraseDevice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error {
				k := newKV(w)
				k.add("Device", t.DeviceID)
				k.add("Erased", when(t.ErasedAt))
				k.add("By", t.ErasedBy)
				k.add("Certificates", strings.Join(t.Serials, ", "))
				tables := make([]string, 0, len(t.Erased))
				for name, n := range t.Erased {
					tables = append(tables, fmt.Sprintf("%s %d", name, n))
				}
				slices.Sort(tables)
				k.add("Rows", strings.Join(tables, ", "))
				return k.flush()
			})
		}),
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the erasure")
	return cmd
}

func (e *env) deviceConsentCommand() *cobra.Command {
	var personal, notPersonal bool
	var grant string
	cmd := &cobra.Command{
		Use:   "consent ID [--personal --grant CLASSES | --not-personal]",
		Short: "Show or set whether a device belongs to a person and what they consented to",
		Long: `Without flags, show a device's consent. With --personal, record that the device
belongs to a person who consented to the data classes of --grant (a comma-separated
list of telemetry, events, location; empty: none): telemetry of a personal device
without consent to telemetry is dropped on arrival. --not-personal records that
it belongs to no person (everything is kept).`,
		Example: `  steward devices consent d-0123456789abcdefghij --personal --grant events,location
  steward devices consent d-0123456789abcdefghij`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			set := personal || notPersonal
			switch {
			case personal && notPersonal:
				return usagef("--personal and --not-personal exclude each other")
			case cmd.Flags().Changed("grant") && !personal:
				return usagef("--grant goes with --personal")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			var granted []string
			for _, g := range strings.Split(grant, ",") {
				if g = strings.TrimSpace(g); g != "" {
					granted = append(granted, g)
				}
			}
			con, err := c.DeviceConsent(cmd.Context(), args[0])
			if set {
				con, err = c.SetDeviceConsent(cmd.Context(), args[0], personal, granted)
			}
			if err != nil {
				return err
			}
			return e.emit(con, func(w io.Writer) error {
				k := newKV(w)
				k.add("Device", con.DeviceID)
				k.add("Personal", fmt.Sprint(con.Personal))
				k.add("Granted", strings.Join(con.Granted, ", "))
				return k.flush()
			})
		}),
	}
	cmd.Flags().BoolVar(&personal, "personal", false, "the device belongs to a person")
	cmd.Flags().BoolVar(&notPersonal, "not-personal", false, "the device belongs to no person")
	cmd.Flags().StringVar(&grant, "grant", "", "data classes consented to: telemetry, events, location (comma-separated)")
	return cmd
}
