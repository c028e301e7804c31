package cli

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

func (e *env) approvalsCommand() *cobra.Command {
	g := group("approvals", "List and decide approval requests (the two-person rule)", "approval")
	var (
		state, action string
		limit         int
	)
	list := &cobra.Command{
		Use: "list", Short: "List your tenant's approval requests, newest first", Args: exactArgs(),
		Example: `  steward approvals list --state pending`,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			rs, err := c.ListApprovals(cmd.Context(), steward.ApprovalFilter{State: state, Action: action, Limit: limit})
			if err != nil {
				return err
			}
			return emitList(e, rs, func(w io.Writer, rs []steward.ApprovalRequest) error {
				t := newTable(w, "ID", "ACTION", "TARGET", "STATE", "APPROVALS", "REQUESTER", "EXPIRES")
				for _, r := range rs {
					t.row(r.ID, r.Action, r.Target, r.State, fmt.Sprintf("%d/%d", approvedCount(r), r.Approvals), r.Requester, when(r.ExpiresAt))
				}
				return t.flush()
			})
		}),
	}
	f := list.Flags()
	f.StringVar(&state, "state", "", "only requests in this `STATE` (pending, approved, rejected, expired)")
	f.StringVar(&action, "action", "", "only requests for this `ACTION`")
	f.IntVar(&limit, "limit", 0, "at most `N` requests (default 100)")

	get := &cobra.Command{
		Use: "get ID", Short: "Show an approval request with its decisions", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			r, err := c.GetApproval(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(r, func(w io.Writer) error { return approvalTable(w, r) })
		}),
	}
	decide := func(approve bool) *cobra.Command {
		verb, short := "reject", "Reject an approval request: one rejection rejects it"
		if approve {
			verb, short = "approve", "Approve an approval request as yourself (never your own)"
		}
		var comment string
		cmd := &cobra.Command{
			Use: verb + " ID", Short: short, Args: exactArgs("ID"),
			RunE: run(func(cmd *cobra.Command, args []string) error {
				c, err := e.client(0)
				if err != nil {
					return err
				}
				do := c.Reject
				if approve {
					do = c.Approve
				}
				r, err := do(cmd.Context(), args[0], comment)
				if err != nil {
					return err
				}
				return e.emit(r, func(w io.Writer) error { return approvalTable(w, r) })
			}),
		}
		cmd.Flags().StringVar(&comment, "comment", "", "a `TEXT` kept with the decision")
		return cmd
	}
	g.AddCommand(list, get, decide(true), decide(false))
	return g
}

func approvedCount(r steward.ApprovalRequest) int {
	n := 0
	for _, d := range r.Decisions {
		if d.Approve {
			n++
		}
	}
	return n
}

func approvalTable(w io.Writer, r steward.ApprovalRequest) error {
	k := newKV(w)
	k.add("ID", r.ID)
	k.add("Action", r.Action)
	k.add("Target", r.Target)
	k.add("State", r.State)
	k.add("Approvals", fmt.Sprintf("%d of %d", approvedCount(r), r.Approvals))
	k.add("Requester", r.Requester)
	if r.Reason != "" {
		k.add("Reason", r.Reason)
	}
	if len(r.Attributes) > 0 {
		keys := make([]string, 0, len(r.Attributes))
		for a := range r.Attributes {
			keys = append(keys, a)
		}
		sort.Strings(keys)
		var parts []string
		for _, a := range keys {
			parts = append(parts, a+"="+r.Attributes[a])
		}
		k.add("Attributes", strings.Join(parts, " "))
	}
	if r.PolicyID != "" {
		k.add("Policy", r.PolicyID)
	}
	k.add("Created", when(r.CreatedAt))
	k.add("Expires", when(r.ExpiresAt))
	for _, d := range r.Decisions {
		v := "rejected"
		if d.Approve {
			v = "approved"
		}
		if d.Comment != "" {
			v += ": " + d.Comment
		}
		k.add("Decision", d.Approver+" "+v+" ("+when(d.At)+")")
	}
	return k.flush()
}

func (e *env) approvalPoliciesCommand() *cobra.Command {
	g := group("approval-policies", "Say which actions need approval, when, and by whom", "approval-policy")
	var (
		req   client.ApprovalPolicyRequest
		conds []string
		perm  string
		role  string
		exp   time.Duration
	)
	create := &cobra.Command{
		Use:   "create NAME --action PATTERN --approvals N [--when CONDITION]…",
		Short: "Create an approval policy",
		Long: `A policy applies to an action when PATTERN matches its name (an action,
a prefix such as deployment.*, or *) and every --when condition holds on the
action's attributes: ATTRIBUTE OP VALUE with = or != (text) or >, >=, <, <=
(numbers). The request then needs N distinct approvers, none of them its
requester, before it expires (--expiry, default 24h).`,
		Example: `  steward approval-policies create big-prod-rollouts --action 'deployment.*' --approvals 2 \
      --when 'device_count>100' --when 'label.environment=production' --approver-permission deployments:approve
  steward approval-policies create decommissioning --action device.decommission --approvals 1`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req.Name = args[0]
			req.ApproverPermission, req.ApproverRole, req.Expiry = steward.Permission(perm), steward.Role(role), steward.Duration(exp)
			req.Conditions = nil
			for _, s := range conds {
				c, err := parseApprovalCondition(s)
				if err != nil {
					return err
				}
				req.Conditions = append(req.Conditions, c)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			p, err := c.CreateApprovalPolicy(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return approvalPolicyTable(w, p) })
		}),
	}
	f := create.Flags()
	f.StringVar(&req.Action, "action", "", "the actions it covers: an `ACTION`, a prefix such as deployment.*, or *")
	f.IntVar(&req.Approvals, "approvals", 0, "how many distinct approvers a request needs (`N`, 1 to 10)")
	f.StringArrayVar(&conds, "when", nil, "a `CONDITION` on the action's attributes, e.g. device_count>100 (repeatable; all must hold)")
	f.StringVar(&perm, "approver-permission", "", "a `PERMISSION` approvers need besides approvals:decide")
	f.StringVar(&role, "approver-role", "", "a `ROLE` approvers need (or all of its permissions)")
	f.DurationVar(&exp, "expiry", 0, "how long a request waits for its approvers (`DURATION`, 1m to 720h; default 24h)")

	list := &cobra.Command{
		Use: "list", Short: "List your tenant's approval policies", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ps, err := c.ListApprovalPolicies(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, ps, func(w io.Writer, ps []steward.ApprovalPolicy) error {
				t := newTable(w, "ID", "NAME", "ACTION", "CONDITIONS", "APPROVALS", "APPROVER NEEDS", "EXPIRY")
				for _, p := range ps {
					t.row(p.ID, p.Name, p.Action, short(conditionsText(p.Conditions), 40), strconv.Itoa(p.Approvals), approverNeeds(p), expiryText(p))
				}
				return t.flush()
			})
		}),
	}
	get := &cobra.Command{
		Use: "get ID", Short: "Show an approval policy", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			p, err := c.GetApprovalPolicy(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return approvalPolicyTable(w, p) })
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete an approval policy (open requests keep their requirements)", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteApprovalPolicy(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted approval policy %s", args[0])
		}),
	}
	g.AddCommand(create, list, get, del)
	return g
}

// parseApprovalCondition reads ATTRIBUTE OP VALUE; attribute names hold
// none of the operator characters, so the first of them starts the
// operator.
func parseApprovalCondition(s string) (steward.ApprovalCondition, error) {
	i := strings.IndexAny(s, "!=<>")
	if i <= 0 {
		return steward.ApprovalCondition{}, usagef("--when %q: want ATTRIBUTE OP VALUE, with OP one of = != > >= < <=", s)
	}
	op := s[i : i+1]
	if i+1 < len(s) && s[i+1] == '=' && op != "=" {
		op += "="
	}
	if op == "!" {
		return steward.ApprovalCondition{}, usagef("--when %q: want ATTRIBUTE OP VALUE, with OP one of = != > >= < <=", s)
	}
	return steward.ApprovalCondition{Attribute: strings.TrimSpace(s[:i]), Op: op, Value: strings.TrimSpace(s[i+len(op):])}, nil
}

func conditionsText(cs []steward.ApprovalCondition) string {
	parts := make([]string, 0, len(cs))
	for _, c := range cs {
		parts = append(parts, c.Attribute+c.Op+c.Value)
	}
	if len(parts) == 0 {
		return "always"
	}
	return strings.Join(parts, " and ")
}

func approverNeeds(p steward.ApprovalPolicy) string {
	var parts []string
	if p.ApproverPermission != "" {
		parts = append(parts, string(p.ApproverPermission))
	}
	if p.ApproverRole != "" {
		parts = append(parts, "role "+string(p.ApproverRole))
	}
	if len(parts) == 0 {
		return string(steward.PermApprovalsDecide)
	}
	return strings.Join(parts, ", ")
}

func expiryText(p steward.ApprovalPolicy) string {
	if p.Expiry == 0 {
		return steward.DefaultApprovalExpiry.String()
	}
	return p.Expiry.D().String()
}

func approvalPolicyTable(w io.Writer, p steward.ApprovalPolicy) error {
	k := newKV(w)
	k.add("ID", p.ID)
	k.add("Name", p.Name)
	k.add("Action", p.Action)
	k.add("Conditions", conditionsText(p.Conditions))
	k.add("Approvals", strconv.Itoa(p.Approvals))
	k.add("Approver needs", approverNeeds(p))
	k.add("Expiry", expiryText(p))
	k.add("Created", when(p.CreatedAt))
	return k.flush()
}
