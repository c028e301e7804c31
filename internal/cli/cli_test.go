package cli_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// result is one CLI run.
type result struct {
	code           int
	stdout, stderr string
}

// runner runs the CLI against one server with one token.
type runner struct {
	env   map[string]string
	stdin string
}

func newRunner(url, token string) *runner {
	return &runner{env: map[string]string{"STEWARD_URL": url, "STEWARD_TOKEN": token}}
}

func (r *runner) run(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(r.stdin), &out, &errOut, func(k string) string { return r.env[k] })
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// ok runs the CLI and fails the test unless it exits 0.
func (r *runner) ok(t *testing.T, args ...string) string {
	t.Helper()
	res := r.run(t, args...)
	if res.code != 0 {
		t.Fatalf("steward %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), res.code, res.stdout, res.stderr)
	}
	return res.stdout
}

// okJSON runs the CLI with -o json and decodes its output.
func (r *runner) okJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := r.ok(t, append([]string{"-o", "json"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("steward %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// normalizers replace what changes from run to run (random IDs, secrets,
// times, fingerprints) with placeholders of the same width, so that the
// columns of a table stay as aligned as the CLI made them.
var normalizers = []struct {
	re   *regexp.Regexp
	name string
}{
	{regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`), "TIME"},
	{regexp.MustCompile(`stw_[a-z2-7]{52}`), "SECRET"},
	{regexp.MustCompile(`\bt-[a-z2-7]{20}\b`), "TOKEN-ID"},
	{regexp.MustCompile(`\beg-[0-9a-f]{16}\b`), "GROUP-ID"},
	{regexp.MustCompile(`\b[0-9a-f]{64}\b`), "FINGERPRINT"},
	{regexp.MustCompile(`\b[0-9a-f]{16}…`), "FPRINT"},
}

func normalize(s string) string {
	for _, n := range normalizers {
		s = n.re.ReplaceAllStringFunc(s, func(m string) string {
			w := len([]rune(m))
			p := "<" + n.name + ">"
			if len(p) < w {
				p += strings.Repeat(".", w-len(p))
			}
			return p
		})
	}
	return s
}

// golden compares normalised output with testdata/NAME.golden.
func golden(t *testing.T, name, got string) {
	t.Helper()
	got = normalize(got)
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

func devID(name string) string { return ("d-" + name + strings.Repeat("0", 20))[:22] }

func TestUsageErrorsSendNothing(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	env.AddDevice(t, steward.DefaultTenant, devID("u"), "gw-100", map[string]string{"a": "b"})
	ca := filepath.Join("testdata", "mfr-ca-1.pem")
	cases := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"nothing", nil, "missing command"},
		{"unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"group alone", []string{"devices"}, "needs a subcommand"},
		{"unknown subcommand", []string{"devices", "explode"}, `unknown command "explode"`},
		{"missing ID", []string{"devices", "get"}, "needs ID"},
		{"extra argument", []string{"devices", "get", "a", "b"}, "takes 1 argument"},
		{"unknown flag", []string{"devices", "list", "--colour"}, "unknown flag: --colour"},
		{"bad output", []string{"-o", "yaml", "devices", "list"}, "table or json"},
		{"quarantine without reason", []string{"devices", "quarantine", devID("u")}, "--reason is required"},
		{"set nothing", []string{"devices", "set", devID("u")}, "nothing to set"},
		{"lat without lon", []string{"devices", "set", devID("u"), "--lat", "1"}, "--lat and --lon go together"},
		{"bad warranty date", []string{"devices", "set", devID("u"), "--warranty-end", "31/01/2030"}, "YYYY-MM-DD"},
		{"bad labels", []string{"devices", "set", devID("u"), "--labels", "novalue"}, "KEY=VALUE"},
		{"duplicate label", []string{"devices", "set", devID("u"), "--labels", "a=1,a=2"}, "given twice"},
		{"bad lat", []string{"devices", "set", devID("u"), "--lat", "north", "--lon", "1"}, "invalid argument"},
		{"args not an object", []string{"devices", "command", devID("u"), "ping", "--args", "[1]"}, "JSON object"},
		{"bad timeout", []string{"devices", "command", devID("u"), "ping", "--timeout", "soon"}, "invalid argument"},
		{"group without CA", []string{"enrollment-groups", "create", "g"}, "--ca FILE is required"},
		{"group with missing CA file", []string{"enrollment-groups", "create", "g", "--ca", "testdata/nope.pem"}, "nope.pem"},
		{"bad firmware", []string{"enrollment-groups", "create", "g", "--ca", ca, "--firmware", "gw-100"}, "MODEL=VERSION"},
		{"bad role", []string{"tokens", "create", "x", "--role", "root"}, "a built-in role"},
		{"bad limit", []string{"devices", "list", "--limit", "5000"}, "--limit"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := r.run(t, c.args...)
			if res.code != cli.ExitUsage {
				t.Fatalf("exit %d, want %d\nstderr: %s", res.code, cli.ExitUsage, res.stderr)
			}
			if !strings.Contains(res.stderr, c.want) || !strings.Contains(res.stderr, "--help") {
				t.Errorf("stderr %q, want %q and a pointer to --help", res.stderr, c.want)
			}
			if res.stdout != "" {
				t.Errorf("stdout %q", res.stdout)
			}
		})
	}
	// Nothing reached the server.
	d, err := env.Store.GetDevice(context.Background(), steward.DefaultTenant, devID("u"))
	if err != nil || d.Version != 1 || d.State != steward.StateActive || d.Labels["a"] != "b" {
		t.Fatalf("device changed: %+v %v", d, err)
	}
	gs, err := env.Store.ListEnrollmentGroups(context.Background(), steward.DefaultTenant)
	if err != nil || len(gs) != 0 {
		t.Fatalf("groups written: %+v %v", gs, err)
	}
}

func TestTokenSources(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(env.SystemToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	noToken := newRunner(env.URL, "")
	if res := noToken.run(t, "tokens", "list"); res.code != cli.ExitUsage || !strings.Contains(res.stderr, "STEWARD_TOKEN") {
		t.Fatalf("no token: %+v", res)
	}
	noToken.ok(t, "--token-file", file, "tokens", "list")
	noToken.ok(t, "tokens", "list", "--token-file", file) // global flags go anywhere
	if res := noToken.run(t, "--token-file", empty, "tokens", "list"); res.code != cli.ExitUsage || !strings.Contains(res.stderr, "empty") {
		t.Fatalf("empty token file: %+v", res)
	}
	bad := newRunner(env.URL, "stw_wrong")
	res := bad.run(t, "tokens", "list")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "invalid or revoked token") || !strings.Contains(res.stderr, "HTTP 401") {
		t.Fatalf("bad token: %+v", res)
	}
	// The file wins over the environment.
	bad.ok(t, "--token-file", file, "tokens", "list")

	down := newRunner("http://127.0.0.1:1", env.SystemToken)
	if res := down.run(t, "devices", "list"); res.code != cli.ExitError || !strings.Contains(res.stderr, "cannot reach the server at http://127.0.0.1:1") || !strings.Contains(res.stderr, "connection refused") {
		t.Fatalf("server down: %+v", res)
	}
	if res := newRunner("ftp://x", env.SystemToken).run(t, "devices", "list"); res.code != cli.ExitUsage {
		t.Fatalf("bad URL: %+v", res)
	}
	other := newRunner("http://127.0.0.1:1", env.SystemToken)
	other.ok(t, "--url", env.URL, "tokens", "list")
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := newRunner("http://127.0.0.1:1", "")
	out := r.ok(t, "--help")
	for _, want := range []string{"enrollment-groups", "devices", "security-events", "ca", "tokens", "tenants", "STEWARD_URL", "--token-file", "-o, --output"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	out = r.ok(t, "devices", "set", "--help")
	if !strings.Contains(out, "--warranty-end") {
		t.Errorf("devices set help:\n%s", out)
	}
}

func TestEnrollmentGroups(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	serials := filepath.Join(t.TempDir(), "serials.txt")
	if err := os.WriteFile(serials, []byte("# serials of batch 7\nSN1\n\n  SN2  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := r.ok(t, "enrollment-groups", "create", "acme-gw", "--ca", "testdata/mfr-ca-1.pem",
		"--models", "gw-100,gw-200", "--firmware", "gw-100=1.2.0,1.3.0", "--firmware", "gw-200=2.0.0",
		"--labels", "site=plant-1,env=prod", "--serials", serials, "--strict")
	golden(t, "group-create", out)

	var groups []steward.EnrollmentGroup
	r.okJSON(t, &groups, "enrollment-groups", "list")
	if len(groups) != 1 {
		t.Fatalf("groups %+v", groups)
	}
	g := groups[0]
	if g.Name != "acme-gw" || !g.Strict || len(g.Serials) != 2 || g.Serials[1] != "SN2" || len(g.Firmware["gw-100"]) != 2 || g.Firmware["gw-200"][0] != "2.0.0" || g.Labels["env"] != "prod" {
		t.Fatalf("group %+v", g)
	}
	golden(t, "group-list", r.ok(t, "groups", "list"))

	// The CA from stdin.
	ca2, err := os.ReadFile("testdata/mfr-ca-2.pem")
	if err != nil {
		t.Fatal(err)
	}
	r2 := *r
	r2.stdin = string(ca2)
	var g2 steward.EnrollmentGroup
	r2.okJSON(t, &g2, "enrollment-groups", "create", "second", "--ca", "-")
	if g2.Name != "second" || len(g2.Models) != 0 || g2.Strict {
		t.Fatalf("second group %+v", g2)
	}
	var got steward.EnrollmentGroup
	r.okJSON(t, &got, "enrollment-groups", "get", g2.ID)
	if got.CAFingerprint != g2.CAFingerprint {
		t.Fatalf("get %+v", got)
	}
	// The server's refusal is a clear error, exit 1.
	res := r.run(t, "enrollment-groups", "create", "third", "--ca", "testdata/mfr-ca-1.pem")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "already registered") || !strings.Contains(res.stderr, "HTTP 409") {
		t.Fatalf("duplicate CA: %+v", res)
	}
	if out := r.ok(t, "enrollment-groups", "delete", g2.ID); out != "deleted enrollment group "+g2.ID+"\n" {
		t.Fatalf("delete: %q", out)
	}
	if out := r.ok(t, "-o", "json", "enrollment-groups", "delete", g.ID); out != "" {
		t.Fatalf("delete -o json: %q", out)
	}
	res = r.run(t, "enrollment-groups", "get", g.ID)
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "not_found") {
		t.Fatalf("get deleted: %+v", res)
	}
}

func TestDevices(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	env.AddDevice(t, steward.DefaultTenant, devID("alpha"), "gw-100", map[string]string{"site": "plant-1", "env": "prod"})
	env.AddDevice(t, steward.DefaultTenant, devID("beta"), "gw-200", nil)
	env.AddDevice(t, steward.DefaultTenant, devID("gamma"), "sensor-7", map[string]string{"env": "lab"})

	golden(t, "devices-list", r.ok(t, "devices", "list"))
	golden(t, "devices-list-query", r.ok(t, "devices", "list", "--query", `labels.env = "prod" or model = "gw-200"`))
	var ds []steward.Device
	r.okJSON(t, &ds, "devices", "list", "-q", `model = "sensor-7"`)
	if len(ds) != 1 || ds[0].ID != devID("gamma") {
		t.Fatalf("json list %+v", ds)
	}
	r.okJSON(t, &ds, "devices", "list", "--query", `model = "none"`)
	if ds == nil || len(ds) != 0 {
		t.Fatalf("empty list must be [], got %+v", ds)
	}
	res := r.run(t, "devices", "list", "--query", `model = `)
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "column") {
		t.Fatalf("bad query: %+v", res)
	}

	id := devID("alpha")
	r.ok(t, "devices", "set", id, "--owner", "ops", "--lat", "48.85", "--lon", "2.35", "--warranty-end", "2030-01-31")
	// --site alone keeps the coordinates.
	r.ok(t, "devices", "set", id, "--site", "paris")
	var d steward.Device
	r.okJSON(t, &d, "devices", "set", id, "--labels", "env=staging")
	if d.Owner != "ops" || d.Location.Site != "paris" || d.Location.Latitude == nil || *d.Location.Latitude != 48.85 ||
		d.Labels["env"] != "staging" || len(d.Labels) != 1 || d.WarrantyEnd == nil || !d.WarrantyEnd.Equal(time.Date(2030, 1, 31, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("set %+v", d)
	}
	out := r.ok(t, "devices", "quarantine", id, "--reason", "odd traffic")
	if !regexp.MustCompile(`(?m)^State:\s+quarantined$`).MatchString(out) || !strings.Contains(out, "odd traffic") {
		t.Fatalf("quarantine output:\n%s", out)
	}
	r.ok(t, "devices", "release", id)
	res = r.run(t, "devices", "release", id)
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "not quarantined") {
		t.Fatalf("second release: %+v", res)
	}
	r.ok(t, "devices", "revoke", id)
	golden(t, "device-get", r.ok(t, "devices", "get", id))
	var detail steward.DeviceDetail
	r.okJSON(t, &detail, "devices", "get", id)
	if len(detail.History) != 2 || detail.Owner != "ops" {
		t.Fatalf("detail %+v", detail)
	}
	if res := r.run(t, "devices", "get", devID("nobody")); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("unknown device: %+v", res)
	}

	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	if err := env.Store.WriteSamples(context.Background(), []steward.Sample{
		{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "cpu", Value: 0.31, At: at},
		{TenantID: steward.DefaultTenant, DeviceID: id, Metric: "temperature", Value: 48.5, At: at},
	}); err != nil {
		t.Fatal(err)
	}
	golden(t, "devices-telemetry", r.ok(t, "devices", "telemetry", id))
	if err := env.Store.AddSecurityEvent(context.Background(), steward.SecurityEvent{TenantID: steward.DefaultTenant, DeviceID: id, Kind: steward.SecACLDenied, Detail: "publish\tdev/other/telemetry", Remote: "127.0.0.1:5000", At: at}); err != nil {
		t.Fatal(err)
	}
	golden(t, "security-events", r.ok(t, "security-events", "list", "--device", id))
	var evs []steward.SecurityEvent
	r.okJSON(t, &evs, "security-events", "list", "--kind", "suspected_clone")
	if len(evs) != 0 {
		t.Fatalf("events %+v", evs)
	}
}

func TestCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	env.AddDevice(t, steward.DefaultTenant, devID("on"), "gw-100", nil)
	env.AddDevice(t, steward.DefaultTenant, devID("off"), "gw-100", nil)
	env.ConnectDevices(devID("on"))

	out := r.ok(t, "devices", "command", devID("on"), "ping", "--args", `{"n": 42}`, "--timeout", "5s")
	if !regexp.MustCompile(`(?m)^Status:\s+ok$`).MatchString(out) || !strings.Contains(out, `{"pong":42}`) {
		t.Fatalf("ping output:\n%s", out)
	}
	var res steward.CommandResult
	r.okJSON(t, &res, "devices", "command", devID("on"), "ping")
	if res.Status != "ok" || res.ID == "" {
		t.Fatalf("json %+v", res)
	}
	rej := r.run(t, "devices", "command", devID("on"), "reboot")
	if rej.code != cli.ExitError || !strings.Contains(rej.stdout, "rejected") || !strings.Contains(rej.stderr, "unknown command reboot") {
		t.Fatalf("rejected command: %+v", rej)
	}
	off := r.run(t, "devices", "command", devID("off"), "ping", "--timeout", "1s")
	if off.code != cli.ExitError || !strings.Contains(off.stderr, "not connected") || !strings.Contains(off.stderr, "HTTP 503") {
		t.Fatalf("offline device: %+v", off)
	}
}

func TestCAs(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	for _, which := range []string{"device", "server"} {
		out := r.ok(t, "ca", which)
		b, rest := pem.Decode([]byte(out))
		if b == nil || strings.TrimSpace(string(rest)) != "" {
			t.Fatalf("ca %s: not one PEM block:\n%s", which, out)
		}
		if c, err := x509.ParseCertificate(b.Bytes); err != nil || !c.IsCA {
			t.Fatalf("ca %s: %v", which, err)
		}
		var j map[string]string
		r.okJSON(t, &j, "ca", which)
		if j["pem"] != out {
			t.Fatalf("ca %s -o json: %v", which, j)
		}
	}
}

func TestTokensAndTenants(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	sys := newRunner(env.URL, env.SystemToken)

	res := sys.run(t, "tokens", "create", "ci")
	if res.code != 0 || !strings.Contains(res.stderr, "not shown again") {
		t.Fatalf("create: %+v", res)
	}
	golden(t, "token-create", res.stdout)
	secret := regexp.MustCompile(`stw_[a-z2-7]{52}`).FindString(res.stdout)
	admin := newRunner(env.URL, secret)
	golden(t, "tokens-list", admin.ok(t, "tokens", "list"))

	var toks []steward.APIToken
	admin.okJSON(t, &toks, "tokens", "list")
	if len(toks) != 2 {
		t.Fatalf("tokens %+v", toks)
	}
	res = admin.run(t, "tenants", "create", "acme")
	if res.code != cli.ExitError || !strings.Contains(res.stderr, "permission tenants:admin") || !strings.Contains(res.stderr, "HTTP 403") {
		t.Fatalf("admin creates tenant: %+v", res)
	}
	var created struct {
		Tenant steward.Tenant `json:"tenant"`
		Token  struct {
			steward.APIToken
			Secret string `json:"secret"`
		} `json:"token"`
	}
	sys.okJSON(t, &created, "tenants", "create", "acme", "--name", "Acme Corp")
	if created.Tenant.ID != "acme" || created.Tenant.Name != "Acme Corp" || created.Token.Secret == "" || created.Token.TenantID != "acme" {
		t.Fatalf("created %+v", created)
	}
	res = sys.run(t, "tenants", "create", "globex")
	if res.code != 0 || !strings.Contains(res.stderr, "not shown again") {
		t.Fatalf("create globex: %+v", res)
	}
	golden(t, "tenant-create", res.stdout)
	golden(t, "tenants-list", sys.ok(t, "tenants", "list"))
	acme := newRunner(env.URL, created.Token.Secret)
	acme.okJSON(t, &toks, "tokens", "list")
	if len(toks) != 1 || toks[0].TenantID != "acme" {
		t.Fatalf("acme tokens %+v", toks)
	}
	// Tenant isolation holds for the CLI too.
	var ciID string
	for _, tk := range func() []steward.APIToken { admin.okJSON(t, &toks, "tokens", "list"); return toks }() {
		if tk.Name == "ci" {
			ciID = tk.ID
		}
	}
	if res := acme.run(t, "tokens", "delete", ciID); res.code != cli.ExitError || !strings.Contains(res.stderr, "not_found") {
		t.Fatalf("cross-tenant delete: %+v", res)
	}
	if out := sys.ok(t, "tokens", "delete", ciID); out != fmt.Sprintf("deleted token %s\n", ciID) {
		t.Fatalf("delete: %q", out)
	}
	if res := admin.run(t, "tokens", "list"); res.code != cli.ExitError {
		t.Fatalf("deleted token still works: %+v", res)
	}
}
