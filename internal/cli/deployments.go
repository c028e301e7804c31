package cli

import (
	"bytes"
	"encoding/json"
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

// deploymentFlags are the flags of `deployments create` that build a spec.
type deploymentFlags struct {
	file, kind, target, artifact, sha, tufPath, query, canary, waves, waveBy string
	onFailure, startAt, description                                          string
	length                                                                   int64
	keepOpen, emergency, draft                                               bool
	success, failure, minBattery                                             float64
	minFinished, concurrency, rate, retries                                  int
	soak, timeout, backoff                                                   time.Duration
	windows, gates                                                           []string
}

func (e *env) deploymentsCommand() *cobra.Command {
	g := group("deployments", "Roll out artifacts and configuration versions in phases", "deployment", "deploy")
	var df deploymentFlags
	create := &cobra.Command{
		Use:   "create NAME --artifact ID [flags] | create NAME --target NAME@VERSION [flags] | create NAME --file SPEC.json",
		Short: "Create a deployment",
		Long: `A deployment carries an artifact (or a configuration version, --kind config)
to the devices its --query matches, in phases: a canary (--canary N or P%),
then waves (--waves 25,50,100: cumulative percentages of the target) or one
wave per selector (--wave-by site=berlin,site=paris). A phase advances when
its devices finished, at least --success-threshold of them succeeded, its
--soak passed and the health gates (--gate) found the updated devices no
worse than those not updated yet. Past --failure-threshold (once
--min-finished devices finished), --on-failure pauses, aborts, or aborts and
rolls back. --window CRON;DURATION;ZONE[;SELECTOR] lets devices install only
inside a maintenance window. See docs/deployments.md. --file takes the whole
spec as JSON (the body of POST /api/v1/deployments; "-" is stdin).`,
		Example: `  steward deployments create fw-1.5.0 --artifact a-7f3 --query 'model = "gw-100"' \
      --canary 5 --waves 25,100 --soak 2h --gate reboots:0.2 --failure-threshold 0.05 --min-finished 5 \
      --on-failure rollback --concurrency 200 --rate 500 --window '0 2 * * *;3h;Europe/Berlin'
  steward deployments create cfg-v7 --kind config --target gw-config@7 --query 'labels.ring = beta'
  steward deployments create hotfix --file hotfix.json`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req, err := e.deploymentRequest(cmd, args[0], df)
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.CreateDeployment(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deploymentTable(w, d) })
		}),
	}
	f := create.Flags()
	f.StringVar(&df.file, "file", "", "read the whole request from `FILE` (JSON; - is stdin)")
	f.StringVar(&df.kind, "kind", "artifact", "what to deploy: artifact or config")
	f.StringVar(&df.target, "target", "", "the target, `NAME@VERSION` (with --artifact, taken from the artifact when left out)")
	f.StringVar(&df.artifact, "artifact", "", "the artifact's `ID` (grants the devices its download)")
	f.StringVar(&df.sha, "sha256", "", "the artifact's SHA-256 (`HEX`)")
	f.Int64Var(&df.length, "length", 0, "the artifact's length in `BYTES`")
	f.StringVar(&df.tufPath, "tuf-path", "", "the artifact's TUF target `PATH`")
	f.StringVar(&df.query, "query", "", "the target devices, a fleet `QUERY` (default: all)")
	f.BoolVar(&df.keepOpen, "keep-open", false, "devices that match later join too")
	f.StringVar(&df.canary, "canary", "", "a canary of `N` devices or P%")
	f.StringVar(&df.waves, "waves", "", "waves after the canary, cumulative `PERCENTS` (25,50,100)")
	f.StringVar(&df.waveBy, "wave-by", "", "one wave per `SELECTOR` (site=a,site=b; the rest last)")
	f.Float64Var(&df.success, "success-threshold", 0, "share of a phase's finished devices that must succeed (default 1)")
	f.Float64Var(&df.failure, "failure-threshold", 0, "share of failed devices past which --on-failure applies (default 1: never)")
	f.IntVar(&df.minFinished, "min-finished", 0, "finished devices before the failure threshold applies")
	f.DurationVar(&df.soak, "soak", 0, "wait after each phase but the last (and compare health over it)")
	f.StringVar(&df.onFailure, "on-failure", "", "pause, abort or rollback (default pause)")
	f.IntVar(&df.concurrency, "concurrency", 0, "devices in progress at once (default 100)")
	f.IntVar(&df.rate, "rate", 0, "devices started per minute (default no limit)")
	f.DurationVar(&df.timeout, "timeout", 0, "per-device timeout (default 2h)")
	f.IntVar(&df.retries, "retries", 0, "retries of a transient failure")
	f.DurationVar(&df.backoff, "retry-backoff", 0, "first retry's wait, doubled each time (default 1m)")
	f.StringArrayVar(&df.windows, "window", nil, "maintenance window `CRON;DURATION;ZONE[;SELECTOR]` (repeatable)")
	f.StringArrayVar(&df.gates, "gate", nil, "health gate `SIGNAL:MAX` or metric:NAME:MAX (reboots, crashes, offline; repeatable)")
	f.Float64Var(&df.minBattery, "min-battery", 0, "skip devices whose battery is below this share (0 to 1)")
	f.BoolVar(&df.emergency, "emergency", false, "skip windows and the canary's soak, once a second operator approves")
	f.BoolVar(&df.draft, "draft", false, "keep it a draft (resume submits it)")
	f.StringVar(&df.startAt, "start-at", "", "start at this `TIME` (RFC 3339; default at once)")
	f.StringVar(&df.description, "description", "", "a description")

	var state string
	var limit int
	list := &cobra.Command{
		Use: "list", Short: "List your tenant's deployments, newest first", Args: exactArgs(),
		Example: `  steward deployments list --state running`,
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ds, err := c.ListDeployments(cmd.Context(), steward.DeploymentState(state), limit)
			if err != nil {
				return err
			}
			return emitList(e, ds, func(w io.Writer, ds []client.Deployment) error {
				t := newTable(w, "ID", "NAME", "TARGET", "STATE", "PHASE", "CREATED BY", "CREATED")
				for _, d := range ds {
					t.row(d.ID, d.Name, d.Target.Name+"@"+d.Target.Version, string(d.State), phaseName(d.Deployment), d.CreatedBy, when(d.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	list.Flags().StringVar(&state, "state", "", "only deployments in this `STATE`")
	list.Flags().IntVar(&limit, "limit", 0, "at most `N` deployments (default 100)")

	var devices bool
	var devState string
	get := &cobra.Command{
		Use: "get ID [DEVICE]", Short: "Show a deployment and its progress, or one device's history in it",
		Example: `  steward deployments get dp-0c9d…
  steward deployments get dp-0c9d… --devices --state failed
  steward deployments get dp-0c9d… d-7k2…`,
		Args: cobra.RangeArgs(1, 2),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if len(args) == 2 {
				dd, err := c.GetDeploymentDevice(cmd.Context(), args[0], args[1])
				if err != nil {
					return err
				}
				return e.emit(dd, func(w io.Writer) error { return deploymentDeviceTable(w, dd) })
			}
			if devices {
				f := steward.DeploymentDeviceFilter{Phase: -1, Limit: limit}
				if devState != "" {
					f.States = []steward.UpdateState{steward.UpdateState(devState)}
				}
				rows, _, err := c.ListDeploymentDevices(cmd.Context(), args[0], f)
				if err != nil {
					return err
				}
				return emitList(e, rows, func(w io.Writer, rows []steward.DeploymentDevice) error {
					t := newTable(w, "DEVICE", "PHASE", "STATE", "ATTEMPT", "FROM", "TO", "REASON", "UPDATED")
					for _, r := range rows {
						t.row(r.DeviceID, strconv.Itoa(r.Phase), string(r.State), strconv.Itoa(r.Attempt), r.FromVersion, r.ToVersion, r.Reason, when(r.UpdatedAt))
					}
					return t.flush()
				})
			}
			d, err := c.GetDeployment(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deploymentTable(w, d) })
		}),
	}
	get.Flags().BoolVar(&devices, "devices", false, "list the deployment's devices")
	get.Flags().StringVar(&devState, "state", "", "with --devices: only devices in this `STATE`")
	get.Flags().IntVar(&limit, "limit", 0, "with --devices: at most `N` devices (default 100)")

	action := func(use, short string, do func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error)) *cobra.Command {
		return &cobra.Command{
			Use: use + " ID", Short: short, Args: exactArgs("ID"),
			RunE: run(func(cmd *cobra.Command, args []string) error {
				c, err := e.client(0)
				if err != nil {
					return err
				}
				d, err := do(c, cmd, args[0])
				if err != nil {
					return err
				}
				return e.emit(d, func(w io.Writer) error { return deploymentTable(w, d) })
			}),
		}
	}
	var comment, reason string
	approve := action("approve", "Approve a deployment awaiting approval (another operator's)", func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error) {
		return c.ApproveDeployment(cmd.Context(), id, comment)
	})
	approve.Flags().StringVar(&comment, "comment", "", "why")
	pause := action("pause", "Pause a deployment: no more devices start", func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error) {
		return c.PauseDeployment(cmd.Context(), id, reason)
	})
	pause.Flags().StringVar(&reason, "reason", "", "why")
	resume := action("resume", "Resume a paused deployment, or submit a draft", func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error) {
		return c.ResumeDeployment(cmd.Context(), id)
	})
	cancel := action("cancel", "Abort a deployment", func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error) {
		return c.CancelDeployment(cmd.Context(), id)
	})
	rollback := action("rollback", "Take the devices a deployment changed back to their previous version", func(c *client.Client, cmd *cobra.Command, id string) (client.Deployment, error) {
		return c.RollbackDeployment(cmd.Context(), id)
	})
	g.AddCommand(create, list, get, approve, pause, resume, cancel, rollback)
	return g
}

// deploymentRequest builds the request from --file or the flags.
func (e *env) deploymentRequest(cmd *cobra.Command, name string, df deploymentFlags) (client.DeploymentRequest, error) {
	req := client.DeploymentRequest{Name: name, Description: df.description, Draft: df.draft}
	if df.file != "" {
		b, err := e.readInput(df.file)
		if err != nil {
			return req, err
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return req, usagef("%s: %v", df.file, err)
		}
		if req.Name == "" {
			req.Name = name
		}
		return req, nil
	}
	tn, tv, ok := strings.Cut(df.target, "@")
	if (!ok || tn == "" || tv == "") && !(df.target == "" && df.artifact != "") {
		return req, usagef("--artifact ID or --target NAME@VERSION is required (or --file)")
	}
	s := &req.DeploymentSpec
	s.Target = steward.DeploymentTarget{Kind: steward.DeploymentKind(df.kind), ArtifactID: df.artifact, Name: tn, Version: tv,
		SHA256: df.sha, Length: df.length, TUFPath: df.tufPath}
	s.Query, s.KeepOpen, s.OnFailure = df.query, df.keepOpen, steward.FailurePolicy(df.onFailure)
	s.Concurrency, s.Rate, s.Retries, s.MinBattery, s.Emergency = df.concurrency, df.rate, df.retries, df.minBattery, df.emergency
	s.DeviceTimeout, s.RetryBackoff = steward.Duration(df.timeout), steward.Duration(df.backoff)
	if df.startAt != "" {
		t, err := time.Parse(time.RFC3339, df.startAt)
		if err != nil {
			return req, usagef("--start-at %q: want RFC 3339", df.startAt)
		}
		s.StartAt = t
	}
	phase := func(p steward.Phase) steward.Phase {
		p.SuccessThreshold, p.FailureThreshold, p.MinFinished, p.Soak = df.success, df.failure, df.minFinished, steward.Duration(df.soak)
		return p
	}
	if df.canary != "" {
		p := steward.Phase{Name: "canary"}
		if pc, ok := strings.CutSuffix(df.canary, "%"); ok {
			v, err := strconv.ParseFloat(pc, 64)
			if err != nil {
				return req, usagef("--canary %q: want N or P%%", df.canary)
			}
			p.Percent = v
		} else {
			n, err := strconv.Atoi(df.canary)
			if err != nil {
				return req, usagef("--canary %q: want N or P%%", df.canary)
			}
			p.Count = n
		}
		s.Phases = append(s.Phases, phase(p))
	}
	if df.waves != "" && df.waveBy != "" {
		return req, usagef("give --waves or --wave-by, not both")
	}
	for i, w := range parseList(df.waves) {
		v, err := strconv.ParseFloat(strings.TrimSuffix(w, "%"), 64)
		if err != nil {
			return req, usagef("--waves %q: want percentages", df.waves)
		}
		s.Phases = append(s.Phases, phase(steward.Phase{Name: fmt.Sprintf("wave-%d", i+1), Percent: v}))
	}
	for _, sel := range parseList(df.waveBy) {
		s.Phases = append(s.Phases, phase(steward.Phase{Name: sel, Selector: sel}))
	}
	if df.waveBy != "" {
		s.Phases = append(s.Phases, phase(steward.Phase{Name: "rest", Percent: 100}))
	}
	if len(s.Phases) == 0 || s.Phases[len(s.Phases)-1].Percent != 100 && df.waves == "" && df.waveBy == "" {
		s.Phases = append(s.Phases, phase(steward.Phase{Name: "rest", Percent: 100}))
	}
	s.Phases[len(s.Phases)-1].Soak = 0 // nothing follows the last phase
	for _, w := range df.windows {
		parts := strings.Split(w, ";")
		if len(parts) < 3 || len(parts) > 4 {
			return req, usagef("--window %q: want CRON;DURATION;ZONE[;SELECTOR]", w)
		}
		d, err := time.ParseDuration(strings.TrimSpace(parts[1]))
		if err != nil {
			return req, usagef("--window %q: duration: %v", w, err)
		}
		mw := steward.MaintenanceWindow{Cron: strings.TrimSpace(parts[0]), Duration: steward.Duration(d), TimeZone: strings.TrimSpace(parts[2])}
		if len(parts) == 4 {
			mw.Match = strings.TrimSpace(parts[3])
		}
		s.Windows = append(s.Windows, mw)
	}
	for _, g := range df.gates {
		parts := strings.Split(g, ":")
		c := steward.GateCheck{Signal: parts[0]}
		switch {
		case len(parts) == 2 && parts[0] != steward.SignalMetric:
		case len(parts) == 3 && parts[0] == steward.SignalMetric:
			c.Metric = parts[1]
		default:
			return req, usagef("--gate %q: want SIGNAL:MAX or metric:NAME:MAX", g)
		}
		v, err := strconv.ParseFloat(parts[len(parts)-1], 64)
		if err != nil {
			return req, usagef("--gate %q: MAX must be a number", g)
		}
		c.MaxIncrease = v
		if s.Gate == nil {
			s.Gate = &steward.HealthGate{}
		}
		s.Gate.Checks = append(s.Gate.Checks, c)
	}
	return req, nil
}

func phaseName(d steward.Deployment) string {
	if d.Phase >= 0 && d.Phase < len(d.Phases) {
		return fmt.Sprintf("%d/%d %s", d.Phase+1, len(d.Phases), d.Phases[d.Phase].Name)
	}
	return strconv.Itoa(d.Phase)
}

func deploymentTable(w io.Writer, d client.Deployment) error {
	k := newKV(w)
	k.add("ID", d.ID)
	k.add("Name", d.Name)
	k.add("Target", fmt.Sprintf("%s %s@%s", d.Target.Kind, d.Target.Name, d.Target.Version))
	k.add("Query", d.Query)
	k.add("State", string(d.State))
	if d.StateReason != "" {
		k.add("Reason", d.StateReason)
	}
	k.add("Phase", phaseName(d.Deployment))
	if d.Emergency {
		k.add("Emergency", "yes")
	}
	if d.RollbackOf != "" {
		k.add("Rollback of", d.RollbackOf)
	}
	k.add("Created by", d.CreatedBy)
	if d.ApprovedBy != "" {
		k.add("Approved by", d.ApprovedBy)
	}
	k.add("Created", when(d.CreatedAt))
	if ev := d.Evidence; ev != nil {
		for _, s := range ev.Signals {
			name := s.Signal
			if s.Metric != "" {
				name += " " + s.Metric
			}
			k.add("Gate "+name, fmt.Sprintf("updated %.3g, not updated %.3g (+%.3g, at most +%.3g) %s", s.Updated, s.Baseline, s.Increase, s.MaxIncrease, map[bool]string{true: "WORSE", false: "ok"}[s.Worse]))
		}
	}
	if pr := d.Progress; pr != nil {
		k.add("Devices", strconv.Itoa(pr.Total)+" "+stateCounts(pr.States))
		for _, p := range pr.Phases {
			k.add(fmt.Sprintf("  %d %s", p.Index+1, p.Name), strconv.Itoa(p.Total)+" "+stateCounts(p.States))
		}
	}
	return k.flush()
}

func stateCounts(m map[steward.UpdateState]int) string {
	var parts []string
	for st, n := range m {
		parts = append(parts, fmt.Sprintf("%s %d", st, n))
	}
	sort.Strings(parts)
	if len(parts) == 0 {
		return ""
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func deploymentDeviceTable(w io.Writer, dd client.DeploymentDevice) error {
	k := newKV(w)
	k.add("Device", dd.DeviceID)
	k.add("Deployment", dd.DeploymentID)
	k.add("Phase", strconv.Itoa(dd.Phase))
	k.add("State", string(dd.State))
	if dd.Reason != "" {
		k.add("Reason", dd.Reason)
	}
	k.add("Attempt", strconv.Itoa(dd.Attempt))
	k.add("Versions", dd.FromVersion+" → "+dd.ToVersion)
	if err := k.flush(); err != nil {
		return err
	}
	t := newTable(w, "AT", "ATTEMPT", "STATE", "REASON")
	for _, h := range dd.History {
		t.row(when(h.At), strconv.Itoa(h.Attempt), string(h.State), h.Reason)
	}
	return t.flush()
}
