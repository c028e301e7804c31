package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/audit"
)

// AuditLog serves the audit log's reads (audit.Log does). When the
// Config's Auditor is one, /api/v1/audit is served; otherwise those routes
// are 503.
type AuditLog interface {
	VerifierKey() string
	Search(ctx context.Context, tenant string, f steward.AuditFilter) ([]steward.AuditRecord, error)
	Checkpoint(ctx context.Context, tenant string) (steward.AuditCheckpoint, error)
	Export(ctx context.Context, tenant string, w io.Writer) error
	InclusionProof(ctx context.Context, tenant string, index, size int64) (audit.InclusionProof, error)
	ConsistencyProof(ctx context.Context, tenant string, oldSize, newSize int64) (audit.ConsistencyProof, error)
	Verify(ctx context.Context, tenant string) (audit.Report, error)
	Retention(ctx context.Context, tenant string) (audit.RetentionPolicy, error)
	SetRetention(ctx context.Context, c audit.RetentionChange) (audit.RetentionPolicy, *steward.ApprovalRequest, error)
}

// AuditRetentionRequest sets a tenant's audit log retention period.
type AuditRetentionRequest struct {
	// PeriodDays is how many days records keep their bodies; 0 keeps them
	// for good. At least audit.MinRetention (365 days) otherwise.
	PeriodDays *int `json:"period_days"`
}

// AuditPage is a page of audit records.
type AuditPage struct {
	Items []steward.AuditRecord `json:"items"`
	// NextCursor, when set, is the cursor that fetches the next page.
	NextCursor string `json:"next_cursor,omitempty"`
}

// AuditCheckpoint is the latest signed checkpoint of a log, parsed.
type AuditCheckpoint struct {
	Log         string    `json:"log"`
	Origin      string    `json:"origin"`
	Size        int64     `json:"size"`
	Root        string    `json:"root"`
	SignedAt    time.Time `json:"signed_at"`
	Note        string    `json:"note"`
	VerifierKey string    `json:"verifier_key"`
}

// AuditKey is the public key that checks the audit log's checkpoints.
type AuditKey struct {
	Name        string `json:"name"`
	VerifierKey string `json:"verifier_key"`
}

func (s *Server) registerAudit() {
	s.handle("GET", "/api/v1/audit", steward.PermAuditRead, s.searchAudit)
	s.handle("GET", "/api/v1/audit/export", steward.PermAuditRead, s.exportAudit)
	s.handle("GET", "/api/v1/audit/checkpoint", steward.PermAuditRead, s.auditCheckpoint)
	s.handle("GET", "/api/v1/audit/proof/inclusion", steward.PermAuditRead, s.auditInclusion)
	s.handle("GET", "/api/v1/audit/proof/consistency", steward.PermAuditRead, s.auditConsistency)
	s.handle("GET", "/api/v1/audit/verify", steward.PermAuditRead, s.verifyAudit)
	s.handle("GET", "/api/v1/audit/key", steward.PermAuditRead, s.auditKey)
	s.handle("GET", "/api/v1/audit/retention", steward.PermAuditRead, s.auditRetention)
	// Set by whoever administers tenants, not by the tenant's own admins:
	// the log that holds their actions is governed apart from them.
	s.handle("PUT", "/api/v1/tenants/{id}/audit-retention", steward.PermTenantsAdmin, s.setAuditRetention)
}

// auditReader returns the log to read and the tenant whose log the request
// asks for: the caller's own, or with log=system the system log, which
// only a caller who administers tenants may read.
func (s *Server) auditReader(q url.Values, p principal) (AuditLog, string, error) {
	l, ok := s.cfg.Auditor.(AuditLog)
	if !ok {
		return nil, "", steward.Errorf(steward.CodeUnavailable, "the audit log is not enabled on this node")
	}
	switch q.Get("log") {
	case "":
		return l, p.tenantID, nil
	case "system":
		if !p.can(steward.PermTenantsAdmin) {
			return nil, "", steward.Errorf(steward.CodePermissionDenied, "the system audit log needs the permission %s", steward.PermTenantsAdmin)
		}
		return l, steward.SystemAuditLog, nil
	default:
		return nil, "", invalidf("log must be system or absent (the caller's tenant), not %q", q.Get("log"))
	}
}

// auditLogOf reads a request to the audit log: its query, which may hold
// the given parameters only, and the log and tenant it asks for
// (auditReader).
func (s *Server) auditLogOf(r *http.Request, p principal, params ...string) (url.Values, AuditLog, string, error) {
	q, err := queryParams(r, params...)
	if err != nil {
		return nil, nil, "", err
	}
	l, tenant, err := s.auditReader(q, p)
	return q, l, tenant, err
}

// int64Param reads an optional whole number of at least lowest; def when
// absent.
func int64Param(q url.Values, name string, lowest, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lowest {
		return 0, invalidf("%s must be a whole number of at least %d, not %q", name, lowest, v)
	}
	return n, nil
}

func (s *Server) searchAudit(w http.ResponseWriter, r *http.Request, p principal) error {
	q, l, tenant, err := s.auditLogOf(r, p, "log", "actor", "action", "target", "outcome", "from", "to", "order", "cursor", "limit")
	if err != nil {
		return err
	}
	f := steward.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Target: q.Get("target"), Outcome: q.Get("outcome")}
	if f.From, err = timeParam(q, "from"); err != nil {
		return err
	}
	if f.To, err = timeParam(q, "to"); err != nil {
		return err
	}
	switch q.Get("order") {
	case "", "desc":
		f.Desc = true
	case "asc":
	default:
		return invalidf("order must be asc or desc, not %q", q.Get("order"))
	}
	if f.Cursor, err = int64Param(q, "cursor", 0, steward.NoAuditCursor); err != nil {
		return err
	}
	if f.Limit, err = limitParam(q); err != nil {
		return err
	}
	recs, err := l.Search(r.Context(), tenant, f)
	if err != nil {
		return err
	}
	page := AuditPage{Items: recs}
	if page.Items == nil {
		page.Items = []steward.AuditRecord{}
	}
	limit := f.Limit
	if limit == 0 {
		limit = 100
	}
	if len(recs) == limit {
		page.NextCursor = strconv.FormatInt(recs[len(recs)-1].Index, 10)
	}
	return writeJSON(w, http.StatusOK, page)
}

func (s *Server) exportAudit(w http.ResponseWriter, r *http.Request, p principal) error {
	_, l, tenant, err := s.auditLogOf(r, p, "log")
	if err != nil {
		return err
	}
	name := "audit-" + tenant + ".jsonl"
	if tenant == steward.SystemAuditLog {
		name = "audit-system.jsonl"
	}
	w.Header().Set("Content-Type", "application/jsonl")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	// The export streams: an error after the first bytes can only cut it
	// short, which VerifyExport reports as removed records.
	if err := l.Export(r.Context(), tenant, w); err != nil {
		if rec, ok := w.(*statusRecorder); ok && rec.status != 0 {
			s.log.Error("audit export cut short", "request_id", requestIDFrom(r.Context()), "log", tenant, "err", err)
			return nil
		}
		return err
	}
	return nil
}

func (s *Server) auditCheckpoint(w http.ResponseWriter, r *http.Request, p principal) error {
	_, l, tenant, err := s.auditLogOf(r, p, "log")
	if err != nil {
		return err
	}
	cp, err := l.Checkpoint(r.Context(), tenant)
	if err != nil {
		return err
	}
	out := AuditCheckpoint{Log: tenant, Origin: audit.Origin(tenant), Size: cp.Size, SignedAt: cp.CreatedAt, Note: cp.Note, VerifierKey: l.VerifierKey()}
	// The root hash is the third line of the note's text.
	if lines := strings.SplitN(cp.Note, "\n", 4); len(lines) >= 3 {
		out.Root = lines[2]
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) auditInclusion(w http.ResponseWriter, r *http.Request, p principal) error {
	q, l, tenant, err := s.auditLogOf(r, p, "log", "index", "size")
	if err != nil {
		return err
	}
	if q.Get("index") == "" {
		return invalidf("index is required")
	}
	index, err := int64Param(q, "index", 0, 0)
	if err != nil {
		return err
	}
	size, err := int64Param(q, "size", 1, -1)
	if err != nil {
		return err
	}
	proof, err := l.InclusionProof(r.Context(), tenant, index, size)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, proof)
}

func (s *Server) auditConsistency(w http.ResponseWriter, r *http.Request, p principal) error {
	q, l, tenant, err := s.auditLogOf(r, p, "log", "old", "new")
	if err != nil {
		return err
	}
	if q.Get("old") == "" {
		return invalidf("old is required")
	}
	oldSize, err := int64Param(q, "old", 1, 0)
	if err != nil {
		return err
	}
	newSize, err := int64Param(q, "new", 1, -1)
	if err != nil {
		return err
	}
	proof, err := l.ConsistencyProof(r.Context(), tenant, oldSize, newSize)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, proof)
}

func (s *Server) verifyAudit(w http.ResponseWriter, r *http.Request, p principal) error {
	_, l, tenant, err := s.auditLogOf(r, p, "log")
	if err != nil {
		return err
	}
	rep, err := l.Verify(r.Context(), tenant)
	if err != nil {
		return err
	}
	if !rep.OK {
		s.log.Error("audit log verification failed", "request_id", requestIDFrom(r.Context()), "log", tenant,
			"first_bad", rep.FirstBad, "problem", rep.Problems[0])
	}
	return writeJSON(w, http.StatusOK, rep)
}

func (s *Server) auditRetention(w http.ResponseWriter, r *http.Request, p principal) error {
	_, l, tenant, err := s.auditLogOf(r, p)
	if err != nil {
		return err
	}
	pol, err := l.Retention(r.Context(), tenant)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, pol)
}

// setAuditRetention sets a tenant's audit log retention: 200 with it, or
// 202 with the approval request an approval policy asks for (then PUT
// again with ?approval=ID).
func (s *Server) setAuditRetention(w http.ResponseWriter, r *http.Request, p principal) error {
	q, l, _, err := s.auditLogOf(r, p, "approval")
	if err != nil {
		return err
	}
	var req AuditRetentionRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	const maxDays = int(steward.MaxRetention / (24 * time.Hour))
	if req.PeriodDays == nil || *req.PeriodDays < 0 || *req.PeriodDays > maxDays {
		return invalidf("period_days is required: 0 (for good) or %d to %d days", int(audit.MinRetention/(24*time.Hour)), maxDays)
	}
	tenant := r.PathValue("id")
	if _, err := s.cfg.Store.GetTenant(r.Context(), tenant); err != nil {
		return err
	}
	pol, pending, err := l.SetRetention(r.Context(), audit.RetentionChange{Tenant: tenant, Period: time.Duration(*req.PeriodDays) * 24 * time.Hour,
		Actor: p.actor(), ActorTenant: p.tenantID, ApprovalID: q.Get("approval"), Remote: clientKey(r), RequestID: requestIDFrom(r.Context())})
	if err != nil {
		return err
	}
	if pending != nil {
		w.Header().Set("Location", "/api/v1/approvals/"+pending.ID)
		return writeJSON(w, http.StatusAccepted, pending)
	}
	return writeJSON(w, http.StatusOK, pol)
}

func (s *Server) auditKey(w http.ResponseWriter, r *http.Request, p principal) error {
	_, l, _, err := s.auditLogOf(r, p)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, AuditKey{Name: audit.KeyName, VerifierKey: l.VerifierKey()})
}

// --- recording every state-changing request

// auditTimeout bounds the write of a request's audit record, which runs
// even when the client has gone.
const auditTimeout = 10 * time.Second

// auditRequest records a request to a state-changing route once its
// handler is done: who (the principal), what (the method and route
// pattern), on what (the path's identifiers, or the Location of what it
// created), from where, and how it ended (from the status). A request
// whose authentication failed was recorded by auditAuthFailure.
func (s *Server) auditRequest(r *http.Request, method, pattern string, perm steward.Permission, p *principal, rec *statusRecorder) {
	if s.cfg.Auditor == nil || perm != public && p.tokenID == "" && p.session == "" {
		return
	}
	outcome := steward.AuditSuccess
	switch status := rec.status; {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		outcome = steward.AuditDenied
	case status == 0 || status >= 400:
		outcome = steward.AuditFailure
	}
	ar := steward.AuditRecord{TenantID: p.tenantID, Actor: p.actor(), Action: method + " " + pattern,
		Target: auditTarget(r, pattern, rec.Header().Get("Location")), Outcome: outcome,
		Remote: clientKey(r), RequestID: requestIDFrom(r.Context()), Detail: "HTTP " + strconv.Itoa(rec.status)}
	if perm == public {
		ar.TenantID, ar.Actor = steward.SystemAuditLog, "anonymous"
	}
	s.record(r, ar)
}

// auditAuthFailure records a failed authentication in the system log (the
// tenant is not known). Refusals of the failure limiter are not recorded:
// they are the flood it holds back.
func (s *Server) auditAuthFailure(r *http.Request, method, pattern string, err error) {
	if s.cfg.Auditor == nil || steward.ErrorCode(err) != steward.CodeUnauthenticated {
		return
	}
	s.record(r, steward.AuditRecord{TenantID: steward.SystemAuditLog, Actor: "anonymous", Action: "auth.token",
		Target: auditTarget(r, pattern, ""), Outcome: steward.AuditDenied, Remote: clientKey(r),
		RequestID: requestIDFrom(r.Context()), Detail: method + " " + pattern + ": " + steward.ErrorMessage(err)})
}

// record writes ar; the action has happened, so a failure is logged loudly
// rather than returned.
func (s *Server) record(r *http.Request, ar steward.AuditRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.cfg.Auditor.Record(ctx, ar); err != nil {
		s.log.Error("AUDIT RECORD LOST: the action happened but is not in the audit log", "request_id", ar.RequestID,
			"tenant", ar.TenantID, "actor", ar.Actor, "action", ar.Action, "target", ar.Target, "outcome", ar.Outcome, "err", err)
	}
}

// auditTarget names what a request acted on, "kind:ID", from the
// pattern's wildcards ("/api/v1/devices/{id}/quarantine" → "device:ID"),
// or, for a route without one, from the Location of what it created.
func auditTarget(r *http.Request, pattern, location string) string {
	segs := strings.Split(strings.Trim(pattern, "/"), "/")
	var parts []string
	for i, seg := range segs {
		if !strings.HasPrefix(seg, "{") {
			continue
		}
		name := strings.Trim(seg, "{}.")
		kind := "resource"
		if i > 0 {
			kind = singular(segs[i-1])
		}
		parts = append(parts, kind+":"+r.PathValue(name))
	}
	if len(parts) == 0 && location != "" {
		if u, err := url.Parse(location); err == nil {
			ls := strings.Split(strings.Trim(u.Path, "/"), "/")
			if n := len(ls); n >= 2 && len(ls) == len(segs)+1 {
				id, _ := url.PathUnescape(ls[n-1])
				parts = append(parts, singular(ls[n-2])+":"+id)
			}
		}
	}
	return strings.Join(parts, "/")
}

// singular turns a collection's path segment into a kind:
// "notification-policies" → "notification-policy", "devices" → "device".
func singular(seg string) string {
	if s, ok := strings.CutSuffix(seg, "ies"); ok {
		return s + "y"
	}
	return strings.TrimSuffix(seg, "s")
}
