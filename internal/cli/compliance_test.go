package cli_test

import (
	"encoding/csv"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api/apitest"
	"github.com/steward-iot/steward/compliance"
	"github.com/steward-iot/steward/internal/cli"
)

// TestComplianceReportCommand reads the report as a summary, as JSON, and
// as the server's CSV and HTML, and refuses bad flags.
func TestComplianceReportCommand(t *testing.T) {
	t.Parallel()
	env := apitest.New(t)
	r := newRunner(env.URL, env.SystemToken)
	id := devID("compliance")
	env.AddDevice(t, steward.DefaultTenant, id, "gw-100", nil)

	out := r.ok(t, "compliance", "report")
	for _, want := range []string{"devices in service", "certificates expiring within 30 days", "offline for more than 24 h", "audit log", "overall"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	var rep compliance.Report
	r.okJSON(t, &rep, "compliance", "report", "--offline-after", "90m")
	if rep.TenantID != steward.DefaultTenant || rep.OfflineAfterHours != 1.5 || rep.Summary.Devices == 0 {
		t.Fatalf("report %+v", rep.Summary)
	}

	rows, err := csv.NewReader(strings.NewReader(r.ok(t, "compliance", "report", "--format", "csv"))).ReadAll()
	if err != nil || len(rows) < 2 || rows[0][0] != "section" {
		t.Fatalf("CSV %v, %v", rows, err)
	}
	file := filepath.Join(t.TempDir(), "report.html")
	r.ok(t, "compliance", "report", "--format", "html", "--file", file)
	b, err := os.ReadFile(file)
	if err != nil || !strings.Contains(string(b), "Compliance report: default") {
		t.Fatalf("HTML %.200s, %v", b, err)
	}
	if res := r.run(t, "compliance", "report", "--format", "html", "--file", file); res.code != cli.ExitError {
		t.Fatalf("an existing file was overwritten: %+v", res)
	}
	if res := r.run(t, "compliance", "report", "--format", "pdf"); res.code != cli.ExitUsage {
		t.Fatalf("--format pdf: %+v", res)
	}
	if res := r.run(t, "compliance", "report", "--offline-after", "-1h"); res.code != cli.ExitUsage {
		t.Fatalf("negative threshold: %+v", res)
	}
	// The API refuses what the CLI cannot send.
	for _, q := range []string{"format=pdf", "offline_after=soon", "expiring_within=-5h", "expiring_within=100000h"} {
		req, _ := http.NewRequest("GET", env.URL+"/api/v1/compliance/report?"+q, nil)
		req.Header.Set("Authorization", "Bearer "+env.SystemToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid") {
			t.Errorf("%s: %d %s", q, resp.StatusCode, body)
		}
	}
}
