package cli_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/internal/cli"
)

// notifyIDs replaces the random parts the shared normalizers do not know:
// channel, silence and delivery IDs, test notification keys and the
// webhook receiver's port (ephemeral ports have 5 digits on Linux).
var notifyIDs = []struct {
	re   *regexp.Regexp
	repl string
}{
	{regexp.MustCompile(`\bch-[a-z2-7]{20}\b`), "<CHANNEL-ID>..........."},
	{regexp.MustCompile(`\bsil-[a-z2-7]{20}\b`), "<SILENCE-ID>..........."},
	{regexp.MustCompile(`\bdl-[0-9a-f]{20}\b`), "<DELIVERY-ID>.........."},
	{regexp.MustCompile(`\btest-[0-9a-f]{20}\b`), "<TEST-KEY>................"},
	{regexp.MustCompile(`127\.0\.0\.1:\d{2,5}`), "127.0.0.1:PORT"},
}

func notifyNormalize(s string) string {
	for _, n := range notifyIDs {
		s = n.re.ReplaceAllString(s, n.repl)
	}
	return s
}

func TestNotificationCommands(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Steward-Signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)
	secret := filepath.Join(t.TempDir(), "hook.key")
	if err := os.WriteFile(secret, []byte("very-secret-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := r.ok(t, "channels", "create", "ops-hook", "--webhook", hook.URL+"/steward", "--secret-file", secret, "--header", "Authorization: Bearer xyz")
	if strings.Contains(out, "very-secret-key") || strings.Contains(out, "xyz") {
		t.Fatalf("create shows a secret:\n%s", out)
	}
	r.ok(t, "channels", "create", "oncall", "--email-to", "ops@example.com,oncall@example.com", "--email-from", "steward@example.com", "--smtp", "smtp.example.com:587", "--disabled")
	golden(t, "channels-list", notifyNormalize(r.ok(t, "channels", "list")))

	var chs []struct{ ID, Name string }
	r.okJSON(t, &chs, "channels", "list")
	if len(chs) != 2 || chs[1].Name != "ops-hook" {
		t.Fatalf("channels: %+v", chs)
	}
	golden(t, "channels-test", notifyNormalize(r.ok(t, "channels", "test", chs[1].ID)))
	golden(t, "deliveries-list", notifyNormalize(r.ok(t, "deliveries", "list", "--status", "delivered")))

	r.ok(t, "silences", "create", "--match", "site=paris", "--match", "model=~gw-.*", "--match", "env!=dev", "--until", "2099-01-01T00:00:00Z", "--comment", "router swap")
	golden(t, "silences-list", notifyNormalize(r.ok(t, "silences", "list", "--active")))
	var ss []steward.Silence
	r.okJSON(t, &ss, "silences", "list")
	if len(ss) != 1 || len(ss[0].Matchers) != 3 || ss[0].Matchers[2].Op != steward.MatchNotEqual {
		t.Fatalf("silences: %+v", ss)
	}
	if out := r.ok(t, "silences", "expire", ss[0].ID); !strings.Contains(out, "expired") {
		t.Fatalf("expire: %q", out)
	}
	r.okJSON(t, &ss, "silences", "list", "--active")
	if len(ss) != 0 {
		t.Fatalf("active after expire: %+v", ss)
	}
	if out := r.ok(t, "channels", "delete", chs[1].ID); !strings.Contains(out, "deleted") {
		t.Fatalf("delete: %q", out)
	}
	if res := r.run(t, "channels", "test", chs[1].ID); res.code != cli.ExitError || !strings.Contains(res.stderr, "not found") {
		t.Fatalf("test after delete: %+v", res)
	}
}

func TestNotificationUsage(t *testing.T) {
	t.Parallel()
	r := newRunner("http://127.0.0.1:1", "stw_x") // nothing listens: usage errors come first
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"channels", "create", "x"}, "give --webhook"},
		{[]string{"channels", "create", "x", "--webhook", "https://a/", "--email-to", "a@b.c"}, "not both"},
		{[]string{"channels", "create", "x", "--email-to", "a@b.c"}, "needs --email-to, --email-from and --smtp"},
		{[]string{"channels", "create", "x", "--webhook", "https://a/", "--header", "nocolon"}, "NAME: VALUE"},
		{[]string{"channels", "create", "x", "--webhook", "https://a/", "--secret-file", "/nonexistent/key"}, "--secret-file"},
		{[]string{"silences", "create", "--for", "1h"}, "--match"},
		{[]string{"silences", "create", "--match", "site=paris"}, "either --for or --until"},
		{[]string{"silences", "create", "--match", "=paris", "--for", "1h"}, "LABEL=VALUE"},
		{[]string{"silences", "create", "--match", "site=~(", "--for", "1h"}, "regular expression"},
		{[]string{"deliveries", "list", "--status", "lost"}, "--status"},
	}
	for _, tc := range cases {
		res := r.run(t, tc.args...)
		if res.code != cli.ExitUsage || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("steward %s: exit %d, stderr %q; want exit %d with %q", strings.Join(tc.args, " "), res.code, res.stderr, cli.ExitUsage, tc.want)
		}
	}
}
