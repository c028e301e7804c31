// Package cli implements the management subcommands of the steward binary
// (enrollment groups, devices, security events, CAs, tokens, tenants) on top
// of the public Go client. The binary's main dispatches serve, demo and sim
// itself and hands everything else to Run.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/steward-iot/steward/client"
)

// DefaultURL is the management plane of a local `steward serve`.
const DefaultURL = "http://127.0.0.1:8080"

// Exit statuses of Run.
const (
	ExitOK    = 0
	ExitError = 1 // the request failed or the server refused it
	ExitUsage = 2 // the command line is wrong; nothing was sent
)

// requestTimeout bounds one API call, so that a hung server does not hang
// the CLI; commands to devices add their own wait to it.
const requestTimeout = 60 * time.Second

// usageError is a wrong command line: exit status 2, with a pointer to the
// help.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// runError is a failure after the command line was accepted: exit status 1.
type runError struct{ err error }

func (e runError) Error() string { return e.err.Error() }
func (e runError) Unwrap() error { return e.err }

// env is one run's surroundings and global options.
type env struct {
	ctx       context.Context
	stdin     io.Reader
	stdout    io.Writer
	stderr    io.Writer
	getenv    func(string) string
	output    string // table or json
	tokenFile string
	url       string
}

// Run runs one command line (without the program name) and returns the
// process exit status: 0 on success, 1 when the request failed, 2 for a
// wrong command line. Errors go to stderr, results to stdout.
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	e := &env{ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	root := e.rootCommand()
	if args == nil {
		args = []string{} // cobra reads os.Args when given nil
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var re runError
	if errors.As(err, &re) {
		fmt.Fprintf(stderr, "steward: %v\n", describe(re.err))
		return ExitError
	}
	fmt.Fprintf(stderr, "steward: %v\n", err)
	if cmd == nil {
		cmd = root
	}
	fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	return ExitUsage
}

// describe says what went wrong: with the request ID of a server failure,
// and with the server's address when it could not be reached.
func describe(err error) string {
	var ce *client.Error
	if errors.As(err, &ce) && ce.Status >= 500 && ce.RequestID != "" {
		return fmt.Sprintf("%v [request ID %s]", err, ce.RequestID)
	}
	var ue *url.Error
	if errors.As(err, &ue) && !ue.Timeout() {
		if u, perr := url.Parse(ue.URL); perr == nil {
			return fmt.Sprintf("cannot reach the server at %s://%s (STEWARD_URL or --url): %v", u.Scheme, u.Host, ue.Err)
		}
	}
	return err.Error()
}

func (e *env) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "steward",
		Short: "Remote management for IoT fleets",
		Long: `steward manages a Steward server's fleet through its REST API.

The server is STEWARD_URL (default ` + DefaultURL + `); the API token is
STEWARD_TOKEN or the contents of --token-file. "steward serve", "steward demo"
and "steward sim" run a server, a demonstration and a fleet simulator.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		Args:              noArgs,
		RunE:              groupRunE,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVarP(&e.output, "output", "o", "table", "output format: table or json")
	pf.StringVar(&e.tokenFile, "token-file", "", "read the API token from `FILE` (instead of STEWARD_TOKEN)")
	pf.StringVar(&e.url, "url", "", "server URL (default $STEWARD_URL, else "+DefaultURL+")")
	root.PersistentPreRunE = func(*cobra.Command, []string) error {
		if e.output != "table" && e.output != "json" {
			return usagef("output format must be table or json, not %q", e.output)
		}
		return nil
	}
	root.AddCommand(e.groupsCommand(), e.devicesCommand(), e.securityEventsCommand(), e.caCommand(), e.tokensCommand(), e.tenantsCommand(), e.fleetCommand())
	root.AddCommand(e.telemetrySchemasCommand())
	root.AddCommand(e.artifactsCommand())
	root.AddCommand(e.channelsCommand(), e.deliveriesCommand(), e.silencesCommand(), e.policiesCommand())
	root.AddCommand(e.alertRulesCommand(), e.alertsCommand())
	root.AddCommand(e.approvalsCommand(), e.approvalPoliciesCommand())
	root.AddCommand(e.deploymentsCommand())
	root.AddCommand(e.operatorCommands()...)
	root.AddCommand(e.configCommand())
	root.AddCommand(e.complianceCommand())
	root.AddCommand(e.auditCommand())
	root.AddCommand(e.quarantinePolicyCommand())
	e.addCredentialCommands(root) // under ca, devices, enrollment-groups; and certificates
	e.addPrivacyCommands(root)    // export, erase and consent under devices
	return root
}

// groupRunE answers a command group called without (or with an unknown)
// subcommand.
func groupRunE(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
	}
	if !cmd.HasParent() {
		return usagef("missing command")
	}
	return usagef("%q needs a subcommand", cmd.CommandPath())
}

// group makes a command that only holds subcommands.
func group(use, short string, aliases ...string) *cobra.Command {
	return &cobra.Command{Use: use, Short: short, Aliases: aliases, RunE: groupRunE}
}

// noArgs and exactArgs check positional arguments, as usage errors.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 && cmd.HasSubCommands() {
		return nil // groupRunE names the unknown subcommand
	}
	if len(args) > 0 {
		return usagef("%q takes no arguments, got %q", cmd.CommandPath(), args)
	}
	return nil
}

func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < len(names) {
			return usagef("%q needs %s", cmd.CommandPath(), strings.Join(names[len(args):], " and "))
		}
		if len(args) > len(names) {
			return usagef("%q takes %d argument(s), got %d: %q", cmd.CommandPath(), len(names), len(args), args)
		}
		return nil
	}
}

// run wraps a command's work so that its failures exit 1, while usage
// errors it finds before sending anything exit 2.
func run(fn func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := fn(cmd, args)
		var ue usageError
		if err == nil || errors.As(err, &ue) {
			return err
		}
		return runError{err}
	}
}

// client returns an API client for the configured server and token; extra
// is added to the request timeout (for waiting on devices).
func (e *env) client(extra time.Duration) (*client.Client, error) {
	base := e.url
	if base == "" {
		base = e.getenv("STEWARD_URL")
	}
	if base == "" {
		base = DefaultURL
	}
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, usagef("server URL %q must start with http:// or https://", base)
	}
	token := ""
	if e.tokenFile != "" {
		b, err := os.ReadFile(e.tokenFile)
		if err != nil {
			return nil, usagef("read token file: %v", err)
		}
		token = strings.TrimSpace(string(b))
		if token == "" {
			return nil, usagef("token file %s is empty", e.tokenFile)
		}
	} else {
		token = strings.TrimSpace(e.getenv("STEWARD_TOKEN"))
	}
	if token == "" {
		return nil, usagef("no API token: set STEWARD_TOKEN or pass --token-file FILE")
	}
	return client.New(base, token, &http.Client{Timeout: requestTimeout + extra}), nil
}

// emit writes v as JSON, or as a table through table when the output is
// table.
// emitList prints a list as JSON (an empty list as [], never null) or as
// the table the caller draws.
func emitList[T any](e *env, items []T, table func(w io.Writer, items []T) error) error {
	if items == nil {
		items = []T{}
	}
	return e.emit(items, func(w io.Writer) error { return table(w, items) })
}

func (e *env) emit(v any, table func(w io.Writer) error) error {
	if e.output == "json" {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(v)
	}
	return table(e.stdout)
}

// readInput reads a file named on the command line; "-" is stdin.
func (e *env) readInput(name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(e.stdin)
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, usagef("read %s: %v", name, err)
	}
	return b, nil
}

// changed reports whether a flag was given.
func changed(fs *pflag.FlagSet, name string) bool {
	f := fs.Lookup(name)
	return f != nil && f.Changed
}

// parseLabels reads k=v,k2=v2; an empty string is no labels.
func parseLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if strings.TrimSpace(s) == "" {
		return labels, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, usagef("label %q: want KEY=VALUE", kv)
		}
		if _, dup := labels[k]; dup {
			return nil, usagef("label %q given twice", k)
		}
		labels[k] = strings.TrimSpace(v)
	}
	return labels, nil
}

// parseList reads a,b,c; blanks are dropped.
func parseList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
