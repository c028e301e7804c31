package cli

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/smallstep/pkcs7"
	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// decommissionWait is how much longer than a plain request a
// decommissioning may take: it waits for the device's wipe acknowledgement.
const decommissionWait = 2 * time.Minute

// addCredentialCommands adds the credential lifecycle to the command tree:
// under ca (status, rotate, migrate, retire-old, crl), devices
// (rotate-credentials, decommission, decommission-verify, decommissions,
// transfer, accept-transfer, transfers, cancel-transfer), enrollment-groups (revoke, revoke-ca), and the certificates
// group (revoke, expiring).
func (e *env) addCredentialCommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		switch c.Name() {
		case "ca":
			c.AddCommand(e.caStatusCommand(), e.caRotateCommand(), e.caMigrateCommand(), e.caRetireCommand(), e.crlCommand())
		case "devices":
			c.AddCommand(e.rotateCredentialsCommand(), e.decommissionCommand(), e.decommissionVerifyCommand(), e.decommissionsCommand(), e.transferCommand(),
				e.acceptTransferCommand(), e.transfersCommand(), e.cancelTransferCommand())
		case "enrollment-groups":
			c.AddCommand(e.groupRevokeCommand(false), e.groupRevokeCommand(true))
		}
	}
	root.AddCommand(e.certificatesCommand())
}

func generationsTable(w io.Writer, gens []steward.CAGenerationInfo) error {
	t := newTable(w, "GENERATION", "STATE", "KEY ID", "SERIAL", "NOT AFTER", "TRUSTED UNTIL", "RETIRED")
	for _, g := range gens {
		until := ""
		if g.OverlapUntil != nil && g.State == steward.CAPrevious {
			until = when(*g.OverlapUntil)
		}
		retired := ""
		if g.RetiredAt != nil {
			retired = when(*g.RetiredAt)
		}
		t.row(strconv.Itoa(g.Generation), g.State, g.KeyID, g.Serial, when(g.NotAfter), until, retired)
	}
	return t.flush()
}

func (e *env) caStatusCommand() *cobra.Command {
	return &cobra.Command{
		Use: "status", Short: "The tenant's device CA generations (active, previous within its overlap, retired)", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			gens, err := c.CAStatus(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, gens, generationsTable)
		}),
	}
}

func (e *env) caRotateCommand() *cobra.Command {
	var overlap time.Duration
	var approval string
	cmd := &cobra.Command{
		Use:   "rotate --overlap 720h [--approval ID]",
		Short: "Rotate the tenant's device CA; the current one stays trusted for the overlap",
		Long: `A new device CA issues every certificate from now on; the current one
stays trusted until the overlap ends, so that no device is lost. Move the
fleet with "steward ca migrate" (devices that are offline move at their
next renewal), then "steward ca retire-old". When an approval policy
applies, the first call opens an approval request; call again with
--approval ID once it is approved. See docs/runbooks/ca-rotation.md.`,
		Example: `  steward ca rotate --overlap 720h`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if overlap <= 0 {
				return usagef("--overlap must be a positive duration, such as 720h")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			res, err := c.RotateCA(cmd.Context(), overlap, approval)
			if err != nil {
				return err
			}
			return e.emit(res, func(w io.Writer) error {
				if res.Approval != nil {
					_, err := fmt.Fprintf(w, "awaiting approval %s (%d approver(s)); run again with --approval %s once approved\n",
						res.Approval.ID, res.Approval.Approvals, res.Approval.ID)
					return err
				}
				return generationsTable(w, res.Generations)
			})
		}),
	}
	cmd.Flags().DurationVar(&overlap, "overlap", 0, "how long the current CA stays trusted (e.g. 720h)")
	cmd.Flags().StringVar(&approval, "approval", "", "the approved request's `ID`")
	return cmd
}

func (e *env) caMigrateCommand() *cobra.Command {
	return &cobra.Command{
		Use: "migrate", Short: "Rotate the credentials of every connected device still on an older device CA", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(10 * time.Minute)
			if err != nil {
				return err
			}
			m, err := c.MigrateCA(cmd.Context())
			if err != nil {
				return err
			}
			return e.emit(m, func(w io.Writer) error {
				t := newTable(w, "DEVICE", "RESULT")
				for _, r := range m.Moved {
					t.row(r.DeviceID, "moved: certificate "+r.Serial)
				}
				for id, why := range m.Pending {
					t.row(id, "pending: "+why)
				}
				return t.flush()
			})
		}),
	}
}

func (e *env) caRetireCommand() *cobra.Command {
	return &cobra.Command{
		Use: "retire-old", Short: "Stop trusting the previous device CA now (its remaining certificates are revoked)", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			gens, err := c.RetireOldCA(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, gens, generationsTable)
		}),
	}
}

func (e *env) crlCommand() *cobra.Command {
	var issuer string
	cmd := &cobra.Command{
		Use: "crl [--issuer KEYID]", Short: "Print the tenant's CRL (PEM); check it with openssl crl -noout -text", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			der, err := c.CRL(cmd.Context(), issuer)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
			return err
		}),
	}
	cmd.Flags().StringVar(&issuer, "issuer", "", "key ID of the issuing device CA (default: the active one; see ca status)")
	return cmd
}

func (e *env) rotateCredentialsCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate-credentials ID",
		Short: "Have a connected device make a new key and certificate; its old certificates are then revoked",
		Args:  exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(time.Minute)
			if err != nil {
				return err
			}
			r, err := c.RotateCredentials(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(r, func(w io.Writer) error {
				k := newKV(w)
				k.add("Device", r.DeviceID)
				k.add("Certificate", r.Serial)
				k.add("Not after", when(r.NotAfter))
				k.add("Issuer key ID", r.IssuerKey)
				k.add("Revoked", joinOr(r.Revoked, "none"))
				return k.flush()
			})
		}),
	}
}

func decommissionTable(w io.Writer, d steward.Decommission) error {
	k := newKV(w)
	k.add("ID", d.ID)
	k.add("Device", d.DeviceID)
	k.add("State", d.State)
	k.add("Reason", d.Reason)
	k.add("Data policy", string(d.Policy))
	if d.RetainUntil != nil {
		k.add("Retained until", when(*d.RetainUntil))
	}
	k.add("Requested by", d.RequestedBy)
	k.add("Approval", d.ApprovalID)
	k.add("Started", when(d.CreatedAt))
	if d.FinishedAt != nil {
		k.add("Finished", when(*d.FinishedAt))
	}
	if err := k.flush(); err != nil {
		return err
	}
	t := newTable(w, "STEP", "OUTCOME", "AT", "DETAIL")
	for _, s := range d.Steps {
		t.row(s.Name, s.Outcome, when(s.At), s.Detail)
	}
	return t.flush()
}

func (e *env) decommissionCommand() *cobra.Command {
	var (
		reason, policy, approval, certOut string
		retention                         int
	)
	cmd := &cobra.Command{
		Use:   "decommission ID --reason R [--data-policy delete|anonymise|keep] [--retention-days N]",
		Short: "Decommission a device: wipe, revoke, remove cloud access, apply the data policy, verify, sign the record",
		Long: `The steps run in order and each is recorded with its outcome: the wipe
command (its acknowledgement is awaited), revocation of every certificate
and closing of the session, removal of cloud access, the data policy,
the inventory record marked decommissioned, and a verification that the
device plane refuses the old certificates. The record is then signed by
the tenant's device CA: --certificate-out FILE saves it; check it with
"steward devices decommission-verify FILE". See
docs/runbooks/decommissioning.md.`,
		Example: `  steward devices decommission d-0123456789abcdefghij --reason "end of life" --data-policy anonymise --certificate-out d-0123.p7s`,
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason is required")
			}
			c, err := e.client(decommissionWait)
			if err != nil {
				return err
			}
			res, err := c.Decommission(cmd.Context(), args[0], steward.DecommissionRequest{Reason: reason, Policy: steward.DataPolicy(policy),
				RetentionDays: retention, ApprovalID: approval})
			if err != nil {
				return err
			}
			if certOut != "" && res.Record.Certificate != "" {
				if err := os.WriteFile(certOut, []byte(res.Record.Certificate), 0o644); err != nil {
					return fmt.Errorf("write %s: %w", certOut, err)
				}
			}
			return e.emit(res, func(w io.Writer) error {
				if res.Approval != nil {
					_, err := fmt.Fprintf(w, "awaiting approval %s; run again with --approval %s once approved\n", res.Approval.ID, res.Approval.ID)
					return err
				}
				return decommissionTable(w, res.Record)
			})
		}),
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why the device is decommissioned (required)")
	f.StringVar(&policy, "data-policy", "delete", "what happens to its data: delete, anonymise or keep")
	f.IntVar(&retention, "retention-days", 0, "with keep: days the data is kept (default: the server's, 90)")
	f.StringVar(&approval, "approval", "", "the approved request's `ID`")
	f.StringVar(&certOut, "certificate-out", "", "save the decommissioning certificate (PEM) to `FILE`")
	return cmd
}

func (e *env) decommissionsCommand() *cobra.Command {
	var device string
	cmd := &cobra.Command{
		Use: "decommissions [ID] [--device D]", Short: "List decommissioning records, or show one with its steps", Args: cobra.MaximumNArgs(1),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if len(args) == 1 {
				d, err := c.GetDecommission(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return e.emit(d, func(w io.Writer) error { return decommissionTable(w, d) })
			}
			recs, err := c.Decommissions(cmd.Context(), device)
			if err != nil {
				return err
			}
			return emitList(e, recs, func(w io.Writer, recs []steward.Decommission) error {
				t := newTable(w, "ID", "DEVICE", "STATE", "POLICY", "STARTED", "REASON")
				for _, d := range recs {
					t.row(d.ID, d.DeviceID, d.State, string(d.Policy), when(d.CreatedAt), d.Reason)
				}
				return t.flush()
			})
		}),
	}
	cmd.Flags().StringVar(&device, "device", "", "only the records of this device")
	return cmd
}

// decommissionVerifyCommand checks a decommissioning certificate offline
// against the tenant's device CAs (every generation, so that a record
// signed before a CA rotation still verifies), or a CA file.
func (e *env) decommissionVerifyCommand() *cobra.Command {
	var caFile string
	cmd := &cobra.Command{
		Use:   "decommission-verify FILE [--ca CA.pem]",
		Short: "Verify a decommissioning certificate and print the record it signs",
		Long: `Checks the CMS signature of FILE (PEM or DER) against the tenant's device
CAs, fetched from the server, or against the certificates in --ca without
contacting it. The same check with openssl alone:

  openssl cms -verify -binary -inform PEM -in FILE -CAfile device-ca.pem -purpose any`,
		Args: exactArgs("FILE"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			data, err := e.readInput(args[0])
			if err != nil {
				return err
			}
			if b, _ := pem.Decode(data); b != nil {
				data = b.Bytes
			}
			p7, err := pkcs7.Parse(data)
			if err != nil {
				return runError{fmt.Errorf("%s is not a CMS SignedData: %w", args[0], err)}
			}
			roots := x509.NewCertPool()
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return usagef("read --ca: %v", err)
				}
				if !roots.AppendCertsFromPEM(b) {
					return usagef("--ca %s holds no PEM certificate", caFile)
				}
			} else {
				c, err := e.client(0)
				if err != nil {
					return err
				}
				gens, err := c.CAStatus(cmd.Context())
				if err != nil {
					return err
				}
				for _, g := range gens {
					roots.AppendCertsFromPEM([]byte(g.PEM))
				}
			}
			if err := p7.VerifyWithChain(roots); err != nil {
				return runError{fmt.Errorf("the signature does NOT verify: %w", err)}
			}
			var content struct {
				Type   string               `json:"type"`
				Record steward.Decommission `json:"record"`
			}
			if err := json.Unmarshal(p7.Content, &content); err != nil {
				return runError{fmt.Errorf("the signed content is not a decommissioning record: %w", err)}
			}
			signer := p7.GetOnlySigner()
			return e.emit(content, func(w io.Writer) error {
				if signer != nil {
					fmt.Fprintf(w, "signature OK, by %s (serial %s)\n", signer.Subject.String(), signer.SerialNumber.Text(16))
				}
				return decommissionTable(w, content.Record)
			})
		}),
	}
	cmd.Flags().StringVar(&caFile, "ca", "", "verify against the CA certificates in `FILE` (PEM) instead of asking the server")
	return cmd
}

func (e *env) transferCommand() *cobra.Command {
	var owner, reason string
	var tt tenantTransferFlags
	cmd := &cobra.Command{
		Use:   "transfer ID (--owner O | --to-tenant T) --reason R",
		Short: "Hand a device to another owner or tenant: credentials revoked, configuration reset, provisioned again by its factory identity",
		Long: `With --owner the device stays in this tenant under a new owner. With
--to-tenant it leaves for another tenant, in two steps since no operator
holds rights in both: this prints a one-time code (valid 7 days) for the
other tenant's administrator, who runs "steward devices accept-transfer
--code CODE"; until then "steward devices cancel-transfer" stops it. Once
accepted, --data-policy applies to this tenant's copy of the device's data
and its record stays as a decommissioned tombstone.`,
		Example: `  steward devices transfer d-0123456789abcdefghij --to-tenant acme --reason "sold to Acme"`,
		Args:    exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			switch {
			case reason == "":
				return usagef("--reason is required")
			case (owner == "") == (tt.toTenant == ""):
				return usagef("give one of --owner and --to-tenant")
			case tt.toTenant != "":
				return e.transferToTenant(cmd, args[0], reason, tt)
			}
			for _, name := range []string{"data-policy", "retention-days", "approval"} {
				if cmd.Flags().Changed(name) {
					return usagef("--%s goes with --to-tenant", name)
				}
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.Transfer(cmd.Context(), args[0], steward.TransferRequest{Owner: owner, Reason: reason})
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deviceTable(w, d) })
		}),
	}
	cmd.Flags().StringVar(&owner, "owner", "", "the new owner")
	cmd.Flags().StringVar(&reason, "reason", "", "why")
	tt.add(cmd)
	return cmd
}

func (e *env) groupRevokeCommand(ca bool) *cobra.Command {
	var reason string
	var devices bool
	use, short := "revoke ID --reason R", "Revoke every device enrolled through the group (sessions closed at once)"
	if ca {
		use, short = "revoke-ca ID --reason R [--devices]", "Refuse further enrollment with the group's manufacturer CA; --devices revokes its devices too"
	}
	cmd := &cobra.Command{
		Use: use, Short: short, Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if reason == "" {
				return usagef("--reason is required")
			}
			c, err := e.client(time.Minute)
			if err != nil {
				return err
			}
			var res steward.GroupRevocation
			if ca {
				res, err = c.RevokeManufacturerCA(cmd.Context(), args[0], reason, devices)
			} else {
				res, err = c.RevokeGroup(cmd.Context(), args[0], reason)
			}
			if err != nil {
				return err
			}
			return e.emit(res, func(w io.Writer) error {
				k := newKV(w)
				k.add("Group", res.GroupID)
				k.add("Manufacturer CA revoked", yesNo(res.CARevoked))
				k.add("Devices revoked", joinOr(res.Devices, "none"))
				return k.flush()
			})
		}),
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	if ca {
		cmd.Flags().BoolVar(&devices, "devices", false, "revoke the devices enrolled through the group too")
	}
	return cmd
}

func (e *env) certificatesCommand() *cobra.Command {
	g := group("certificates", "Revoke device certificates; report those that expire soon", "certs")
	var reason string
	revoke := &cobra.Command{
		Use:   "revoke SERIAL [--reason key_compromise]",
		Short: "Revoke one certificate (hex serial); the session using it is closed at once",
		Args:  exactArgs("SERIAL"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			cert, err := c.RevokeCertificate(cmd.Context(), args[0], steward.RevocationReason(reason))
			if err != nil {
				return err
			}
			return e.emit(cert, func(w io.Writer) error {
				k := newKV(w)
				k.add("Serial", cert.Serial)
				k.add("Device", cert.DeviceID)
				if cert.RevokedAt != nil {
					k.add("Revoked", when(*cert.RevokedAt))
				}
				return k.flush()
			})
		}),
	}
	revoke.Flags().StringVar(&reason, "reason", "unspecified", "unspecified, key_compromise, ca_compromise, affiliation_changed, superseded or cessation_of_operation")
	var days, limit int
	expiring := &cobra.Command{
		Use: "expiring [--days 30]", Short: "Unrevoked certificates that expire within the window, soonest first", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			certs, err := c.ExpiringCertificates(cmd.Context(), days, limit)
			if err != nil {
				return err
			}
			return emitList(e, certs, func(w io.Writer, certs []steward.Certificate) error {
				t := newTable(w, "DEVICE", "SERIAL", "NOT AFTER", "DAYS LEFT")
				for _, c := range certs {
					t.row(c.DeviceID, c.Serial, when(c.NotAfter), strconv.Itoa(int(time.Until(c.NotAfter).Hours()/24)))
				}
				return t.flush()
			})
		}),
	}
	expiring.Flags().IntVar(&days, "days", 30, "the window, in days")
	expiring.Flags().IntVar(&limit, "limit", 0, "at most this many (default 1000)")
	g.AddCommand(revoke, expiring)
	return g
}
