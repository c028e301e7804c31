package cli

import (
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// tenantAdminCommands are the tenant subcommands that change a tenant's
// life: get, suspend, resume, delete.
func (e *env) tenantAdminCommands() []*cobra.Command {
	get := &cobra.Command{
		Use: "get ID", Short: "Show a tenant and its status", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.GetTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error { return tenantTable(w, t) })
		}),
	}
	var reason string
	suspend := &cobra.Command{
		Use:   "suspend ID [--reason TEXT]",
		Short: "Suspend a tenant: refuse its tokens and devices, close its sessions, keep its data",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.SuspendTenant(cmd.Context(), args[0], reason)
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error { return tenantTable(w, t) })
		}),
	}
	suspend.Flags().StringVar(&reason, "reason", "", "why, kept with the status (`TEXT`)")
	resume := &cobra.Command{
		Use: "resume ID", Short: "Make a suspended tenant active again", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			t, err := c.ResumeTenant(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(t, func(w io.Writer) error { return tenantTable(w, t) })
		}),
	}
	var approval, delReason string
	del := &cobra.Command{
		Use:   "delete ID [--approval REQUEST-ID] [--reason TEXT]",
		Short: "Delete a tenant and all its data",
		Long: `Closes the sessions of the tenant's devices and deletes every row of the
tenant, its device CA and the tenant itself. The default tenant cannot be
deleted. When an approval policy covers tenant.delete, the first run opens
an approval request and prints it; once others approve it, run again with
--approval REQUEST-ID.`,
		Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			deleted, req, err := c.DeleteTenant(cmd.Context(), args[0], approval, delReason)
			if err != nil {
				return err
			}
			if !deleted {
				if err := e.emit(req, func(w io.Writer) error { return approvalTable(w, *req) }); err != nil {
					return err
				}
				_, err := fmt.Fprintf(e.stderr, "Deleting tenant %s needs approval: once approved, run again with --approval %s\n", args[0], req.ID)
				return err
			}
			return e.done("deleted tenant %s", args[0])
		}),
	}
	del.Flags().StringVar(&approval, "approval", "", "the approved request's `ID`")
	del.Flags().StringVar(&delReason, "reason", "", "why, for the approvers and the audit log (`TEXT`)")
	return []*cobra.Command{get, suspend, resume, del}
}

func tenantTable(w io.Writer, t steward.Tenant) error {
	k := newKV(w)
	k.add("ID", t.ID)
	k.add("Name", t.Name)
	k.add("Status", t.Status)
	if t.StatusReason != "" {
		k.add("Reason", t.StatusReason)
	}
	if t.StatusChangedAt != nil {
		k.add("Status since", when(*t.StatusChangedAt))
	}
	k.add("Created", when(t.CreatedAt))
	return k.flush()
}
