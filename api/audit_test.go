package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/pki"
)

// newAuditEnv is newEnv with the audit log recording.
func newAuditEnv(t *testing.T) (*testEnv, *audit.Log) {
	t.Helper()
	e := newEnv(t)
	kr, err := pki.NewKeyring(bytes.Repeat([]byte{3}, pki.MasterKeySize))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := audit.LoadOrCreateKeys(t.Context(), e.store, kr)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.New(audit.Config{Store: e.store, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	e.withAuditor(l)
	return e, l
}

// withAuditor serves the env's API again with a as its Auditor.
func (e *testEnv) withAuditor(a steward.Auditor) {
	cfg := e.api.cfg
	cfg.Auditor = a
	e.api = New(cfg)
	e.srv.Config.Handler = e.api
	e.http.Transport.(*checkingTransport).api = e.api
}

// findAudit returns the records of tenant's log of action with request ID
// id.
func findAudit(t *testing.T, l *audit.Log, tenant, action, id string) []steward.AuditRecord {
	t.Helper()
	rs, err := l.Search(t.Context(), tenant, steward.AuditFilter{Cursor: -1, Action: action, Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	var out []steward.AuditRecord
	for _, r := range rs {
		if r.RequestID == id {
			out = append(out, r)
		}
	}
	return out
}

// TestAuditEveryRoute sends a request to every state-changing route the
// router serves and checks that each left exactly one record, whatever
// its outcome: the list is the router's own, so a route added later is
// covered without changing the test.
func TestAuditEveryRoute(t *testing.T) {
	t.Parallel()
	e, l := newAuditEnv(t)
	var n int
	for _, rt := range e.api.routes {
		if rt.method == "GET" {
			continue
		}
		n++
		path := rt.path
		for strings.Contains(path, "{") {
			i, j := strings.Index(path, "{"), strings.Index(path, "}")
			path = path[:i] + "x-audit" + path[j+1:]
		}
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			req, err := http.NewRequest(rt.method, e.srv.URL+path, strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+e.system)
			// Not e.http: this walk sends requests the routes refuse, and
			// their documentation is their own tests' business.
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-ID")
			tenant := steward.DefaultTenant
			if rt.perm == public {
				tenant = steward.SystemAuditLog
			}
			rs := findAudit(t, l, tenant, rt.method+" "+rt.path, id)
			if len(rs) != 1 {
				t.Fatalf("status %d left %d records of %s %s with request ID %s, want 1", resp.StatusCode, len(rs), rt.method, rt.path, id)
			}
			r := rs[0]
			want := steward.AuditSuccess
			switch {
			case resp.StatusCode == 401 || resp.StatusCode == 403:
				want = steward.AuditDenied
			case resp.StatusCode >= 400:
				want = steward.AuditFailure
			}
			if r.Outcome != want || r.Remote == "" || r.Detail != fmt.Sprintf("HTTP %d", resp.StatusCode) {
				t.Fatalf("record %+v for status %d, want outcome %s", r, resp.StatusCode, want)
			}
			if rt.perm != public && !strings.HasPrefix(r.Actor, "token:t-") {
				t.Fatalf("actor %q", r.Actor)
			}
			if strings.Contains(rt.path, "{") && !strings.Contains(r.Target, ":x-audit") {
				t.Fatalf("target %q does not name the path's identifier", r.Target)
			}
		})
	}
	if n < 20 {
		t.Fatalf("only %d state-changing routes were found", n)
	}
	for _, tenant := range []string{steward.DefaultTenant, steward.SystemAuditLog} {
		rep, err := l.Verify(t.Context(), tenant)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK {
			t.Fatalf("log %q does not verify: %v", tenant, rep.Problems)
		}
	}
}

// TestAuditAuthFailure records a failed authentication in the system log,
// once, for reads and writes alike.
func TestAuditAuthFailure(t *testing.T) {
	t.Parallel()
	e, l := newAuditEnv(t)
	get := e.call(t, "GET", "/api/v1/devices", "stw_notatoken", nil)
	post := e.call(t, "POST", "/api/v1/devices/d-1/quarantine", "", QuarantineRequest{Reason: "x"})
	for _, c := range []struct {
		r      response
		target string
		detail string
	}{
		{get, "", "GET /api/v1/devices: invalid or revoked token"},
		{post, "device:d-1", "POST /api/v1/devices/{id}/quarantine: missing bearer token"},
	} {
		if c.r.status != http.StatusUnauthorized {
			t.Fatalf("status %d", c.r.status)
		}
		rs := findAudit(t, l, steward.SystemAuditLog, "auth.token", c.r.header.Get("X-Request-ID"))
		if len(rs) != 1 || rs[0].Outcome != steward.AuditDenied || rs[0].Actor != "anonymous" || rs[0].Target != c.target ||
			!strings.HasPrefix(rs[0].Detail, c.detail) {
			t.Fatalf("auth failure records %+v", rs)
		}
	}
	// The refused write left nothing else, in either log.
	for _, tenant := range []string{steward.DefaultTenant, steward.SystemAuditLog} {
		if rs := findAudit(t, l, tenant, "POST /api/v1/devices/{id}/quarantine", post.header.Get("X-Request-ID")); len(rs) != 0 {
			t.Fatalf("a request that failed authentication has a route record: %+v", rs)
		}
	}
}

// TestAuditLost: an action that happened is not undone when its record
// cannot be written, and the loss is logged at error level.
func TestAuditLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.withAuditor(steward.AuditorFunc(func(context.Context, steward.AuditRecord) error { return errors.New("disk full") }))
	e.addDevice(t, steward.DefaultTenant, "d-lost", "gw-100", nil)
	r := e.must(t, http.StatusOK, "POST", "/api/v1/devices/d-lost/quarantine", e.system, QuarantineRequest{Reason: "test"})
	if !strings.Contains(e.logs.String(), "level=ERROR msg=\"AUDIT RECORD LOST") || !strings.Contains(e.logs.String(), r.header.Get("X-Request-ID")) {
		t.Fatalf("no error logged for the lost record:\n%s", e.logs.String())
	}
	// Without a log to read, the audit routes are 503.
	if got := e.call(t, "GET", "/api/v1/audit", e.system, nil).status; got != http.StatusServiceUnavailable {
		t.Fatalf("GET /api/v1/audit with a write-only auditor: %d", got)
	}
}

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	e, _ := newAuditEnv(t)
	for i := range 5 {
		id := fmt.Sprintf("d-audit-%d", i)
		e.addDevice(t, steward.DefaultTenant, id, "gw-100", nil)
		e.must(t, http.StatusOK, "POST", "/api/v1/devices/"+id+"/quarantine", e.system, QuarantineRequest{Reason: "test"})
	}
	e.must(t, http.StatusConflict, "POST", "/api/v1/devices/d-audit-0/quarantine", e.system, QuarantineRequest{Reason: "again"})

	var page AuditPage
	e.must(t, http.StatusOK, "GET", "/api/v1/audit?action="+url.QueryEscape("POST /api/v1/devices/{id}/quarantine")+"&limit=2", e.system, nil).decode(t, &page)
	if len(page.Items) != 2 || page.Items[0].Outcome != steward.AuditFailure || page.Items[0].Target != "device:d-audit-0" || page.NextCursor == "" {
		t.Fatalf("newest first page %+v", page)
	}
	var next AuditPage
	e.must(t, http.StatusOK, "GET", "/api/v1/audit?action=POST*&limit=2&cursor="+page.NextCursor, e.system, nil).decode(t, &next)
	if len(next.Items) != 2 || next.Items[0].Index >= page.Items[1].Index {
		t.Fatalf("second page %+v after %+v", next, page)
	}
	page = AuditPage{}
	e.must(t, http.StatusOK, "GET", "/api/v1/audit?order=asc&outcome=failure&target=device:d-audit-0", e.system, nil).decode(t, &page)
	if len(page.Items) != 1 || page.NextCursor != "" {
		t.Fatalf("filtered page %+v", page)
	}

	var key AuditKey
	e.must(t, http.StatusOK, "GET", "/api/v1/audit/key", e.system, nil).decode(t, &key)
	nv, err := note.NewVerifier(key.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	var cp AuditCheckpoint
	e.must(t, http.StatusOK, "GET", "/api/v1/audit/checkpoint", e.system, nil).decode(t, &cp)
	if cp.Size != 6 || cp.VerifierKey != key.VerifierKey || cp.Origin != "steward-audit/default" || cp.Root == "" {
		t.Fatalf("checkpoint %+v", cp)
	}
	opened, err := audit.OpenCheckpoint(cp.Note, nv)
	if err != nil || opened.Size != 6 || opened.Root.String() != cp.Root {
		t.Fatalf("checkpoint note %+v: %v", opened, err)
	}

	var ip audit.InclusionProof
	e.must(t, http.StatusOK, "GET", "/api/v1/audit/proof/inclusion?index=2&size=4", e.system, nil).decode(t, &ip)
	if err := audit.CheckInclusion(ip, nv); err != nil || ip.Record.Index != 2 {
		t.Fatalf("inclusion proof %+v: %v", ip, err)
	}
	var cproof audit.ConsistencyProof
	e.must(t, http.StatusOK, "GET", "/api/v1/audit/proof/consistency?old=3", e.system, nil).decode(t, &cproof)
	if err := audit.CheckConsistency(cproof, nv, ""); err != nil || cproof.New != 6 || cproof.Old != 3 {
		t.Fatalf("consistency proof %+v: %v", cproof, err)
	}

	var rep audit.Report
	e.must(t, http.StatusOK, "GET", "/api/v1/audit/verify", e.system, nil).decode(t, &rep)
	if !rep.OK || rep.Records < 6 {
		t.Fatalf("verify %+v", rep)
	}
	exp := e.raw(t, "GET", "/api/v1/audit/export", e.system, "", nil)
	if exp.status != http.StatusOK || exp.header.Get("Content-Type") != "application/jsonl" {
		t.Fatalf("export: %d %s", exp.status, exp.header.Get("Content-Type"))
	}
	rep, err = audit.VerifyExport(bytes.NewReader(exp.body), key.VerifierKey)
	if err != nil || !rep.OK || rep.Records < 6 {
		t.Fatalf("export verify %+v: %v", rep, err)
	}

	// Another tenant sees its own log only, and not the system log.
	other := e.newTenant(t, "audit-other")
	page = AuditPage{}
	e.must(t, http.StatusOK, "GET", "/api/v1/audit", other, nil).decode(t, &page)
	if len(page.Items) != 0 {
		t.Fatalf("another tenant sees %+v", page.Items)
	}
	e.must(t, http.StatusForbidden, "GET", "/api/v1/audit?log=system", other, nil)
	e.must(t, http.StatusOK, "GET", "/api/v1/audit?log=system", e.system, nil)
	e.must(t, http.StatusNotFound, "GET", "/api/v1/audit/checkpoint", other, nil)

	for _, bad := range []string{
		"/api/v1/audit?order=sideways", "/api/v1/audit?cursor=-3", "/api/v1/audit?from=yesterday", "/api/v1/audit?outcome=maybe",
		"/api/v1/audit?limit=5000", "/api/v1/audit?colour=red", "/api/v1/audit?log=acme",
		"/api/v1/audit/proof/inclusion", "/api/v1/audit/proof/inclusion?index=1000", "/api/v1/audit/proof/inclusion?index=0&size=99",
		"/api/v1/audit/proof/consistency", "/api/v1/audit/proof/consistency?old=0", "/api/v1/audit/proof/consistency?old=1000",
	} {
		if r := e.call(t, "GET", bad, e.system, nil); r.status != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400: %s", bad, r.status, r.body)
		}
	}
}
