package cli

import (
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// tenantTransferFlags are the flags of "devices transfer" that move a
// device to another tenant instead of another owner.
type tenantTransferFlags struct {
	toTenant, policy, approval string
	retention                  int
}

func (f *tenantTransferFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.toTenant, "to-tenant", "", "transfer to another `TENANT`: prints a one-time code for its administrator")
	fl.StringVar(&f.policy, "data-policy", "delete", "with --to-tenant: what happens to this tenant's copy of its data once accepted: delete, anonymise or keep")
	fl.IntVar(&f.retention, "retention-days", 0, "with --to-tenant and keep: days the data is kept")
	fl.StringVar(&f.approval, "approval", "", "with --to-tenant: the approved request's `ID`")
}

// transferToTenant runs "devices transfer ID --to-tenant T".
func (e *env) transferToTenant(cmd *cobra.Command, id, reason string, f tenantTransferFlags) error {
	c, err := e.client(decommissionWait)
	if err != nil {
		return err
	}
	res, err := c.TransferToTenant(cmd.Context(), id, steward.TenantTransferRequest{ToTenant: f.toTenant, Reason: reason,
		Policy: steward.DataPolicy(f.policy), RetentionDays: f.retention, ApprovalID: f.approval})
	if err != nil {
		return err
	}
	if res.Approval != nil {
		if err := e.emit(res, func(w io.Writer) error { return approvalTable(w, *res.Approval) }); err != nil {
			return err
		}
		_, err := fmt.Fprintf(e.stderr, "The transfer needs approval: once approved, run again with --approval %s\n", res.Approval.ID)
		return err
	}
	if err := e.emit(res, func(w io.Writer) error {
		if err := transferTable(w, *res.Transfer); err != nil {
			return err
		}
		_, err := fmt.Fprintf(w, "\nTransfer code (shown once): %s\n", res.Code)
		return err
	}); err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stderr, "Give the code to tenant %s's administrator, who runs: steward devices accept-transfer --code CODE (before %s)\n",
		res.Transfer.TargetTenantID, when(res.Transfer.ExpiresAt))
	return err
}

func transferTable(w io.Writer, tr steward.DeviceTransfer) error {
	k := newKV(w)
	k.add("ID", tr.ID)
	k.add("State", tr.State)
	k.add("From", tr.TenantID+" / "+tr.DeviceID)
	to := tr.TargetTenantID
	if tr.TargetDeviceID != "" {
		to += " / " + tr.TargetDeviceID
	}
	k.add("To", to)
	k.add("Reason", tr.Reason)
	policy := string(tr.Policy)
	if tr.RetentionDays > 0 {
		policy += " (" + strconv.Itoa(tr.RetentionDays) + " days)"
	}
	k.add("Data policy", policy)
	k.add("Factory certificate", tr.FactoryID)
	k.add("Inventory", fmt.Sprintf("model %s, serial %s, hardware %s", tr.Model, tr.Serial, tr.Hardware))
	k.add("Requested by", tr.RequestedBy)
	k.add("Created", when(tr.CreatedAt))
	k.add("Expires", when(tr.ExpiresAt))
	if tr.FinishedAt != nil {
		k.add("Finished", when(*tr.FinishedAt)+" by "+tr.FinishedBy)
	}
	if tr.DecommissionID != "" {
		k.add("Tombstone", tr.DecommissionID)
	}
	return k.flush()
}

func (e *env) acceptTransferCommand() *cobra.Command {
	var code string
	cmd := &cobra.Command{
		Use:   "accept-transfer --code CODE",
		Short: "Accept a device transferred from another tenant, with the code its administrator gave",
		Long: `Creates the device in this tenant, registered and awaiting provisioning,
with the inventory the transfer carries (model, serial, hardware) and an
individual enrollment pinned to its factory certificate. The device then
enrolls over EST with that certificate and a new key, and gets a
certificate from this tenant's CA. See docs/runbooks/decommissioning.md.`,
		Example: `  steward devices accept-transfer --code stx-…`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if code == "" {
				return usagef("--code is required")
			}
			c, err := e.client(decommissionWait)
			if err != nil {
				return err
			}
			acc, err := c.AcceptTransfer(cmd.Context(), code)
			if err != nil {
				return err
			}
			return e.emit(acc, func(w io.Writer) error { return deviceTable(w, acc.Device) })
		}),
	}
	cmd.Flags().StringVar(&code, "code", "", "the transfer code (required)")
	return cmd
}

func (e *env) transfersCommand() *cobra.Command {
	var device string
	var incoming bool
	cmd := &cobra.Command{
		Use:   "transfers [ID] [--device D] [--incoming]",
		Short: "List transfers to other tenants (or with --incoming those accepted here), or show one",
		Args:  cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 && (device != "" || incoming) {
				return usagef("--device and --incoming go with the list, not with an ID")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				tr, err := c.GetTransfer(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return e.emit(tr, func(w io.Writer) error { return transferTable(w, tr) })
			}
			trs, err := c.Transfers(cmd.Context(), device, incoming)
			if err != nil {
				return err
			}
			return emitList(e, trs, func(w io.Writer, trs []steward.DeviceTransfer) error {
				t := newTable(w, "ID", "DEVICE", "FROM", "TO", "STATE", "CREATED", "EXPIRES", "REASON")
				for _, tr := range trs {
					t.row(tr.ID, tr.DeviceID, tr.TenantID, tr.TargetTenantID, tr.State, when(tr.CreatedAt), when(tr.ExpiresAt), tr.Reason)
				}
				return t.flush()
			})
		}),
	}
	cmd.Flags().StringVar(&device, "device", "", "only the transfers of this device")
	cmd.Flags().BoolVar(&incoming, "incoming", false, "the transfers this tenant accepted")
	return cmd
}

func (e *env) cancelTransferCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "cancel-transfer ID",
		Short: "Cancel a pending transfer to another tenant; the device enrolls here again",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			tr, err := c.CancelTransfer(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(tr, func(w io.Writer) error { return transferTable(w, tr) })
		}),
	}
}
