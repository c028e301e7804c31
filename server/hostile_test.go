package server

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/api"
	"github.com/steward-iot/steward/client"
)

// The hostile tenant suite: tenant B's administrator walks every route of
// the API with tenant A's real IDs of the right kind in the path, in the
// query string and in the body, and must get only refusals (403, 404, or
// 400 for what is malformed anyway), never A's data, and change nothing of
// A's: A's rows in every table with a tenant_id column are byte-identical
// before and after.

const (
	victim  = "victim"
	hostile = "hostile"
	// canary marks A's data that B never sends: it must never come back.
	canary = "canary-7f3e"
)

// victimIDs are tenant A's IDs, by kind.
type victimIDs map[string]string

// pathKinds maps a route's resource (the path segment before a wildcard)
// and wildcard name to the kind of ID that goes there. A route with a
// wildcard not listed here fails the suite: extend it (and the fixture)
// rather than leave a route unwalked.
var pathKinds = map[string]string{
	"alert-rules/{id}":           "alert-rule",
	"alerts/{id}":                "alert",
	"approval-policies/{id}":     "approval-policy",
	"approvals/{id}":             "approval",
	"artifacts/{id}":             "artifact",
	"certificates/{serial}":      "certificate",
	"config-templates/{id}":      "config-template",
	"config-versions/{id}":       "config-version",
	"decommissions/{id}":         "decommission",
	"deployments/{id}":           "deployment",
	"device-transfers/{id}":      "device-transfer",
	"devices/{device}":           "device",
	"devices/{id}":               "device",
	"enrollment-groups/{id}":     "group",
	"notification-channels/{id}": "channel",
	"notification-policies/{id}": "notification-policy",
	"roles/{name}":               "role",
	"service-accounts/{id}":      "service-account",
	"silences/{id}":              "silence",
	"telemetry-schemas/{model}":  "model",
	"tenants/{id}":               "tenant",
	"tokens/{id}":                "token",
	"uploads/{id}":               "upload",
	"users/{id}":                 "user",
}

var wildcard = regexp.MustCompile(`\{([a-z]+)\}`)

// fillPath puts A's IDs into a route's wildcards; it reports the kinds it
// could not fill.
func fillPath(path string, ids victimIDs) (string, []string) {
	var missing []string
	segs := strings.Split(path, "/")
	for i, s := range segs {
		m := wildcard.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		key := segs[i-1] + "/" + s
		kind, ok := pathKinds[key]
		if !ok || ids[kind] == "" {
			missing = append(missing, key)
			continue
		}
		segs[i] = url.PathEscape(ids[kind])
	}
	return strings.Join(segs, "/"), missing
}

func TestHostileTenant(t *testing.T) {
	if testing.Short() {
		t.Skip("walks every route: not in -short")
	}
	n := startNode(t)
	ctx := context.Background()
	a, err := n.admin.CreateTenant(ctx, victim, "Victim "+canary)
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.admin.CreateTenant(ctx, hostile, "Hostile")
	if err != nil {
		t.Fatal(err)
	}
	ids := fillVictim(t, n, a.Token.ID)
	hostileToken := b.Token.Secret

	db := n.Store.(interface{ DB() *sql.DB }).DB()
	before := snapshot(t, n, db, victim)

	routes := n.API.Routes()
	if len(routes) < 50 {
		t.Fatalf("the API lists only %d routes", len(routes))
	}
	httpc := &http.Client{Timeout: 30 * time.Second}
	walked := 0
	for _, rt := range routes {
		if rt.Permission == "" {
			continue // public: no token, no tenant (health, OpenAPI, OIDC login)
		}
		path, missing := fillPath(rt.Path, ids)
		if len(missing) > 0 {
			t.Errorf("%s %s: no ID of tenant A for %v: add the kind to pathKinds and the fixture", rt.Method, rt.Path, missing)
			continue
		}
		for _, q := range queryVariants(rt, ids) {
			target := path
			if q != "" {
				target += "?" + q
			}
			status, body := send(t, httpc, n.APIURL(), rt.Method, target, hostileToken, hostileBody(rt, ids))
			walked++
			checkRefused(t, rt, target, status, body, ids)
		}
	}
	t.Logf("walked %d requests over %d routes", walked, len(routes))

	after := snapshot(t, n, db, victim)
	if !maps.Equal(before, after) {
		for table := range before {
			if before[table] != after[table] {
				t.Errorf("tenant A's rows in %s changed:\nbefore %s\nafter  %s", table, before[table], after[table])
			}
		}
		for table := range after {
			if _, ok := before[table]; !ok {
				t.Errorf("tenant A has new rows in %s: %s", table, after[table])
			}
		}
	}
	// And A's own token still sees its device: the suite changed nothing
	// by breaking it.
	if _, err := client.New(n.APIURL(), a.Token.Secret, nil).GetDevice(ctx, ids["device"]); err != nil {
		t.Fatalf("tenant A reads its own device: %v", err)
	}
}

// queryVariants are the query strings tried on a route: none, and A's IDs
// under the names list filters use.
func queryVariants(rt api.Route, ids victimIDs) []string {
	out := []string{""}
	if rt.Method != "GET" {
		return out
	}
	out = append(out, url.Values{"device": {ids["device"]}}.Encode())
	out = append(out, url.Values{"q": {`id = "` + ids["device"] + `"`}}.Encode())
	out = append(out, url.Values{"rule": {ids["alert-rule"]}}.Encode())
	out = append(out, url.Values{"channel": {ids["channel"]}}.Encode())
	out = append(out, url.Values{"tenant": {victim}}.Encode())
	return out
}

// hostileBody is the body sent to a write route: A's IDs under the field
// names the API uses for references.
func hostileBody(rt api.Route, ids victimIDs) []byte {
	switch rt.Method {
	case "POST", "PUT", "PATCH":
	default:
		return nil
	}
	b, _ := json.Marshal(map[string]any{
		"device_id": ids["device"], "devices": []string{ids["device"]}, "query": `id = "` + ids["device"] + `"`,
		"artifact_id": ids["artifact"], "channels": []string{ids["channel"]}, "rule_id": ids["alert-rule"],
		"template_id": ids["config-template"], "group_id": ids["group"], "tenant": victim, "tenant_id": victim,
		"reason": "hostile", "name": "hostile",
	})
	return b
}

// send sends one request; when the token's rate limit refuses it, it
// waits as told and sends it again (the suite sends many requests with
// one token, and the limit is not what it tests).
func send(t *testing.T, c *http.Client, base, method, target, token string, body []byte) (int, []byte) {
	t.Helper()
	for range 100 {
		status, out, retry := sendOnce(t, c, base, method, target, token, body)
		if status != http.StatusTooManyRequests {
			return status, out
		}
		time.Sleep(retry)
	}
	t.Fatalf("%s %s: still rate limited", method, target)
	return 0, nil
}

func sendOnce(t *testing.T, c *http.Client, base, method, target, token string, body []byte) (int, []byte, time.Duration) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, base+target, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	retry := time.Second
	if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs > 0 {
		retry = time.Duration(secs) * time.Second
	}
	return resp.StatusCode, out, retry
}

// checkRefused fails unless a request with A's IDs was refused without
// showing anything of A. A route without a wildcard acts on the caller's
// own tenant and may succeed, but its answer must hold nothing of A's.
func checkRefused(t *testing.T, rt api.Route, target string, status int, body []byte, ids victimIDs) {
	t.Helper()
	own := !strings.Contains(rt.Path, "{")
	switch {
	case status == http.StatusForbidden, status == http.StatusNotFound:
	case status == http.StatusBadRequest, status == http.StatusUnsupportedMediaType, status == http.StatusMethodNotAllowed:
		// Refused as malformed before any lookup.
	case own && status >= 200 && status < 300:
	case own && status == http.StatusConflict:
		// A name taken in the caller's own tenant (the suite creates
		// the same name twice); checked for A's data below.
	default:
		t.Errorf("%s %s: status %d, want 403 or 404: %s", rt.Method, target, status, clip(body))
		return
	}
	text := string(body)
	if strings.Contains(text, canary) {
		t.Errorf("%s %s: the answer holds tenant A's data: %s", rt.Method, target, clip(body))
	}
	if strings.Contains(text, `"tenant_id":"`+victim+`"`) || strings.Contains(text, `"tenant_id": "`+victim+`"`) {
		t.Errorf("%s %s: the answer holds a record of tenant A: %s", rt.Method, target, clip(body))
	}
	if own {
		for kind, id := range ids {
			if kind != "tenant" && kind != "model" && strings.Contains(text, `"id":"`+id+`"`) {
				t.Errorf("%s %s: the answer lists tenant A's %s %s: %s", rt.Method, target, kind, id, clip(body))
			}
		}
	}
}

func clip(b []byte) string {
	if len(b) > 300 {
		return string(b[:300]) + "…"
	}
	return string(b)
}

// snapshot renders, for every table with a tenant_id column, the tenant's
// rows as text, sorted, so that two snapshots are equal only if nothing of
// the tenant changed.
func snapshot(t *testing.T, n *node, db *sql.DB, tenant string) map[string]string {
	t.Helper()
	ctx := context.Background()
	counts, err := n.Store.TenantRows(ctx, tenant)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, table := range slices.Sorted(maps.Keys(counts)) {
		// The table comes from the catalog and the tenant is a constant
		// of this test, so both are written into the statement.
		rows, err := db.QueryContext(ctx, fmt.Sprintf(`SELECT * FROM %q WHERE tenant_id = '%s'`, table, tenant))
		if err != nil {
			t.Fatalf("snapshot %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		var lines []string
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var sb strings.Builder
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(&sb, "%s=%v;", cols[i], v)
			}
			lines = append(lines, sb.String())
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		slices.Sort(lines)
		out[table] = strings.Join(lines, "\n")
	}
	return out
}

// fillVictim gives tenant A one thing of every kind the routes take, each
// marked with the canary where it has a free-text field, and returns
// their IDs.
func fillVictim(t *testing.T, n *node, tokenID string) victimIDs {
	t.Helper()
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	s := n.Store
	must := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("victim fixture %s: %v", what, err)
		}
	}
	ids := victimIDs{"tenant": victim, "token": tokenID, "model": "gw-victim-model"}
	ids["device"] = "d-victim0001"
	must("device", s.CreateDevice(ctx, steward.Device{ID: ids["device"], TenantID: victim, Model: "gw-100", Serial: "SN-" + canary,
		Firmware: "1.0.0", Owner: canary, Labels: map[string]string{"owner": canary}, State: steward.StateActive,
		StateChangedAt: now, StateActor: "system", CreatedAt: now, UpdatedAt: now, Version: 1}))
	ids["certificate"] = "ab12cd34ef"
	must("certificate", s.AddCertificate(ctx, steward.Certificate{Serial: ids["certificate"], TenantID: victim, DeviceID: ids["device"],
		KeyID: "key-" + canary, NotBefore: now, NotAfter: now.Add(24 * time.Hour), PEM: canary, CreatedAt: now}))
	ids["group"] = "g-victim0001"
	must("group", s.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{ID: ids["group"], TenantID: victim, Name: "group-" + canary,
		CAPEM: "-----BEGIN CERTIFICATE-----\n" + canary + "\n-----END CERTIFICATE-----\n", CAFingerprint: "fp-" + canary, CASubjectHash: "subj-" + canary,
		Models: []string{"gw-100"}, CreatedAt: now}))
	ids["alert-rule"] = "r-victim0001"
	rule := steward.AlertRule{ID: ids["alert-rule"], TenantID: victim, Name: "rule-" + canary, Kind: steward.RuleThreshold, Severity: steward.AlertMajor,
		Scope: "model = gw-100", For: steward.Duration(5 * time.Minute), Enabled: false,
		Threshold: &steward.ThresholdCondition{Metric: "temperature", Aggregation: steward.AggAvg, Window: steward.Duration(10 * time.Minute), Operator: ">", Value: 80},
		CreatedAt: now, UpdatedAt: now}
	must("alert rule", s.CreateAlertRule(ctx, rule))
	al, err := s.PutAlert(ctx, steward.Alert{ID: "al-victim0001", TenantID: victim, RuleID: ids["alert-rule"], DeviceID: ids["device"],
		State: steward.AlertFiring, Severity: steward.AlertMajor, Summary: canary, Value: 81, StartedAt: now, FiredAt: &now, LastEvaluatedAt: now})
	must("alert", err)
	ids["alert"] = al.ID
	ids["channel"] = "ch-victim0001"
	must("channel", s.CreateChannel(ctx, steward.NotificationChannel{ID: ids["channel"], TenantID: victim, Name: "hook-" + canary,
		Kind: steward.ChannelWebhook, Webhook: &steward.WebhookConfig{URL: "https://" + canary + ".example.com/hook", Secret: canary}, Enabled: true, CreatedAt: now}))
	ids["silence"] = "si-victim0001"
	must("silence", s.CreateSilence(ctx, steward.Silence{ID: ids["silence"], TenantID: victim, Matchers: []steward.Matcher{{Name: "rule", Op: "=", Value: canary}},
		StartsAt: now, EndsAt: now.Add(time.Hour), CreatedBy: "token:" + tokenID, Comment: canary, CreatedAt: now}))
	ids["notification-policy"] = "np-victim0001"
	must("notification policy", s.CreateNotificationPolicy(ctx, steward.NotificationPolicy{ID: ids["notification-policy"], TenantID: victim,
		Name: "policy-" + canary, Channels: []string{ids["channel"]}, CreatedAt: now, UpdatedAt: now}))
	ap, err := n.Approvals.CreatePolicy(ctx, steward.ApprovalPolicy{TenantID: victim, Name: "approvals-" + canary, Action: "deployment.*", Approvals: 1}, "token:"+tokenID)
	must("approval policy", err)
	ids["approval-policy"] = ap.ID
	ar, err := n.Approvals.Request(ctx, steward.ApprovalRequest{TenantID: victim, Action: "device.decommission", Target: "device:" + ids["device"],
		Reason: canary, Requester: "token:" + tokenID, Approvals: 1})
	must("approval request", err)
	ids["approval"] = ar.ID
	must("telemetry schema", s.PutTelemetrySchema(ctx, steward.TelemetrySchema{TenantID: victim, Model: ids["model"], Allow: []string{"temperature"}, UpdatedAt: now}))
	ids["artifact"] = "a-victim0001"
	must("artifact", s.CreateArtifact(ctx, steward.Artifact{ID: ids["artifact"], TenantID: victim, Name: "fw-" + canary, Version: "1.0.0",
		Type: steward.ArtifactFirmware, SHA256: strings.Repeat("ab", 32), Size: 10, CompatibleModels: []string{"gw-100"}, ReleaseNotes: canary,
		CreatedBy: "token:" + tokenID, CreatedAt: now}))
	ids["upload"] = "up-victim0001"
	must("upload", s.CreateUpload(ctx, steward.Upload{ID: ids["upload"], TenantID: victim,
		Artifact: steward.Artifact{TenantID: victim, Name: "fw2-" + canary, Version: "2.0.0", Type: steward.ArtifactFirmware, CompatibleModels: []string{"gw-100"}},
		Length:   100, SHA256: strings.Repeat("cd", 32), CreatedBy: "token:" + tokenID, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}))
	ids["deployment"] = "dep-victim0001"
	must("deployment", s.CreateDeployment(ctx, steward.Deployment{ID: ids["deployment"], TenantID: victim, Name: "dep-" + canary, Description: canary,
		DeploymentSpec: steward.DeploymentSpec{
			Target: steward.DeploymentTarget{Kind: steward.KindArtifact, ArtifactID: ids["artifact"], Name: "fw-" + canary, Version: "1.0.0",
				SHA256: strings.Repeat("ab", 32), Length: 10, TUFPath: "fw/1.0.0/fw.bin"},
			Query:  `model = "gw-100"`,
			Phases: []steward.Phase{{Name: "all", Percent: 100, SuccessThreshold: 0.9, FailureThreshold: 0.1}},
		},
		State: steward.DeploymentCompleted, CreatedBy: "token:" + tokenID, CreatedAt: now, UpdatedAt: now}))
	ids["config-template"] = "ct-victim0001"
	must("config template", s.CreateConfigTemplate(ctx, steward.ConfigTemplate{ID: ids["config-template"], TenantID: victim, Name: "tmpl-" + canary,
		Layer: steward.LayerBase, Description: canary, CreatedAt: now, UpdatedAt: now}))
	cv, err := s.CreateConfigVersion(ctx, steward.ConfigVersion{ID: "cv-victim0001", TenantID: victim, TemplateID: ids["config-template"],
		Document: json.RawMessage(`{"secret":"` + canary + `"}`), Author: "token:" + tokenID, Message: canary, CreatedAt: now})
	must("config version", err)
	ids["config-version"] = cv.ID
	ids["decommission"] = "dc-victim0001"
	must("decommission", s.CreateDecommission(ctx, steward.Decommission{ID: ids["decommission"], TenantID: victim, DeviceID: ids["device"],
		Reason: canary, Policy: steward.DataKeep, State: steward.DecommissionCompleted, RequestedBy: "token:" + tokenID, CreatedAt: now, UpdatedAt: now}))
	ids["device-transfer"] = "tr-victim0001"
	must("device transfer", s.CreateDeviceTransfer(ctx, steward.DeviceTransfer{ID: ids["device-transfer"], TenantID: victim, DeviceID: ids["device"],
		TargetTenantID: steward.DefaultTenant, Reason: canary, Policy: steward.DataDelete, State: steward.TransferPending, CodeHash: "hash-" + canary,
		FactoryID: "fac-" + canary, RequestedBy: "token:" + tokenID, CreatedAt: now, ExpiresAt: now.Add(time.Hour), UpdatedAt: now}))
	ids["user"] = "u-victim0001"
	must("user", s.CreateUser(ctx, steward.User{ID: ids["user"], TenantID: victim, Email: canary + "@victim.example", Name: "User " + canary,
		Role: steward.RoleOperator, CreatedAt: now, UpdatedAt: now}))
	ids["service-account"] = "sa-victim0001"
	must("service account", s.CreateServiceAccount(ctx, steward.ServiceAccount{ID: ids["service-account"], TenantID: victim, Name: "ci-" + canary,
		Role: steward.RoleViewer, CreatedAt: now}))
	ids["role"] = "victim-ops"
	must("role", s.CreateCustomRole(ctx, steward.CustomRole{TenantID: victim, Name: steward.Role(ids["role"]), Description: canary,
		Permissions: []steward.Permission{steward.PermDevicesRead}, CreatedAt: now, UpdatedAt: now}))
	return ids
}
