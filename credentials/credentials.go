// Package credentials runs the life of device credentials after
// enrollment: rotation of a device's key and certificate on command,
// rotation of a tenant's device CA with an overlap and the move of the fleet
// to the new CA, revocation of a certificate, an enrollment group or a
// manufacturer CA (each closing the live sessions it concerns at once), the
// tenant's certificate revocation lists, and the report of certificates
// that expire soon.
package credentials

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Defaults of Config.
const (
	DefaultCRLValidity    = 24 * time.Hour
	DefaultRotateTimeout  = time.Minute
	DefaultMigrateWorkers = 8
)

// Config wires the service.
type Config struct {
	Store     steward.Store
	Authority steward.CARotator
	// Fleet sends the rotate-credentials command and revokes devices.
	Fleet steward.Fleet
	// Bus closes the sessions of revoked certificates.
	Bus steward.Bus
	// Auditor records every change (optional).
	Auditor steward.Auditor
	// Approvals gates a CA rotation when a policy asks for it (optional:
	// nil means no approval is needed).
	Approvals steward.Approvals
	// CRLValidity is how long a CRL is good for (its next update); a CRL
	// is signed again when the revocations change or half of it is spent.
	CRLValidity time.Duration
	// RotateTimeout bounds the wait for a device's rotate-credentials
	// answer (default one minute).
	RotateTimeout time.Duration
	Clock         steward.Clock
	Logger        *slog.Logger
}

// crlCacheTTL is how long a node serves a CRL it has read without asking
// the store again, unless it revoked something itself meanwhile: the
// device-plane CRL route needs no credentials, so it must not cost a few
// queries and a parse of every revoked certificate per request.
const crlCacheTTL = 30 * time.Second

// Service implements credential rotation, revocation and CRLs.
type Service struct {
	cfg Config
	log *slog.Logger

	crlMu    sync.Mutex
	crlCache map[string]cachedCRL // tenant + "/" + requested issuer key ID
	revoked  uint64               // local revocations so far; a change empties crlCache
}

type cachedCRL struct {
	der     []byte
	at      time.Time
	revoked uint64
}

// invalidateCRLs makes the next CRL request read the store again.
func (s *Service) invalidateCRLs() {
	s.crlMu.Lock()
	s.revoked++
	s.crlMu.Unlock()
}

var _ steward.Credentials = (*Service)(nil)

// New returns the service.
func New(cfg Config) *Service {
	if cfg.CRLValidity <= 0 {
		cfg.CRLValidity = DefaultCRLValidity
	}
	if cfg.RotateTimeout <= 0 {
		cfg.RotateTimeout = DefaultRotateTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: cfg.Logger}
}

// validSerial accepts a certificate serial as Steward writes them: hex, at
// most 40 digits (RFC 5280 caps serials at 20 octets).
func validSerial(s string) bool {
	if s == "" || len(s) > 40 {
		return false
	}
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return true
}

// audit records an action; a failure to record is returned, since an
// action missing from the audit log must not look like a success.
func (s *Service) audit(ctx context.Context, r steward.AuditRecord) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	if r.At.IsZero() {
		r.At = s.cfg.Clock.Now()
	}
	if r.Outcome == "" {
		r.Outcome = steward.AuditSuccess
	}
	if err := s.cfg.Auditor.Record(ctx, r); err != nil {
		return steward.WrapError(steward.CodeInternal, err, "%s was done but could not be recorded in the audit log", r.Action)
	}
	return nil
}

func raw(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// ---- revocation ----

// RevokeCertificate revokes one certificate by its serial and closes the
// live session that uses it at once (a session on another certificate of
// the same device stays).
func (s *Service) RevokeCertificate(ctx context.Context, tenantID, serial string, reason steward.RevocationReason, actor string) (steward.Certificate, error) {
	serial = strings.ToLower(serial)
	if !validSerial(serial) {
		return steward.Certificate{}, steward.Errorf(steward.CodeInvalid, "a serial is 1 to 40 hex digits")
	}
	if reason == "" {
		reason = steward.ReasonUnspecified
	}
	if !reason.Valid() {
		return steward.Certificate{}, steward.Errorf(steward.CodeInvalid, "unknown reason %q: use unspecified, key_compromise, ca_compromise, affiliation_changed, superseded or cessation_of_operation", reason)
	}
	c, err := s.cfg.Store.RevokeCertificate(ctx, steward.Revocation{TenantID: tenantID, Serial: serial, Reason: reason, Actor: actor, At: s.cfg.Clock.Now()})
	if err != nil {
		return steward.Certificate{}, err
	}
	s.invalidateCRLs()
	s.closeSession(ctx, tenantID, c.DeviceID, serial, "certificate "+serial+" revoked")
	s.log.Info("certificate revoked", "tenant", tenantID, "device", c.DeviceID, "serial", serial, "reason", reason, "actor", actor)
	return c, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "certificate.revoke", Target: "certificate:" + serial,
		Detail: string(reason), After: raw(c)})
}

// closeSession closes the live session of a device that uses serial (any
// session of the device when serial is empty).
func (s *Service) closeSession(ctx context.Context, tenantID, deviceID, serial, why string) {
	s.invalidateCRLs() // every caller has just revoked something
	if err := s.cfg.Bus.Control(ctx, steward.SessionControl{TenantID: tenantID, DeviceID: deviceID, Close: true, Serial: serial, Reason: why}); err != nil {
		s.log.Warn("close device session", "device", deviceID, "serial", serial, "err", err)
	}
}

// RevokeGroup revokes the credentials of every device enrolled through an
// enrollment group and closes their sessions.
func (s *Service) RevokeGroup(ctx context.Context, tenantID, groupID, reason, actor string) (steward.GroupRevocation, error) {
	g, err := s.cfg.Store.GetEnrollmentGroup(ctx, tenantID, groupID)
	if err != nil {
		return steward.GroupRevocation{}, err
	}
	out, err := s.revokeGroupDevices(ctx, g, actor)
	if err != nil {
		return out, err
	}
	return out, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "enrollment_group.revoke", Target: "enrollment_group:" + groupID,
		Detail: reason, After: raw(out)})
}

func (s *Service) revokeGroupDevices(ctx context.Context, g steward.EnrollmentGroup, actor string) (steward.GroupRevocation, error) {
	out := steward.GroupRevocation{GroupID: g.ID, Devices: []string{}}
	ids, err := s.cfg.Store.ListGroupDevices(ctx, g.TenantID, g.ID)
	if err != nil {
		return out, err
	}
	for _, id := range ids {
		if _, err := s.cfg.Fleet.Revoke(ctx, g.TenantID, id, actor); err != nil {
			return out, fmt.Errorf("revoke device %s of group %s: %w", id, g.ID, err)
		}
		out.Devices = append(out.Devices, id)
	}
	s.invalidateCRLs()
	s.log.Info("enrollment group revoked", "tenant", g.TenantID, "group", g.ID, "devices", len(out.Devices), "actor", actor)
	return out, nil
}

// RevokeManufacturerCA refuses every further enrollment with the
// manufacturer CA of a group and, when devices is set, revokes the devices
// enrolled through the group too.
func (s *Service) RevokeManufacturerCA(ctx context.Context, tenantID, groupID, reason string, devices bool, actor string) (steward.GroupRevocation, error) {
	if len(reason) > 1024 {
		return steward.GroupRevocation{}, steward.Errorf(steward.CodeInvalid, "reason is longer than 1024 characters")
	}
	g, err := s.cfg.Store.GetEnrollmentGroup(ctx, tenantID, groupID)
	if err != nil {
		return steward.GroupRevocation{}, err
	}
	if err := s.cfg.Store.RevokeManufacturerCA(ctx, steward.RevokedCA{TenantID: tenantID, Fingerprint: g.CAFingerprint, GroupID: g.ID,
		Reason: reason, Actor: actor, At: s.cfg.Clock.Now()}); err != nil {
		return steward.GroupRevocation{}, err
	}
	out := steward.GroupRevocation{GroupID: g.ID, CARevoked: true, Devices: []string{}}
	if devices {
		if out, err = s.revokeGroupDevices(ctx, g, actor); err != nil {
			return out, err
		}
		out.CARevoked = true
	}
	s.log.Info("manufacturer CA revoked", "tenant", tenantID, "group", g.ID, "ca", g.CAFingerprint, "devices", len(out.Devices), "actor", actor)
	return out, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "manufacturer_ca.revoke", Target: "enrollment_group:" + groupID,
		Detail: reason, After: raw(out)})
}

// ---- CRL ----

// CRL returns the tenant's current CRL of the device CA whose key ID is
// issuerKeyID (the active CA when empty), DER. It lists the revoked
// certificates that CA issued and that have not expired; it is signed again
// only when they change or half of its validity is spent, with the next
// number of the tenant's sequence. A node serves what it read for up to
// crlCacheTTL, or until it revokes something itself.
func (s *Service) CRL(ctx context.Context, tenantID, issuerKeyID string) ([]byte, error) {
	key := tenantID + "/" + issuerKeyID
	s.crlMu.Lock()
	c, ok := s.crlCache[key]
	gen := s.revoked
	s.crlMu.Unlock()
	if ok && c.revoked == gen && time.Since(c.at) < crlCacheTTL {
		return c.der, nil
	}
	der, err := s.crl(ctx, tenantID, issuerKeyID)
	if err != nil {
		return nil, err
	}
	s.crlMu.Lock()
	if s.crlCache == nil || len(s.crlCache) > 10000 {
		s.crlCache = map[string]cachedCRL{}
	}
	s.crlCache[key] = cachedCRL{der: der, at: time.Now(), revoked: gen}
	s.crlMu.Unlock()
	return der, nil
}

func (s *Service) crl(ctx context.Context, tenantID, issuerKeyID string) ([]byte, error) {
	if _, err := s.cfg.Store.GetTenant(ctx, tenantID); err != nil {
		return nil, err
	}
	gens, err := s.cfg.Authority.DeviceCAStatus(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	found := false
	for _, g := range gens {
		if issuerKeyID == "" && g.State == steward.CAActive || g.KeyID == issuerKeyID {
			issuerKeyID, found = g.KeyID, true
			break
		}
	}
	if !found {
		return nil, steward.Errorf(steward.CodeNotFound, "tenant %s has no device CA with key ID %q", tenantID, issuerKeyID)
	}
	now := s.cfg.Clock.Now()
	revoked, err := s.cfg.Store.ListRevokedCertificates(ctx, tenantID, now)
	if err != nil {
		return nil, err
	}
	var entries []x509.RevocationListEntry
	h := sha256.New()
	for _, r := range revoked {
		cert, err := parseCert(r.PEM)
		if err != nil {
			s.log.Error("stored certificate does not parse; left out of the CRL", "tenant", tenantID, "serial", r.Serial, "err", err)
			continue
		}
		if hex.EncodeToString(cert.AuthorityKeyId) != issuerKeyID {
			continue
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: cert.SerialNumber, RevocationTime: *r.RevokedAt, ReasonCode: r.Reason.Code()})
		fmt.Fprintf(h, "%s|%d|%s\n", r.Serial, r.RevokedAt.UnixMicro(), r.Reason)
	}
	digest := hex.EncodeToString(h.Sum(nil))
	if c, err := s.cfg.Store.GetCRL(ctx, tenantID, issuerKeyID); err == nil {
		if c.Digest == digest && now.Before(c.ThisUpdate.Add(s.cfg.CRLValidity/2)) {
			return c.DER, nil
		}
	} else if !steward.IsNotFound(err) {
		return nil, err
	}
	n, err := s.cfg.Store.NextCRLNumber(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.RevocationList{Number: big.NewInt(n), ThisUpdate: now, NextUpdate: now.Add(s.cfg.CRLValidity), RevokedCertificateEntries: entries}
	der, err := s.cfg.Authority.SignCRL(ctx, tenantID, issuerKeyID, tmpl)
	if err != nil {
		return nil, err
	}
	if err := s.cfg.Store.PutCRL(ctx, steward.CRL{TenantID: tenantID, IssuerKeyID: issuerKeyID, Number: n, ThisUpdate: now,
		NextUpdate: tmpl.NextUpdate, Digest: digest, DER: der}); err != nil {
		return nil, err
	}
	s.log.Debug("CRL signed", "tenant", tenantID, "issuer", issuerKeyID, "number", n, "entries", len(entries))
	return der, nil
}

func parseCert(p string) (*x509.Certificate, error) {
	b, _ := pem.Decode([]byte(p))
	if b == nil {
		return nil, fmt.Errorf("not PEM")
	}
	return x509.ParseCertificate(b.Bytes)
}

// ---- expiry ----

// MaxExpiryWindow bounds the expiry report's window.
const MaxExpiryWindow = 3650 * 24 * time.Hour

// Expiring returns the unrevoked certificates of the tenant's devices (not
// decommissioned) that expire within the window, soonest first.
func (s *Service) Expiring(ctx context.Context, tenantID string, within time.Duration, limit int) ([]steward.Certificate, error) {
	if within <= 0 || within > MaxExpiryWindow {
		return nil, steward.Errorf(steward.CodeInvalid, "the window must be more than 0 and at most %d days", int(MaxExpiryWindow.Hours()/24))
	}
	now := s.cfg.Clock.Now()
	return s.cfg.Store.ListExpiringCertificates(ctx, tenantID, now, now.Add(within), limit)
}

// ---- device rotation ----

// RotateDevice sends the device rotate-credentials: it makes a new key,
// renews its certificate for it over EST, saves both, reconnects with them
// and answers over that connection. Then the device's other certificates
// are revoked (reason superseded), closing any session still on them. A
// device that is not connected is CodeUnavailable, and nothing changes.
func (s *Service) RotateDevice(ctx context.Context, tenantID, deviceID, actor string) (steward.CredentialRotation, error) {
	res, err := s.cfg.Fleet.SendCommand(ctx, tenantID, deviceID, steward.Command{Name: steward.CommandRotateCredentials}, s.cfg.RotateTimeout)
	if err != nil {
		return steward.CredentialRotation{}, err
	}
	if res.Status != steward.CommandOK {
		return steward.CredentialRotation{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s did not rotate its credentials: %s %s", deviceID, res.Status, res.Error)
	}
	serial, _ := res.Result["serial"].(string)
	serial = strings.ToLower(serial)
	if !validSerial(serial) {
		return steward.CredentialRotation{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s answered without the serial of its new certificate", deviceID)
	}
	cur, err := s.cfg.Store.GetCertificate(ctx, tenantID, serial)
	if err != nil || cur.DeviceID != deviceID || cur.Revoked() {
		return steward.CredentialRotation{}, steward.Errorf(steward.CodeFailedPrecondition, "device %s names certificate %s, which is not a valid certificate of it", deviceID, serial)
	}
	out := steward.CredentialRotation{DeviceID: deviceID, Serial: serial, NotAfter: cur.NotAfter, Revoked: []string{}}
	if c, err := parseCert(cur.PEM); err == nil {
		out.IssuerKey = hex.EncodeToString(c.AuthorityKeyId)
	}
	certs, err := s.cfg.Store.ListCertificates(ctx, tenantID, deviceID)
	if err != nil {
		return out, err
	}
	now := s.cfg.Clock.Now()
	for _, c := range certs {
		if c.Serial == serial || c.Revoked() || !c.NotAfter.After(now) {
			continue
		}
		if _, err := s.cfg.Store.RevokeCertificate(ctx, steward.Revocation{TenantID: tenantID, Serial: c.Serial, DeviceID: deviceID,
			Reason: steward.ReasonSuperseded, Actor: actor, At: now}); err != nil && steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			return out, err
		}
		s.closeSession(ctx, tenantID, deviceID, c.Serial, "certificate superseded by a rotation")
		out.Revoked = append(out.Revoked, c.Serial)
	}
	s.log.Info("device credentials rotated", "tenant", tenantID, "device", deviceID, "serial", serial, "revoked", len(out.Revoked), "actor", actor)
	return out, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "device.rotate_credentials", Target: "device:" + deviceID, After: raw(out)})
}

// ---- CA rotation ----

// RotateCA rotates the tenant's device CA with an overlap. When an approval
// policy demands it, the first call opens an approval request and returns
// it; a call with the approved request's ID rotates.
func (s *Service) RotateCA(ctx context.Context, tenantID string, overlap time.Duration, approvalID, actor string) (steward.CARotation, error) {
	if overlap <= 0 {
		return steward.CARotation{}, steward.Errorf(steward.CodeInvalid, "overlap must be more than 0")
	}
	pending, err := RequireApproval(ctx, s.cfg.Approvals, steward.ApprovalRequest{TenantID: tenantID, Action: "ca.rotate", Target: "tenant:" + tenantID,
		Payload: raw(map[string]string{"overlap": overlap.String()}), Requester: actor}, approvalID)
	if err != nil || pending != nil {
		return steward.CARotation{Approval: pending}, err
	}
	gens, err := s.cfg.Authority.RotateDeviceCA(ctx, tenantID, overlap, approvalID)
	if err != nil {
		return steward.CARotation{}, err
	}
	return steward.CARotation{Generations: gens}, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "ca.rotate", Target: "tenant:" + tenantID,
		Detail: "overlap " + overlap.String(), After: raw(gens)})
}

// CAStatus lists the tenant's device CA generations.
func (s *Service) CAStatus(ctx context.Context, tenantID string) ([]steward.CAGenerationInfo, error) {
	return s.cfg.Authority.DeviceCAStatus(ctx, tenantID)
}

// MigrateFleet sends rotate-credentials to every device of the tenant whose
// newest certificate is not from the active CA, a few at a time.
func (s *Service) MigrateFleet(ctx context.Context, tenantID, actor string) (steward.CAMigration, error) {
	gens, err := s.cfg.Authority.DeviceCAStatus(ctx, tenantID)
	if err != nil {
		return steward.CAMigration{}, err
	}
	active := ""
	for _, g := range gens {
		if g.State == steward.CAActive {
			active = g.KeyID
		}
	}
	now := s.cfg.Clock.Now()
	certs, err := s.cfg.Store.ListExpiringCertificates(ctx, tenantID, now, now.Add(MaxExpiryWindow), 10000)
	if err != nil {
		return steward.CAMigration{}, err
	}
	onActive := map[string]bool{}
	var devices []string
	for _, c := range certs {
		x, err := parseCert(c.PEM)
		if err != nil {
			continue
		}
		if hex.EncodeToString(x.AuthorityKeyId) == active {
			onActive[c.DeviceID] = true
		} else if !slices.Contains(devices, c.DeviceID) {
			devices = append(devices, c.DeviceID)
		}
	}
	out := steward.CAMigration{Moved: []steward.CredentialRotation{}, Pending: map[string]string{}}
	var mu sync.Mutex
	work := make(chan string)
	var wg sync.WaitGroup
	for range DefaultMigrateWorkers {
		wg.Go(func() {
			for id := range work {
				r, err := s.RotateDevice(ctx, tenantID, id, actor)
				mu.Lock()
				if err != nil {
					out.Pending[id] = steward.ErrorMessage(err)
				} else {
					out.Moved = append(out.Moved, r)
				}
				mu.Unlock()
			}
		})
	}
	for _, id := range devices {
		if !onActive[id] {
			work <- id
		}
	}
	close(work)
	wg.Wait()
	slices.SortFunc(out.Moved, func(a, b steward.CredentialRotation) int { return strings.Compare(a.DeviceID, b.DeviceID) })
	s.log.Info("fleet migrated to the active device CA", "tenant", tenantID, "moved", len(out.Moved), "pending", len(out.Pending), "actor", actor)
	return out, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "ca.migrate", Target: "tenant:" + tenantID, After: raw(out)})
}

// RetireOldCA retires the tenant's previous device CA at once and revokes
// the certificates it issued that are still unrevoked (reason superseded),
// closing their sessions: a device still on it has to enroll again.
func (s *Service) RetireOldCA(ctx context.Context, tenantID, actor string) ([]steward.CAGenerationInfo, error) {
	before, err := s.cfg.Authority.DeviceCAStatus(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	old := map[string]bool{}
	for _, g := range before {
		if g.State == steward.CAPrevious {
			old[g.KeyID] = true
		}
	}
	gens, err := s.cfg.Authority.RetirePreviousCA(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	certs, err := s.cfg.Store.ListExpiringCertificates(ctx, tenantID, now, now.Add(MaxExpiryWindow), 10000)
	if err != nil {
		return gens, err
	}
	revoked := 0
	for _, c := range certs {
		x, err := parseCert(c.PEM)
		if err != nil || !old[hex.EncodeToString(x.AuthorityKeyId)] {
			continue
		}
		if _, err := s.cfg.Store.RevokeCertificate(ctx, steward.Revocation{TenantID: tenantID, Serial: c.Serial, DeviceID: c.DeviceID,
			Reason: steward.ReasonSuperseded, Actor: actor, At: now}); err != nil && steward.ErrorCode(err) != steward.CodeFailedPrecondition {
			return gens, err
		}
		s.closeSession(ctx, tenantID, c.DeviceID, c.Serial, "device CA retired")
		revoked++
	}
	s.log.Info("previous device CA retired", "tenant", tenantID, "certificates_revoked", revoked, "actor", actor)
	return gens, s.audit(ctx, steward.AuditRecord{TenantID: tenantID, Actor: actor, Action: "ca.retire", Target: "tenant:" + tenantID,
		Detail: fmt.Sprintf("%d certificates of the retired CA revoked", revoked), After: raw(gens)})
}

// ---- approvals ----

// RequireApproval applies the two-person rule to r (its TenantID, Action,
// Target, Payload and Requester set). With no Approvals, or no policy
// demanding one, it returns nil, nil: go ahead. Without an approvalID it
// opens a request and returns it: the caller acts once it is approved.
// With one, the request must be approved and be for the same action and
// target, or the caller is refused.
func RequireApproval(ctx context.Context, a steward.Approvals, r steward.ApprovalRequest, approvalID string) (*steward.ApprovalRequest, error) {
	if a == nil {
		return nil, nil
	}
	n, why, err := a.Required(ctx, r.TenantID, r.Action, r.Target, nil)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, nil
	}
	if approvalID == "" {
		r.Approvals, r.Reason = n, why
		req, err := a.Request(ctx, r)
		if err != nil {
			return nil, err
		}
		return &req, nil
	}
	got, err := a.Get(ctx, r.TenantID, approvalID)
	if err != nil {
		return nil, err
	}
	switch {
	case got.Action != r.Action || got.Target != r.Target:
		return nil, steward.Errorf(steward.CodePermissionDenied, "approval %s is for %s on %s, not %s on %s", approvalID, got.Action, got.Target, r.Action, r.Target)
	case got.State != steward.ApprovalApproved:
		return nil, steward.Errorf(steward.CodeFailedPrecondition, "approval %s is %s, not approved", approvalID, got.State)
	}
	return nil, nil
}
