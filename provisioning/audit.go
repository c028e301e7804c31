package provisioning

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// auditEnroll records a device's first enrollment in tx, the transaction
// that creates it.
func (s *Service) auditEnroll(ctx context.Context, tx steward.Store, d steward.Device, g steward.EnrollmentGroup, cert *x509.Certificate, remote string) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	after, err := json.Marshal(map[string]any{"state": d.State, "group": g.ID, "serial": d.Serial,
		"certificate": cert.SerialNumber.Text(16), "not_after": cert.NotAfter.UTC()})
	if err != nil {
		return err
	}
	err = s.cfg.Auditor.RecordIn(ctx, tx, steward.AuditRecord{TenantID: d.TenantID, Actor: "device:" + d.ID, Action: "device.enroll",
		Target: "device:" + d.ID, Outcome: steward.AuditSuccess, Remote: remote, Detail: "enrolled through group " + g.Name, After: after, At: d.CreatedAt})
	if err != nil {
		return fmt.Errorf("audit enrollment: %w", err)
	}
	return nil
}

// Audit actions of EST requests.
const (
	actionEnroll      = "device.enroll"              // simpleenroll: a first enrollment, or its refusal
	actionRenew       = "device.certificate.renew"   // simplereenroll with the current certificate
	actionReissue     = "device.certificate.reissue" // simpleenroll of a known identity whose certificates all expired
	actionReprovision = "device.reprovision"         // simpleenroll after a transfer: provisioned again
)

// auditIssue records a certificate issued to an existing device in tx, the
// transaction that stores it: the certificate it had before (the newest
// one) and the new one.
func (s *Service) auditIssue(ctx context.Context, tx steward.Store, d steward.Device, prev *steward.Certificate, cert *x509.Certificate, keyID, action, remote string) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	after, err := json.Marshal(map[string]any{"certificate": cert.SerialNumber.Text(16), "not_after": cert.NotAfter.UTC(), "key": keyID})
	if err != nil {
		return err
	}
	r := steward.AuditRecord{TenantID: d.TenantID, Actor: "device:" + d.ID, Action: action, Target: "device:" + d.ID,
		Outcome: steward.AuditSuccess, Remote: remote, After: after, Detail: "certificate " + cert.SerialNumber.Text(16) + " issued"}
	if prev != nil {
		if r.Before, err = json.Marshal(map[string]any{"certificate": prev.Serial, "not_after": prev.NotAfter.UTC(), "key": prev.KeyID}); err != nil {
			return err
		}
		if prev.KeyID != keyID {
			r.Detail += " for a new key"
		}
	}
	if err := s.cfg.Auditor.RecordIn(ctx, tx, r); err != nil {
		return fmt.Errorf("audit certificate issuance: %w", err)
	}
	return nil
}

// refusal is who a refused EST request came from, as far as it was learnt
// before the refusal: the tenant and device once known, the factory
// serial (or certificate CN) it claimed otherwise.
type refusal struct {
	tenant, device, factory string
}

// auditRefusal records an EST request that did not get a certificate:
// action is what it asked for, err why it was refused. It goes through
// the refusal aggregation, as a device retrying in a loop would otherwise
// write a record per attempt.
func (s *Service) auditRefusal(ctx context.Context, action string, who refusal, remote string, err error) {
	outcome := steward.AuditFailure
	switch steward.ErrorCode(err) {
	case steward.CodeUnauthenticated, steward.CodePermissionDenied, steward.CodeInvalid:
		outcome = steward.AuditDenied
	}
	r := steward.AuditRecord{TenantID: who.tenant, Actor: "anonymous", Action: action, Outcome: outcome, Remote: remote,
		Detail: "refused: " + steward.ErrorMessage(err)}
	switch {
	case who.tenant == "":
		// Nothing vouches for the identity claimed, and a client can claim
		// a new one at every attempt: such refusals are aggregated by the
		// address they come from, the identity kept in the detail.
		host, _, herr := net.SplitHostPort(remote)
		if herr != nil {
			host = remote
		}
		r.Target = "remote:" + host
		if who.factory != "" {
			r.Detail = "claimed identity " + strconv.Quote(steward.Truncate(who.factory, 200)) + " " + r.Detail
		}
	case who.device != "":
		r.Actor, r.Target = "device:"+who.device, "device:"+who.device
	case who.factory != "":
		r.Target = "factory:" + steward.Truncate(who.factory, 200)
	}
	s.refusals.add(ctx, r)
}

// auditSecurity records a security event in the audit log: in its
// tenant's log, or the system log when no tenant could be named. Refused
// enrollments are left out: the refused request itself is recorded
// (auditRefusal) with its reason.
func (s *Service) auditSecurity(ctx context.Context, e steward.SecurityEvent) {
	if e.Kind == steward.SecEnrollRefused {
		return
	}
	r := steward.AuditRecord{TenantID: e.TenantID, Actor: "device:" + e.DeviceID, Action: "security." + string(e.Kind),
		Target: "device:" + e.DeviceID, Outcome: steward.AuditDenied, Remote: e.Remote, Detail: e.Detail, At: e.At}
	if e.DeviceID == "" {
		r.Actor, r.Target = "anonymous", ""
	}
	s.refusals.add(ctx, r)
}

// DefaultRefusalWindow is how long refusals of one kind from one device are
// folded into one audit record.
const DefaultRefusalWindow = 5 * time.Minute

// maxRefusalKeys bounds the windows open at once; past it, refusals of a
// tenant and action from further devices share one window, so that a
// flood from many forged identities is still a bounded number of records.
const maxRefusalKeys = 4096

// refusalKey is what refusals are aggregated by: the log, the action and
// who did it to what (the device, or the identity it claimed).
type refusalKey struct {
	tenant, action, actor, target string
}

// refusalWindow counts the refusals of one key after the first, which was
// recorded at once.
type refusalWindow struct {
	opened      time.Time
	count       int
	first, last time.Time
	remote      string
	detail      string
}

// refusalAudit aggregates refused device-plane actions (security events
// and refused EST requests) before they reach the audit log: the first
// refusal of a device and action in a window is recorded at once, with
// "count": 1; the ones after it in the window are counted, and when the
// window closes one record says how many there were, the first and last
// time, and the last one's address and detail. A device refused in a loop
// thus writes at most two records per window however fast it tries.
type refusalAudit struct {
	svc     *Service
	window  time.Duration
	maxKeys int // maxRefusalKeys; a field for tests

	mu    sync.Mutex
	open  map[refusalKey]*refusalWindow
	swept time.Time // the last sweep of every window
}

// add records r, or counts it in its open window.
func (a *refusalAudit) add(ctx context.Context, r steward.AuditRecord) {
	if a.svc.cfg.Auditor == nil {
		return
	}
	now := a.svc.cfg.Clock.Now()
	if r.At.IsZero() {
		r.At = now
	}
	key := refusalKey{tenant: r.TenantID, action: r.Action, actor: r.Actor, target: r.Target}
	a.mu.Lock()
	var due []steward.AuditRecord
	// Sweeping every window at every refusal would cost a flood dearly;
	// a key's own ended window is closed below, the others at most every
	// tenth of a window (and by RunRefusalAudit).
	if now.Sub(a.swept) >= a.window/10 {
		due, a.swept = a.closeDue(now), now
	}
	w, ok := a.current(key, now, &due)
	if !ok && len(a.open) >= a.maxKeys {
		key.actor, key.target = "anonymous", "*"
		w, ok = a.current(key, now, &due)
	}
	if ok {
		w.count++
		if w.first.IsZero() {
			w.first = r.At
		}
		w.last, w.remote, w.detail = r.At, r.Remote, r.Detail
		a.mu.Unlock()
		a.write(ctx, due)
		return
	}
	a.open[key] = &refusalWindow{opened: now}
	a.mu.Unlock()
	a.write(ctx, due)
	r.After = countState(1, r.At, r.At)
	if key.target == "*" {
		r.Detail = "from more devices than the aggregation tracks; " + r.Detail
		r.Actor, r.Target = key.actor, key.target
	}
	a.record(ctx, r)
}

// current returns key's window if it is still open at now; an ended one
// is removed and its summary added to due. The caller holds a.mu.
func (a *refusalAudit) current(key refusalKey, now time.Time, due *[]steward.AuditRecord) (*refusalWindow, bool) {
	w, ok := a.open[key]
	if !ok || now.Sub(w.opened) < a.window {
		return w, ok
	}
	delete(a.open, key)
	if w.count > 0 {
		*due = append(*due, a.summary(key, w))
	}
	return nil, false
}

// closeDue removes the windows that ended by now and returns the records
// that sum them up. The caller holds a.mu.
func (a *refusalAudit) closeDue(now time.Time) []steward.AuditRecord {
	var out []steward.AuditRecord
	for k, w := range a.open {
		if now.Sub(w.opened) < a.window {
			continue
		}
		delete(a.open, k)
		if w.count > 0 {
			out = append(out, a.summary(k, w))
		}
	}
	return out
}

// summary is the record of the refusals a window counted.
func (a *refusalAudit) summary(k refusalKey, w *refusalWindow) steward.AuditRecord {
	return steward.AuditRecord{TenantID: k.tenant, Actor: k.actor, Action: k.action, Target: k.target, Outcome: steward.AuditDenied,
		Remote: w.remote, At: w.last, After: countState(w.count, w.first, w.last),
		Detail: steward.Truncate(fmt.Sprintf("%d more times from %s to %s (aggregated: one record per device and kind per %s); the last: %s",
			w.count, w.first.UTC().Format(time.RFC3339), w.last.UTC().Format(time.RFC3339), a.window, w.detail), 200)}
}

// countState is the After of an aggregated record.
func countState(n int, first, last time.Time) json.RawMessage {
	b, _ := json.Marshal(map[string]any{"count": n, "first": first.UTC(), "last": last.UTC()})
	return b
}

// write records recs one by one.
func (a *refusalAudit) write(ctx context.Context, recs []steward.AuditRecord) {
	for _, r := range recs {
		a.record(ctx, r)
	}
}

// record writes r outside any transaction; the refusal happened, so a
// failure is logged loudly rather than returned.
func (a *refusalAudit) record(ctx context.Context, r steward.AuditRecord) {
	if err := a.svc.cfg.Auditor.RecordIn(context.WithoutCancel(ctx), a.svc.cfg.Store, r); err != nil {
		a.svc.log.Error("AUDIT RECORD LOST: a refusal is not in the audit log", "tenant", r.TenantID, "actor", r.Actor,
			"action", r.Action, "target", r.Target, "err", err)
	}
}

// flush writes the summaries of the windows that ended by now, or of every
// window when all is set (at shutdown).
func (a *refusalAudit) flush(ctx context.Context, all bool) {
	now := a.svc.cfg.Clock.Now()
	if all {
		now = now.Add(a.window)
	}
	a.mu.Lock()
	due := a.closeDue(now)
	a.mu.Unlock()
	a.write(ctx, due)
}

// FlushRefusals writes the audit records of the refusal windows that have
// ended (see RunRefusalAudit).
func (s *Service) FlushRefusals(ctx context.Context) { s.refusals.flush(ctx, false) }

// RunRefusalAudit closes the refusal windows as they end, so that a count
// is recorded even when the device stops trying, until ctx is done; then
// it records every window still open.
func (s *Service) RunRefusalAudit(ctx context.Context) {
	t := time.NewTicker(max(s.refusals.window/5, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			s.refusals.flush(fctx, true)
			cancel()
			return
		case <-t.C:
			s.refusals.flush(ctx, false)
		}
	}
}
