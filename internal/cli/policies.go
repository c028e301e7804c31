package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

func (e *env) policiesCommand() *cobra.Command {
	g := group("policies", "Route, group and escalate alert notifications", "policy")
	create := &cobra.Command{
		Use:   "create FILE",
		Short: "Create a notification policy from a JSON file (- for stdin)",
		Long: `FILE holds one policy: name, order, matchers, channels, group_by,
group_wait, group_interval, repeat_interval, continue, escalate_after,
escalate_channels and actions (see docs/operations.md, "Routing, grouping
and escalation"). Channels may be given by ID or by name.`,
		Example: `  steward policies create battery.json`,
		Args:    exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			b, err := e.readInput(args[0])
			if err != nil {
				return err
			}
			var req client.PolicyRequest
			d := json.NewDecoder(bytes.NewReader(b))
			d.DisallowUnknownFields()
			if err := d.Decode(&req); err != nil {
				return usagef("%s: %v", args[0], err)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			chs, err := c.ListChannels(cmd.Context())
			if err != nil {
				return err
			}
			byName := map[string]string{}
			for _, ch := range chs {
				byName[ch.Name] = ch.ID
			}
			for _, l := range [][]string{req.Channels, req.EscalateChannels} {
				for i, v := range l {
					if id, ok := byName[v]; ok {
						l[i] = id
					}
				}
			}
			p, err := c.CreatePolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return policyTable(w, p) })
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List your tenant's policies in the order they are tried", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ps, err := c.ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, ps, func(w io.Writer, ps []steward.NotificationPolicy) error {
				t := newTable(w, "ORDER", "NAME", "ID", "MATCHERS", "CHANNELS", "GROUP BY", "ACTIONS")
				for _, p := range ps {
					t.row(strconv.Itoa(p.Order), p.Name, p.ID, short(matchersText(p.Matchers), 40), strconv.Itoa(len(p.Channels)),
						strings.Join(p.WithDefaults().GroupBy, ","), strings.Join(p.Actions, ","))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show a notification policy", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			p, err := c.GetPolicy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return policyTable(w, p) })
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a notification policy, its pending groups and actions", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeletePolicy(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted policy %s", args[0])
		}),
	}
	g.AddCommand(create, list, get, del)
	return g
}

func policyTable(w io.Writer, p steward.NotificationPolicy) error {
	d := p.WithDefaults()
	k := newKV(w)
	k.add("ID", p.ID)
	k.add("Name", p.Name)
	k.add("Order", strconv.Itoa(p.Order))
	k.add("Matchers", matchersText(p.Matchers))
	k.add("Channels", strings.Join(p.Channels, ","))
	k.add("Group by", strings.Join(d.GroupBy, ","))
	k.add("Group wait", d.GroupWait.D().String())
	k.add("Group interval", d.GroupInterval.D().String())
	k.add("Repeat interval", d.RepeatInterval.D().String())
	k.add("Continue", strconv.FormatBool(p.Continue))
	if p.EscalateAfter > 0 {
		k.add("Escalate after", p.EscalateAfter.D().String())
		k.add("Escalate to", strings.Join(p.EscalateChannels, ","))
	}
	if len(p.Actions) > 0 {
		k.add("Actions", strings.Join(p.Actions, ","))
	}
	return k.flush()
}
