package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

// --- enrollment groups

func (e *env) groupsCommand() *cobra.Command {
	g := group("enrollment-groups", "Manage enrollment groups (manufacturer CAs and their policy)", "groups")

	var caFile, models, labels, serialsFile string
	var firmware []string
	var strict bool
	create := &cobra.Command{
		Use:   "create NAME --ca FILE",
		Short: "Register a manufacturer CA with its policy",
		Example: `  steward enrollment-groups create acme-gw --ca acme-ca.pem --models gw-100,gw-200 \
    --firmware gw-100=1.2.0,1.3.0 --labels site=plant-1 --serials serials.txt --strict`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if caFile == "" {
				return usagef("--ca FILE is required: the manufacturer CA certificate (PEM)")
			}
			ca, err := e.readInput(caFile)
			if err != nil {
				return err
			}
			grp := steward.EnrollmentGroup{Name: args[0], CAPEM: string(ca), Models: parseList(models), Strict: strict}
			if grp.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			if len(grp.Labels) == 0 {
				grp.Labels = nil
			}
			for _, f := range firmware {
				model, versions, ok := strings.Cut(f, "=")
				model = strings.TrimSpace(model)
				vs := parseList(versions)
				if !ok || model == "" || len(vs) == 0 {
					return usagef("--firmware %q: want MODEL=VERSION[,VERSION…]", f)
				}
				if grp.Firmware == nil {
					grp.Firmware = map[string][]string{}
				}
				grp.Firmware[model] = append(grp.Firmware[model], vs...)
			}
			if serialsFile != "" {
				b, err := e.readInput(serialsFile)
				if err != nil {
					return err
				}
				grp.Serials = parseSerials(b)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			out, err := c.CreateEnrollmentGroup(cmd.Context(), grp)
			if err != nil {
				return err
			}
			return e.emit(out, func(w io.Writer) error { return groupTable(w, out) })
		}),
	}
	f := create.Flags()
	f.StringVar(&caFile, "ca", "", "manufacturer CA certificate, PEM `FILE` (- for stdin)")
	f.StringVar(&models, "models", "", "allowed models, comma-separated (default: any)")
	f.StringArrayVar(&firmware, "firmware", nil, "approved firmware versions of a model, `MODEL=V1,V2` (repeatable)")
	f.StringVar(&labels, "labels", "", "labels given to each device, `k=v,...`")
	f.StringVar(&serialsFile, "serials", "", "allow-list of serial numbers, one a line (`FILE`, - for stdin)")
	f.BoolVar(&strict, "strict", false, "refuse enrollment of serials not in the allow-list")

	list := &cobra.Command{
		Use: "list", Short: "List enrollment groups", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			gs, err := c.ListEnrollmentGroups(cmd.Context())
			if err != nil {
				return err
			}
			return e.emit(gs, func(w io.Writer) error {
				t := newTable(w, "ID", "NAME", "MODELS", "STRICT", "SERIALS", "CA FINGERPRINT", "CREATED")
				for _, g := range gs {
					t.row(g.ID, g.Name, joinOr(g.Models, "any"), fmt.Sprint(g.Strict), fmt.Sprint(len(g.Serials)), short(g.CAFingerprint, 16), when(g.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show an enrollment group", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			out, err := c.GetEnrollmentGroup(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(out, func(w io.Writer) error { return groupTable(w, out) })
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete an enrollment group", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteEnrollmentGroup(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted enrollment group %s", args[0])
		}),
	}
	g.AddCommand(create, list, get, del)
	return g
}

// parseSerials reads one serial number a line; blank lines and # comments
// are skipped.
func parseSerials(b []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}

// done reports a change that returns nothing; JSON output stays silent.
func (e *env) done(format string, args ...any) error {
	if e.output == "json" {
		return nil
	}
	_, err := fmt.Fprintf(e.stdout, format+"\n", args...)
	return err
}

// --- devices

func (e *env) devicesCommand() *cobra.Command {
	g := group("devices", "Query and manage devices", "device")

	var query string
	var limit int
	list := &cobra.Command{
		Use:     "list [--query Q]",
		Short:   "List devices, all or those matching a fleet query",
		Example: `  steward devices list --query 'model = "gw-100" and labels.site = "plant-1"'`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 || limit > 1000 {
				return usagef("--limit must be from 0 (all) to 1000")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			var ds []steward.Device
			if limit == 0 {
				ds, err = c.AllDevices(cmd.Context(), query)
			} else {
				ds, _, err = c.ListDevices(cmd.Context(), steward.DeviceQuery{Query: query, Limit: limit})
			}
			if err != nil {
				return err
			}
			return emitList(e, ds, func(w io.Writer, ds []steward.Device) error {
				t := newTable(w, "ID", "STATE", "MODEL", "SERIAL", "FIRMWARE", "SITE", "ONLINE", "LAST SEEN", "LABELS")
				for _, d := range ds {
					t.row(d.ID, string(d.State), d.Model, d.Serial, d.Firmware, d.Location.Site, yesNo(d.Presence.Online), when(d.Presence.LastSeen), labelText(d.Labels))
				}
				return t.flush()
			})
		}),
	}
	list.Flags().StringVarP(&query, "query", "q", "", "fleet query (see docs/query.md); empty lists every device")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many devices (0: all)")

	get := &cobra.Command{
		Use: "get ID", Short: "Show a device with its certificates and history", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.GetDevice(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceDetailTable(w, d) })
		}),
	}

	var owner, site, labels, warranty string
	var lat, lon float64
	set := &cobra.Command{
		Use:     "set ID [--owner O] [--site S] [--lat N --lon N] [--labels k=v,…] [--warranty-end YYYY-MM-DD]",
		Short:   "Set a device's owner, location, labels or warranty end",
		Example: `  steward devices set d-0123456789abcdefghij --site plant-2 --lat 48.85 --lon 2.35 --labels env=prod`,
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			fs := cmd.Flags()
			var p steward.DevicePatch
			if changed(fs, "owner") {
				p.Owner = &owner
			}
			if changed(fs, "labels") {
				l, err := parseLabels(labels)
				if err != nil {
					return err
				}
				p.Labels = l // empty: clear the labels
			}
			if changed(fs, "warranty-end") {
				t, err := time.Parse(time.DateOnly, warranty)
				if err != nil {
					return usagef("--warranty-end %q: want YYYY-MM-DD", warranty)
				}
				p.WarrantyEnd = &t
			}
			if changed(fs, "lat") != changed(fs, "lon") {
				return usagef("--lat and --lon go together")
			}
			locChanged := changed(fs, "site") || changed(fs, "lat")
			if !locChanged && p.Owner == nil && p.Labels == nil && p.WarrantyEnd == nil {
				return usagef("nothing to set: give --owner, --site, --lat/--lon, --labels or --warranty-end")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if locChanged {
				// The API replaces the whole location; keep what was not
				// given on the command line.
				cur, err := c.GetDevice(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				loc := cur.Location
				if changed(fs, "site") {
					loc.Site = site
				}
				if changed(fs, "lat") {
					loc.Latitude, loc.Longitude = &lat, &lon
				}
				p.Location = &loc
			}
			d, err := c.UpdateDevice(cmd.Context(), args[0], p)
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceTable(w, d) })
		}),
	}
	sf := set.Flags()
	sf.StringVar(&owner, "owner", "", "owner")
	sf.StringVar(&site, "site", "", "installation site")
	sf.Float64Var(&lat, "lat", 0, "latitude (with --lon)")
	sf.Float64Var(&lon, "lon", 0, "longitude (with --lat)")
	sf.StringVar(&labels, "labels", "", "replace the labels with `k=v,...` (\"\" clears them)")
	sf.StringVar(&warranty, "warranty-end", "", "end of warranty, `YYYY-MM-DD`")

	quarantine := e.deviceReasonCommand("quarantine ID --reason R", "Isolate a device", "quarantined", (*client.Client).Quarantine)
	release := e.deviceStateCommand("release ID", "Return a quarantined device to active", (*client.Client).Release)
	maintenance := e.deviceReasonCommand("maintenance ID --reason R", "Take an active device into maintenance (alerts recorded, not notified)", "in maintenance", (*client.Client).StartMaintenance)
	maintenanceEnd := e.deviceStateCommand("maintenance-end ID", "Return a device in maintenance to active", (*client.Client).EndMaintenance)
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a device's certificates and close its session", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.Revoke(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceTable(w, d) })
		}),
	}

	var argsJSON string
	var timeout time.Duration
	command := &cobra.Command{
		Use:     "command ID NAME [--args JSON] [--timeout 10s]",
		Short:   "Send a command to a connected device and wait for its answer",
		Example: `  steward devices command d-0123456789abcdefghij ping --timeout 5s`,
		Args:    exactArgs("ID", "NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var cmdArgs map[string]any
			if argsJSON != "" {
				dec := json.NewDecoder(strings.NewReader(argsJSON))
				dec.UseNumber()
				if err := dec.Decode(&cmdArgs); err != nil || cmdArgs == nil || dec.More() {
					return usagef("--args must be a JSON object, such as '{\"delay\": 5}'")
				}
			}
			if timeout <= 0 {
				return usagef("--timeout must be positive")
			}
			c, err := e.client(timeout)
			if err != nil {
				return err
			}
			res, err := c.SendCommand(cmd.Context(), args[0], args[1], cmdArgs, timeout)
			if err != nil {
				return err
			}
			if err := e.emit(res, func(w io.Writer) error { return commandTable(w, res) }); err != nil {
				return err
			}
			if res.Status != steward.CommandOK {
				msg := res.Error
				if msg == "" {
					msg = "no reason given"
				}
				return fmt.Errorf("device answered %s: %s", res.Status, msg)
			}
			return nil
		}),
	}
	command.Flags().StringVar(&argsJSON, "args", "", "command arguments, a JSON object")
	command.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for the answer")

	var series seriesFlags
	telemetry := &cobra.Command{
		Use: "telemetry ID [--metric M [--from T] [--to T] [--resolution R] [--limit N]]", Short: "Show the latest value of each metric of a device, or one metric over time",
		Example: `  steward devices telemetry d-0123456789abcdefghij
  steward devices telemetry d-0123456789abcdefghij --metric cpu --from 2h
  steward devices telemetry d-0123456789abcdefghij --metric temperature --from 30d --resolution 1h`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if series.wanted(cmd) {
				return e.deviceSeries(cmd, args[0], series)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ss, err := c.LatestTelemetry(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return emitList(e, ss, func(w io.Writer, ss []steward.Sample) error {
				t := newTable(w, "METRIC", "VALUE", "AT")
				for _, s := range ss {
					t.row(s.Metric, fmt.Sprint(s.Value), when(s.At))
				}
				return t.flush()
			})
		}),
	}
	series.register(telemetry)
	g.AddCommand(list, get, set, quarantine, release, maintenance, maintenanceEnd, revoke, command, telemetry, e.deviceEventsCommand(), e.devicePresenceCommand(), e.deviceHealthCommand())
	return g
}

// --- security events

func (e *env) securityEventsCommand() *cobra.Command {
	g := group("security-events", "Show security events")
	var device, kind string
	var limit int
	list := &cobra.Command{
		Use: "list [--device ID] [--kind KIND]", Short: "List security events, newest first", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if limit < 0 || limit > 1000 {
				return usagef("--limit must be from 1 to 1000 (0: the server's default)")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			evs, err := c.ListSecurityEvents(cmd.Context(), steward.SecurityEventFilter{DeviceID: device, Kind: steward.SecurityEventKind(kind), Limit: limit})
			if err != nil {
				return err
			}
			return emitList(e, evs, func(w io.Writer, evs []steward.SecurityEvent) error {
				t := newTable(w, "AT", "KIND", "DEVICE", "REMOTE", "DETAIL")
				for _, ev := range evs {
					t.row(when(ev.At), string(ev.Kind), ev.DeviceID, ev.Remote, ev.Detail)
				}
				return t.flush()
			})
		}),
	}
	list.Flags().StringVar(&device, "device", "", "only this device's events")
	list.Flags().StringVar(&kind, "kind", "", "only events of this kind (such as suspected_clone)")
	list.Flags().IntVar(&limit, "limit", 0, "at most this many events")
	g.AddCommand(list)
	return g
}

// --- certificate authorities

func (e *env) caCommand() *cobra.Command {
	g := group("ca", "Print CA certificates (PEM)")
	device := &cobra.Command{
		Use: "device", Short: "The tenant's device CA, which signs device certificates", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			pem, err := c.DeviceCA(cmd.Context())
			if err != nil {
				return err
			}
			return e.emitPEM(pem)
		}),
	}
	server := &cobra.Command{
		Use: "server", Short: "The CA of the server's TLS certificates, which devices trust", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			pem, err := c.ServerCA(cmd.Context())
			if err != nil {
				return err
			}
			return e.emitPEM(pem)
		}),
	}
	g.AddCommand(device, server)
	return g
}

// emitPEM prints a certificate as is, or as {"pem": …} with -o json.
func (e *env) emitPEM(pem []byte) error {
	return e.emit(map[string]string{"pem": string(pem)}, func(w io.Writer) error {
		_, err := w.Write(pem)
		return err
	})
}

// --- tokens

func (e *env) tokensCommand() *cobra.Command {
	g := group("tokens", "Manage API tokens of your tenant", "token")
	var role string
	create := &cobra.Command{
		Use: "create NAME [--role ROLE]", Short: "Create an API token of a built-in role; its secret is shown once", Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if _, builtin := steward.RolePermissions(steward.Role(role)); role != "" && !builtin {
				return usagef("--role must be a built-in role (%s), not %q", builtinRoleNames(), role)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			tok, err := c.CreateToken(cmd.Context(), args[0], steward.Role(role))
			if err != nil {
				return err
			}
			return e.emit(tok, func(w io.Writer) error {
				t := newTable(w, "ID", "NAME", "ROLE", "CREATED", "SECRET")
				t.row(tok.ID, tok.Name, string(tok.Role), when(tok.CreatedAt), tok.Secret)
				if err := t.flush(); err != nil {
					return err
				}
				_, err := fmt.Fprintln(e.stderr, "Keep the secret now: it is not shown again.")
				return err
			})
		}),
	}
	create.Flags().StringVar(&role, "role", "", "a built-in role: admin (default), system, owner, operator, release-manager, approver, viewer or auditor")
	list := &cobra.Command{
		Use: "list", Short: "List API tokens (never their secrets)", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			toks, err := c.ListTokens(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, toks, func(w io.Writer, toks []steward.APIToken) error {
				t := newTable(w, "ID", "NAME", "ROLE", "CREATED")
				for _, tok := range toks {
					t.row(tok.ID, tok.Name, string(tok.Role), when(tok.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Revoke an API token", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted token %s", args[0])
		}),
	}
	g.AddCommand(create, list, del)
	return g
}

// --- tenants

func (e *env) tenantsCommand() *cobra.Command {
	g := group("tenants", "Manage tenants (system tokens only)", "tenant")
	var name string
	create := &cobra.Command{
		Use: "create ID [--name NAME]", Short: "Create a tenant with its device CA and first admin token", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			out, err := c.CreateTenant(cmd.Context(), args[0], name)
			if err != nil {
				return err
			}
			return e.emit(out, func(w io.Writer) error {
				t := newTable(w, "TENANT", "NAME", "CREATED", "ADMIN TOKEN ID", "SECRET")
				t.row(out.Tenant.ID, out.Tenant.Name, when(out.Tenant.CreatedAt), out.Token.ID, out.Token.Secret)
				if err := t.flush(); err != nil {
					return err
				}
				_, err := fmt.Fprintln(e.stderr, "Keep the admin token's secret now: it is not shown again.")
				return err
			})
		}),
	}
	create.Flags().StringVar(&name, "name", "", "display name (default: the ID)")
	list := &cobra.Command{
		Use: "list", Short: "List tenants", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ts, err := c.ListTenants(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, ts, func(w io.Writer, ts []steward.Tenant) error {
				t := newTable(w, "ID", "NAME", "CREATED")
				for _, tn := range ts {
					t.row(tn.ID, tn.Name, when(tn.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	g.AddCommand(create, list)
	g.AddCommand(e.tenantAdminCommands()...)
	return g
}

// deviceReasonCommand is a lifecycle change that needs a reason
// (quarantine, maintenance).
func (e *env) deviceReasonCommand(use, short, what string, call func(*client.Client, context.Context, string, string) (steward.Device, error)) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use: use, Short: short, Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why the device is %s", what)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := call(c, cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceTable(w, d) })
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why the device is "+what)
	return cmd
}

// deviceStateCommand is a lifecycle change back to active (release, end
// of maintenance).
func (e *env) deviceStateCommand(use, short string, call func(*client.Client, context.Context, string) (steward.Device, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := call(c, cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceTable(w, d) })
		}),
	}
}

// builtinRoleNames lists the built-in roles for messages.
func builtinRoleNames() string {
	var names []string
	for _, r := range steward.BuiltinRoles() {
		names = append(names, string(r))
	}
	return strings.Join(names, ", ")
}
