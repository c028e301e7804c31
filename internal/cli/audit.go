package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/client"
)

func (e *env) auditCommand() *cobra.Command {
	g := group("audit", "Search, export, prove and verify the tamper-evident audit log")
	var system bool
	g.PersistentFlags().BoolVar(&system, "system", false, "the system log (failed authentications and other tenant-less actions) instead of your tenant's; needs tenants:admin")

	var (
		q        client.AuditQuery
		from, to string
	)
	list := &cobra.Command{
		Use:   "list",
		Short: "Search the audit log (newest first)",
		Long: `Every state-changing API request, failed authentication and system action
leaves a record: who (actor), what (action), on what (target), when, from
where, and how it ended (success, failure, denied). --action may end in * to
match a prefix. Pages continue with --cursor, the cursor the previous page
printed.`,
		Example: `  steward audit list --target device:d-3xq… --limit 20
  steward audit list --actor token:t-… --outcome denied --from 2026-11-01T00:00:00Z
  steward audit list --action 'POST /api/v1/devices/*' --asc`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var err error
			if q.From, err = auditParseTime("from", from); err != nil {
				return err
			}
			if q.To, err = auditParseTime("to", to); err != nil {
				return err
			}
			if q.Outcome != "" && q.Outcome != steward.AuditSuccess && q.Outcome != steward.AuditFailure && q.Outcome != steward.AuditDenied {
				return usagef("--outcome must be success, failure or denied")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			q.System = system
			recs, next, err := c.SearchAudit(e.ctx, q)
			if err != nil {
				return err
			}
			if err := emitList(e, recs, auditTable); err != nil {
				return err
			}
			if next != "" && e.output != "json" {
				fmt.Fprintf(e.stderr, "more: --cursor %s\n", next)
			}
			return nil
		}),
	}
	f := list.Flags()
	f.StringVar(&q.Actor, "actor", "", "only this actor (token:ID, user:ID, system:…)")
	f.StringVar(&q.Action, "action", "", "only this action; a trailing * matches a prefix")
	f.StringVar(&q.Target, "target", "", "only this target (device:ID, …)")
	f.StringVar(&q.Outcome, "outcome", "", "only this outcome: success, failure or denied")
	f.StringVar(&from, "from", "", "only records at or after this RFC 3339 time")
	f.StringVar(&to, "to", "", "only records before this RFC 3339 time")
	f.BoolVar(&q.Asc, "asc", false, "oldest first")
	f.StringVar(&q.Cursor, "cursor", "", "continue from the cursor a previous page printed")
	f.IntVar(&q.Limit, "limit", 0, "records per page, 1 to 1000 (default 100)")

	var out string
	export := &cobra.Command{
		Use:   "export [--out FILE]",
		Short: "Export the whole log as JSON lines, for verification offline",
		Long: `The export holds every record exactly as the log's Merkle tree hashes it,
each followed by the checkpoint signed when it was appended. Check it on
any machine with: steward audit verify --file FILE --key KEY.`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(10 * time.Minute)
			if err != nil {
				return err
			}
			w := e.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if err != nil {
					return usagef("--out: %v", err)
				}
				if err := c.ExportAudit(e.ctx, system, f); err != nil {
					f.Close()
					os.Remove(out)
					return err
				}
				return f.Close()
			}
			return c.ExportAudit(e.ctx, system, w)
		}),
	}
	export.Flags().StringVar(&out, "out", "", "write to this new file instead of stdout")

	var file, key, archive string
	verify := &cobra.Command{
		Use:   "verify [--file EXPORT --key KEY [--archive ARCHIVE]]",
		Short: "Verify the log: on the server, or an export offline",
		Long: `Without --file the server recomputes its log's Merkle tree from the stored
records and checks it against every signed checkpoint. With --file an export
is checked here, with no server, against the verifier key you kept
(steward audit key prints it). A changed, removed or reordered record is
named with its index; the command then exits 1. With --archive too, the
records a pruning archived (steward serve --audit-archive) are checked
against the leaf hashes the export keeps for them: take the export after
the pruning.`,
		Example: `  steward audit verify
  steward audit verify --file audit.jsonl --key 'steward-audit+1a2b3c4d+AX…'`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			var rep audit.Report
			switch {
			case file != "":
				if key == "" {
					return usagef("--file needs --key: the verifier key you kept (steward audit key), not one taken from the file")
				}
				if system {
					return usagef("--system reads the server; an export names its own log")
				}
				f, err := os.Open(file)
				if err != nil {
					return usagef("--file: %v", err)
				}
				defer f.Close()
				if archive == "" {
					rep, err = audit.VerifyExport(f, key)
				} else {
					a, aerr := os.Open(archive)
					if aerr != nil {
						return usagef("--archive: %v", aerr)
					}
					defer a.Close()
					rep, err = audit.VerifyArchive(a, f, key)
				}
				if err != nil {
					return err
				}
			case key != "" || archive != "":
				return usagef("--key and --archive go with --file; the server verifies its own log with its own key")
			default:
				c, err := e.client(10 * time.Minute)
				if err != nil {
					return err
				}
				if rep, err = c.VerifyAudit(e.ctx, system); err != nil {
					return err
				}
			}
			if err := e.emit(rep, func(w io.Writer) error { return reportTable(w, rep) }); err != nil {
				return err
			}
			if !rep.OK {
				return fmt.Errorf("the audit log was tampered with: %s", rep.Problems[0])
			}
			return nil
		}),
	}
	verify.Flags().StringVar(&file, "file", "", "an export to verify offline")
	verify.Flags().StringVar(&key, "key", "", "the verifier key to check the export with")
	verify.Flags().StringVar(&archive, "archive", "", "with --file: an archive of pruned records to check against the export")

	checkpoint := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the latest signed checkpoint (keep it, to catch a rewritten log later)",
		Long: `A checkpoint is the log's size and Merkle tree hash, signed by the server.
Keep one outside the server (a file elsewhere, a ticket, a notary): later,
steward audit prove consistency --checkpoint FILE proves that the log still
holds everything it held then, which a server that rewrote and re-signed its
whole log cannot fake. In table output the signed note is printed last, as
it is; -o json gives all fields.`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			cp, err := c.AuditCheckpoint(e.ctx, system)
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.emit(cp, nil)
			}
			_, err = io.WriteString(e.stdout, cp.Note)
			return err
		}),
	}

	keyCmd := &cobra.Command{
		Use:   "key",
		Short: "Print the verifier key of the log's checkpoints",
		Args:  noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			k, err := c.AuditKey(e.ctx)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, k)
			return err
		}),
	}

	g.AddCommand(list, export, verify, checkpoint, keyCmd, e.auditProveCommand(&system), e.auditRetentionCommand())
	return g
}

// auditRetentionCommand shows, or sets, how long the audit log keeps its
// records' bodies.
func (e *env) auditRetentionCommand() *cobra.Command {
	var (
		tenant, approval string
		days             int
	)
	cmd := &cobra.Command{
		Use:   "retention [--tenant ID --set-days N [--approval ID]]",
		Short: "Show your tenant's audit log retention, or set a tenant's (tenants:admin)",
		Long: `Records older than the retention period lose their bodies to the retention
job; their leaf hashes are kept, so the log and its proofs still verify and
steward audit verify reports them as pruned. The default keeps every record
for good. A period is at least 365 days; --set-days 0 goes back to keeping
records for good. Setting it needs tenants:admin and is itself recorded in
the tenant's audit log. When an approval policy covers the action
audit.retention (attributes tenant, period_days, shorter), the first call
prints the approval request; once others approve it, repeat the command
with --approval ID.`,
		Example: `  steward audit retention
  steward audit retention --tenant acme --set-days 2555`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			set := cmd.Flags().Changed("set-days")
			if set != (tenant != "") || approval != "" && !set {
				return usagef("--tenant and --set-days go together, and --approval goes with them")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			var (
				pol     audit.RetentionPolicy
				pending *steward.ApprovalRequest
			)
			if set {
				pol, pending, err = c.SetAuditRetention(e.ctx, tenant, days, approval)
			} else {
				pol, err = c.AuditRetention(e.ctx)
			}
			if err != nil {
				return err
			}
			if pending != nil {
				return e.emit(pending, func(w io.Writer) error {
					_, err := fmt.Fprintf(w, "approval required: request %s waits for %d approval(s); once approved, run again with --approval %s\n",
						pending.ID, pending.Approvals, pending.ID)
					return err
				})
			}
			return e.emit(pol, func(w io.Writer) error {
				k := newKV(w)
				k.add("log", pol.Log)
				period := "for good"
				if pol.Period != nil {
					period = fmt.Sprintf("%d days", int(time.Duration(*pol.Period)/(24*time.Hour)))
				}
				k.add("period", period)
				k.add("minimum", fmt.Sprintf("%d days", int(time.Duration(pol.Minimum)/(24*time.Hour))))
				pruned := "none"
				if pol.PrunedUpTo > 0 {
					pruned = fmt.Sprintf("records 0 to %d (bodies removed, leaf hashes kept)", pol.PrunedUpTo-1)
				}
				k.add("pruned", pruned)
				return k.flush()
			})
		}),
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "the tenant whose period to set")
	cmd.Flags().IntVar(&days, "set-days", 0, "the period in days: 0 (for good) or at least 365")
	cmd.Flags().StringVar(&approval, "approval", "", "the approved request, when an approval policy covers the change")
	return cmd
}

func (e *env) auditProveCommand(system *bool) *cobra.Command {
	g := group("prove", "Fetch and check inclusion and consistency proofs")
	var key string
	g.PersistentFlags().StringVar(&key, "key", "", "the verifier key you kept (default: the server's, which proves less)")
	verifierOf := func(c *client.Client) (note.Verifier, error) {
		k := key
		if k == "" {
			var err error
			if k, err = c.AuditKey(e.ctx); err != nil {
				return nil, err
			}
			fmt.Fprintln(e.stderr, "checking with the server's own key: pass --key with a key you kept to rely on it")
		}
		v, err := note.NewVerifier(k)
		if err != nil {
			return nil, usagef("--key: %v", err)
		}
		return v, nil
	}

	var size int64
	inclusion := &cobra.Command{
		Use:   "inclusion INDEX [--size N]",
		Short: "Prove that a record is in the log",
		Args:  exactArgs("INDEX"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			index, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || index < 0 {
				return usagef("INDEX must be a whole number, not %q", args[0])
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			v, err := verifierOf(c)
			if err != nil {
				return err
			}
			p, err := c.AuditInclusionProof(e.ctx, *system, index, size)
			if err != nil {
				return err
			}
			if err := audit.CheckInclusion(p, v); err != nil {
				return fmt.Errorf("the proof does not check: %w", err)
			}
			return e.emit(p, func(w io.Writer) error {
				k := newKV(w)
				k.add("proved", fmt.Sprintf("record %d is in the signed log of size %d", p.Index, p.Size))
				k.add("action", p.Record.Action)
				k.add("actor", p.Record.Actor)
				k.add("target", p.Record.Target)
				k.add("outcome", p.Record.Outcome)
				k.add("at", when(p.Record.At))
				k.add("leaf hash", p.LeafHash.String())
				k.add("proof hashes", strconv.Itoa(len(p.Proof)))
				return k.flush()
			})
		}),
	}
	inclusion.Flags().Int64Var(&size, "size", 0, "a signed size of the log (default: the latest)")

	var kept string
	consistency := &cobra.Command{
		Use:   "consistency --checkpoint FILE",
		Short: "Prove that the log still holds everything a kept checkpoint covered",
		Long: `FILE is a checkpoint printed earlier by steward audit checkpoint. The server
proves that its log today extends the log of that checkpoint; a log that was
rewritten since, even one signed again with the server's key, fails.`,
		Args: noArgs,
		RunE: run(func(cmd *cobra.Command, args []string) error {
			if kept == "" {
				return usagef("--checkpoint FILE is required: a checkpoint you kept (steward audit checkpoint)")
			}
			b, err := e.readInput(kept)
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			v, err := verifierOf(c)
			if err != nil {
				return err
			}
			old, err := audit.OpenCheckpoint(string(b), v)
			if err != nil {
				return usagef("--checkpoint %s: %v", kept, err)
			}
			p, err := c.AuditConsistencyProof(e.ctx, *system, old.Size, 0)
			if err != nil {
				return err
			}
			if err := audit.CheckConsistency(p, v, string(b)); err != nil {
				return fmt.Errorf("the log was rewritten since the checkpoint of size %d: %w", old.Size, err)
			}
			return e.emit(p, func(w io.Writer) error {
				_, err := fmt.Fprintf(w, "proved: the signed log of size %d extends the checkpoint of size %d (signed %s)\n", p.New, p.Old, when(old.At))
				return err
			})
		}),
	}
	consistency.Flags().StringVar(&kept, "checkpoint", "", "a checkpoint you kept (\"-\" for stdin)")

	g.AddCommand(inclusion, consistency)
	return g
}

// auditParseTime reads an optional RFC 3339 flag.
func auditParseTime(flag, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, usagef("--%s must be an RFC 3339 time such as 2026-11-27T10:00:00Z, not %q", flag, s)
	}
	return t, nil
}

func auditTable(w io.Writer, recs []steward.AuditRecord) error {
	t := newTable(w, "INDEX", "AT", "ACTOR", "ACTION", "TARGET", "OUTCOME", "REMOTE")
	for _, r := range recs {
		t.row(strconv.FormatInt(r.Index, 10), when(r.At), r.Actor, r.Action, r.Target, r.Outcome, r.Remote)
	}
	return t.flush()
}

func reportTable(w io.Writer, rep audit.Report) error {
	k := newKV(w)
	k.add("log", rep.Origin)
	k.add("records", strconv.FormatInt(rep.Records, 10))
	k.add("checkpoints matched", strconv.FormatInt(rep.Checkpoints, 10))
	k.add("latest checkpoint", strconv.FormatInt(rep.LatestCheckpoint, 10))
	k.add("root", rep.Root)
	if rep.Archived > 0 {
		k.add("archived records matched", strconv.FormatInt(rep.Archived, 10))
	}
	for _, r := range rep.Pruned {
		k.add("pruned, hash kept", fmt.Sprintf("records %d to %d (removed by retention; their leaf hashes match every checkpoint)", r.First, r.Last))
	}
	if rep.OK {
		k.add("verified", "yes: every record matches every signed checkpoint")
		return k.flush()
	}
	k.add("verified", "NO")
	if rep.FirstBad != nil {
		k.add("first bad index", strconv.FormatInt(*rep.FirstBad, 10))
	}
	if err := k.flush(); err != nil {
		return err
	}
	for _, p := range rep.Problems {
		if _, err := fmt.Fprintf(w, "  - %s\n", p); err != nil {
			return err
		}
	}
	if rep.More > 0 {
		_, err := fmt.Fprintf(w, "  … and %d more\n", rep.More)
		return err
	}
	return nil
}
