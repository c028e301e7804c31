package server

import (
	"bytes"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, to edit PostgreSQL behind the node's back
	"golang.org/x/mod/sumdb/note"
	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, to edit the node's file behind its back

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
	"github.com/steward-iot/steward/client"
	"github.com/steward-iot/steward/internal/pgtest"
	"github.com/steward-iot/steward/internal/testpki"
)

// TestAuditTamper runs a node, acts through its API, then edits, deletes
// and swaps rows of the audit log directly in its database (a second
// connection, behind the node's back) and checks that verification, online
// through the API and offline on an export, names the tampering and its
// first bad index. On PostgreSQL too when STEWARD_TEST_POSTGRES is set.
func TestAuditTamper(t *testing.T) {
	t.Parallel()
	t.Run("sqlite", func(t *testing.T) {
		t.Parallel()
		n := startNode(t)
		db, err := sql.Open("sqlite", "file:"+filepath.Join(n.cfg.DataDir, "steward.db")+"?_pragma=busy_timeout(10000)")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		auditTamper(t, n, db, func(q string) string { return q })
	})
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		base, ok := pgtest.URL()
		if !ok {
			t.Skip("STEWARD_TEST_POSTGRES is not set: skipping the PostgreSQL audit tamper test")
		}
		_, u := pgtest.Schema(t, base, "audite2e_")
		n := startNode(t, func(c *Config) { c.StoreURL = u })
		db, err := sql.Open("pgx", u)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		auditTamper(t, n, db, func(q string) string {
			for i := 1; strings.Contains(q, "?"); i++ {
				q = strings.Replace(q, "?", fmt.Sprintf("$%d", i), 1)
			}
			return q
		})
	})
}

func auditTamper(t *testing.T, n *node, db *sql.DB, rebind func(string) string) {
	ctx := t.Context()
	c := n.admin
	// Actions: tokens made and deleted, a tenant, a refused quarantine, a
	// failed authentication.
	var ids []string
	for i := range 3 {
		tok, err := c.CreateToken(ctx, fmt.Sprintf("audit %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, tok.ID)
	}
	if err := c.DeleteToken(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Quarantine(ctx, "d-nosuchdevice", "test"); !steward.IsNotFound(err) {
		t.Fatalf("quarantine of an unknown device: %v", err)
	}
	if _, err := c.CreateTenant(ctx, "audit-e2e", ""); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteToken(ctx, ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, _, err := client.New(n.APIURL(), "stw_wrong", nil).ListDevices(ctx, steward.DeviceQuery{}); err == nil {
		t.Fatal("a wrong token was accepted")
	}

	recs, _, err := c.SearchAudit(ctx, client.AuditQuery{Asc: true, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 7 || recs[0].Action != "POST /api/v1/tokens" || recs[0].Target != "token:"+ids[0] ||
		recs[3].Target != "token:"+ids[0] || recs[4].Outcome != steward.AuditFailure || recs[4].Target != "device:d-nosuchdevice" ||
		recs[5].Action != "POST /api/v1/tenants" {
		t.Fatalf("records %+v", recs)
	}
	sys, _, err := c.SearchAudit(ctx, client.AuditQuery{System: true, Action: "auth.token"})
	if err != nil || len(sys) != 1 || sys[0].Outcome != steward.AuditDenied {
		t.Fatalf("system log %+v: %v", sys, err)
	}
	vkey, err := c.AuditKey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	kept, err := c.AuditCheckpoint(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	wantClean(t, c, vkey)

	exec := func(q string, args ...any) {
		t.Helper()
		res, err := db.ExecContext(ctx, rebind(q), args...)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if k, _ := res.RowsAffected(); k != 1 {
			t.Fatalf("%s changed %d rows", q, k)
		}
	}
	data := func(i int) []byte {
		t.Helper()
		var d []byte
		if err := db.QueryRowContext(ctx, rebind(`SELECT data FROM audit_records WHERE tenant_id = 'default' AND idx = ?`), i).Scan(&d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	// Record 4 (the refused quarantine) as stored, to put back after removing it.
	var row4 [8]any
	if err := db.QueryRowContext(ctx, rebind(`SELECT actor, action, target, outcome, request_id, at, data, hashes
		FROM audit_records WHERE tenant_id = 'default' AND idx = 4`)).Scan(&row4[0], &row4[1], &row4[2], &row4[3], &row4[4], &row4[5], &row4[6], &row4[7]); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		tamper   func()
		restore  func()
		firstBad int64
		online   string // what the server's verification says
		offline  string // what the export's says
	}{
		{"changed", func() {
			// Hide the failed attempt: make it a success.
			exec(`UPDATE audit_records SET data = ?, outcome = 'success' WHERE tenant_id = 'default' AND idx = 4`,
				bytes.Replace(data(4), []byte(`"outcome":"failure"`), []byte(`"outcome":"success"`), 1))
		}, func() {
			exec(`UPDATE audit_records SET data = ?, outcome = 'failure' WHERE tenant_id = 'default' AND idx = 4`,
				bytes.Replace(data(4), []byte(`"outcome":"success"`), []byte(`"outcome":"failure"`), 1))
		}, 4, "record 4 does not match the checkpoint", "record 4 does not match the checkpoint"},
		{"removed", func() {
			exec(`DELETE FROM audit_records WHERE tenant_id = 'default' AND idx = 4`)
		}, func() {
			exec(`INSERT INTO audit_records (tenant_id, idx, actor, action, target, outcome, request_id, at, data, hashes)
				VALUES ('default', 4, ?, ?, ?, ?, ?, ?, ?, ?)`, row4[:]...)
		}, 4, "record 4 is missing", "position 4 holds the record of index 5"},
		{"swapped", func() {
			d1, d5 := data(1), data(5)
			exec(`UPDATE audit_records SET data = ? WHERE tenant_id = 'default' AND idx = 1`, d5)
			exec(`UPDATE audit_records SET data = ? WHERE tenant_id = 'default' AND idx = 5`, d1)
		}, func() {
			d1, d5 := data(1), data(5)
			exec(`UPDATE audit_records SET data = ? WHERE tenant_id = 'default' AND idx = 1`, d5)
			exec(`UPDATE audit_records SET data = ? WHERE tenant_id = 'default' AND idx = 5`, d1)
		}, 1, "position 1 holds the record of index 5", "position 1 holds the record of index 5"},
	}
	for _, tc := range tests {
		tc.tamper()
		rep, err := c.VerifyAudit(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, tc.name+" (online)", rep, tc.firstBad, tc.online)
		var buf bytes.Buffer
		if err := c.ExportAudit(ctx, false, &buf); err != nil {
			t.Fatal(err)
		}
		rep, err = audit.VerifyExport(&buf, vkey)
		if err != nil {
			t.Fatal(err)
		}
		checkReport(t, tc.name+" (offline)", rep, tc.firstBad, tc.offline)
		tc.restore()
		wantClean(t, c, vkey)
	}

	// A log rewritten by someone holding the signing key (here: the node
	// itself, after its records were deleted) verifies on its own; the
	// checkpoint kept before catches it.
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_records WHERE tenant_id = 'default'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_checkpoints WHERE tenant_id = 'default'`); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_logs WHERE tenant_id = 'default'`); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		if err := n.Audit.Record(ctx, steward.AuditRecord{TenantID: steward.DefaultTenant, Actor: "system:rewriter",
			Action: "nothing.happened", Outcome: steward.AuditSuccess, Detail: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	wantClean(t, c, vkey)
	proof, err := c.AuditConsistencyProof(ctx, false, kept.Size, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckConsistency(proof, verifier, kept.Note); err == nil {
		t.Fatal("a rewritten log is consistent with the checkpoint kept before it was rewritten")
	}
}

// wantClean fails unless the log verifies online and as an export.
func wantClean(t *testing.T, c *client.Client, vkey string) {
	t.Helper()
	rep, err := c.VerifyAudit(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("the log does not verify: %q", rep.Problems)
	}
	var buf bytes.Buffer
	if err := c.ExportAudit(t.Context(), false, &buf); err != nil {
		t.Fatal(err)
	}
	if rep, err = audit.VerifyExport(&buf, vkey); err != nil || !rep.OK {
		t.Fatalf("the export does not verify: %+v %v", rep, err)
	}
}

func checkReport(t *testing.T, what string, rep audit.Report, firstBad int64, says string) {
	t.Helper()
	if rep.OK || rep.FirstBad == nil || *rep.FirstBad != firstBad {
		t.Fatalf("%s: report %+v, want the first bad index %d", what, rep, firstBad)
	}
	if !strings.Contains(strings.Join(rep.Problems, "\n"), says) {
		t.Fatalf("%s: no problem says %q: %q", what, says, rep.Problems)
	}
	t.Logf("%s: %s", what, rep.Problems[0])
}

// TestAuditSystemActions: what devices and services do, not only what the
// API is asked, lands in the audit log: an enrollment, a suspected clone,
// a quarantine and its release with the states before and after.
func TestAuditSystemActions(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	ctx := t.Context()
	mfr := testpki.NewCA(t, "Acme Devices")
	n.registerGroup(t, n.admin, "gateways", mfr, nil)
	factory := mfr.Factory(t, "SN-AUDIT-1")
	// The quarantine policy's suspected_clone rule would quarantine the
	// device on its own, racing the operator's quarantine below; its audit
	// is TestQuarantinePolicy's.
	if _, err := n.admin.SetQuarantinePolicy(ctx, []byte(`{"rules": {"suspected_clone": {"enabled": false}}}`)); err != nil {
		t.Fatal(err)
	}
	_, csr := newCSR(t)
	cert, err := n.est(&factory).SimpleEnroll(ctx, csr)
	if err != nil {
		t.Fatal(err)
	}
	id := cert.Subject.CommonName
	_, otherCSR := newCSR(t)
	if _, err := n.est(&factory).SimpleEnroll(ctx, otherCSR); err == nil {
		t.Fatal("a clone enrolled")
	}
	if _, err := n.admin.Quarantine(ctx, id, "audit test"); err != nil {
		t.Fatal(err)
	}
	if _, err := n.admin.Release(ctx, id); err != nil {
		t.Fatal(err)
	}
	recs, _, err := n.admin.SearchAudit(ctx, client.AuditQuery{Target: "device:" + id, Asc: true})
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, r := range recs {
		actions = append(actions, r.Actor+" "+r.Action+" "+r.Outcome)
	}
	want := []string{
		"device:" + id + " device.enroll success",
		"device:" + id + " security.suspected_clone denied",
		// The refused request itself, with its reason.
		"device:" + id + " device.enroll denied",
		// Registered in the service's transaction, then the API's record
		// of the request once it is answered.
		"token:", "token:", "token:", "token:",
	}
	if len(actions) != len(want) {
		t.Fatalf("records of the device: %q", actions)
	}
	for i, w := range want {
		if !strings.HasPrefix(actions[i], w) {
			t.Fatalf("record %d is %q, want %q… (all: %q)", i, actions[i], w, actions)
		}
	}
	for _, a := range []string{"device.quarantine success", "POST /api/v1/devices/{id}/quarantine success", "device.release success", "POST /api/v1/devices/{id}/release success"} {
		if !strings.Contains(strings.Join(actions, "\n"), a) {
			t.Fatalf("no %q record: %q", a, actions)
		}
	}
	rep, err := n.admin.VerifyAudit(ctx, false)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %+v %v", rep, err)
	}
}
