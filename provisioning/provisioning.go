// Package provisioning onboards devices with zero touch: enrollment groups
// (a manufacturer CA and its policy), EST enrollment authenticated by a
// factory certificate, renewal, the device-plane gate that admits
// operational certificates, and validation before activation of the
// attributes a device reports.
package provisioning

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/lifecycle"
)

// Config wires the service.
type Config struct {
	Store     steward.Store
	Authority steward.Authority
	Bus       steward.Bus
	Lifecycle *lifecycle.Service
	// ParseCSR parses and checks a PKCS#10 request (signature, key type);
	// pki.ParseCSR in production.
	ParseCSR func(der []byte) (*x509.CertificateRequest, error)
	Clock    steward.Clock
	Logger   *slog.Logger

	// Auditor, when set, records enrollments, certificate renewals,
	// refused EST requests and security events in the audit log
	// (audit.go).
	Auditor lifecycle.TxAuditor
	// RefusalWindow is how long refusals of one kind from one device are
	// folded into one audit record (default DefaultRefusalWindow).
	RefusalWindow time.Duration

	// OnSecurityEvent, when set, is told of every security event once it
	// is recorded (the quarantine policy's rules watch them). It is called
	// on the device plane's path and must not block.
	OnSecurityEvent func(ctx context.Context, e steward.SecurityEvent)
}

// Service implements steward.Enroller, steward.DeviceGate and
// steward.EnrollmentGroups, and validates attribute reports.
type Service struct {
	cfg      Config
	log      *slog.Logger
	refusals *refusalAudit
}

var (
	_ steward.Enroller         = (*Service)(nil)
	_ steward.DeviceGate       = (*Service)(nil)
	_ steward.EnrollmentGroups = (*Service)(nil)
)

// New returns the service and registers its handlers on the bus: attribute
// reports and presence changes.
func New(cfg Config) *Service {
	if cfg.RefusalWindow <= 0 {
		cfg.RefusalWindow = DefaultRefusalWindow
	}
	s := &Service{cfg: cfg, log: cfg.Logger}
	s.refusals = &refusalAudit{svc: s, window: cfg.RefusalWindow, maxKeys: maxRefusalKeys, open: map[refusalKey]*refusalWindow{}}
	cfg.Bus.HandleInbound(steward.ChannelAttributes, s.handleAttributes)
	cfg.Bus.HandlePresence(s.handlePresence)
	return s
}

// hexSHA256 is the fingerprint format used throughout: lowercase hex SHA-256.
func hexSHA256(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// newGroupID returns "eg-" and 16 random hex characters.
func newGroupID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "eg-" + hex.EncodeToString(b[:])
}

// ---- enrollment groups ----

// CreateEnrollmentGroup implements steward.EnrollmentGroups.
func (s *Service) CreateEnrollmentGroup(ctx context.Context, g steward.EnrollmentGroup, actor string) (steward.EnrollmentGroup, error) {
	ca, err := parseCA(g.CAPEM)
	if err != nil {
		return steward.EnrollmentGroup{}, err
	}
	if err := g.Validate(); err != nil {
		return steward.EnrollmentGroup{}, err
	}
	for k := range g.Labels {
		if !steward.ValidLabelKey(k) {
			return steward.EnrollmentGroup{}, steward.Errorf(steward.CodeInvalid, "label key %q: use letters, digits, '_', '-', '.'", k)
		}
	}
	g.ID = newGroupID()
	g.CAPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}))
	g.CAFingerprint = hexSHA256(ca.Raw)
	g.CASubjectHash = hexSHA256(ca.RawSubject)
	g.CreatedAt = s.cfg.Clock.Now()
	if err := s.cfg.Store.CreateEnrollmentGroup(ctx, g); err != nil {
		if steward.IsConflict(err) {
			return steward.EnrollmentGroup{}, steward.WrapError(steward.CodeConflict, err, "an enrollment group named %q exists, or this manufacturer CA is already registered", g.Name)
		}
		return steward.EnrollmentGroup{}, err
	}
	s.log.Info("enrollment group created", "tenant", g.TenantID, "group", g.ID, "name", g.Name, "ca", g.CAFingerprint, "actor", actor)
	return g, nil
}

// parseCA accepts exactly one PEM CA certificate.
func parseCA(p string) (*x509.Certificate, error) {
	block, rest := pem.Decode([]byte(p))
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, steward.Errorf(steward.CodeInvalid, "the manufacturer CA must be one PEM certificate")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, steward.Errorf(steward.CodeInvalid, "the manufacturer CA must be exactly one PEM certificate")
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "the manufacturer CA is not a valid certificate")
	}
	if !ca.IsCA || !ca.BasicConstraintsValid {
		return nil, steward.Errorf(steward.CodeInvalid, "the manufacturer certificate is not a CA (basic constraints)")
	}
	return ca, nil
}

// ListEnrollmentGroups implements steward.EnrollmentGroups.
func (s *Service) ListEnrollmentGroups(ctx context.Context, tenantID string) ([]steward.EnrollmentGroup, error) {
	return s.cfg.Store.ListEnrollmentGroups(ctx, tenantID)
}

// GetEnrollmentGroup implements steward.EnrollmentGroups.
func (s *Service) GetEnrollmentGroup(ctx context.Context, tenantID, id string) (steward.EnrollmentGroup, error) {
	return s.cfg.Store.GetEnrollmentGroup(ctx, tenantID, id)
}

// DeleteEnrollmentGroup implements steward.EnrollmentGroups. Devices that
// enrolled through the group keep their certificates; new enrollments with
// its CA are refused.
func (s *Service) DeleteEnrollmentGroup(ctx context.Context, tenantID, id, actor string) error {
	if err := s.cfg.Store.DeleteEnrollmentGroup(ctx, tenantID, id); err != nil {
		return err
	}
	s.log.Info("enrollment group deleted", "tenant", tenantID, "group", id, "actor", actor)
	return nil
}

// ---- EST ----

// CACerts implements steward.Enroller: the device CA of the tenant named by
// the label or by the client's credentials (default tenant otherwise), then
// the server CA.
func (s *Service) CACerts(ctx context.Context, label string, peer []*x509.Certificate) ([]*x509.Certificate, error) {
	tenant := label
	if tenant == "" && len(peer) > 0 {
		if t, err := s.cfg.Authority.VerifyDevice(ctx, peer[0]); err == nil {
			tenant = t
		} else if e, err := s.cfg.Store.IndividualEnrollmentByFactoryID(ctx, hexSHA256(peer[0].Raw)); err == nil {
			tenant = e.TenantID
		} else if g, err := s.factoryGroup(ctx, peer); err == nil {
			tenant = g.TenantID
		}
	}
	if tenant == "" {
		tenant = steward.DefaultTenant
	}
	if _, err := s.cfg.Store.GetTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if r, ok := s.cfg.Authority.(steward.CARotator); ok { // during a CA rotation, both device CAs
		cas, err := r.TrustedDeviceCAs(ctx, tenant)
		if err != nil {
			return nil, err
		}
		return append(cas, s.cfg.Authority.ServerCA()), nil
	}
	ca, err := s.cfg.Authority.DeviceCA(ctx, tenant)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{ca, s.cfg.Authority.ServerCA()}, nil
}

// factoryGroup finds the enrollment group whose manufacturer CA issued the
// factory certificate and verifies the chain against that CA alone.
func (s *Service) factoryGroup(ctx context.Context, chain []*x509.Certificate) (steward.EnrollmentGroup, error) {
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	// The issuer of the leaf, or of the topmost intermediate, is the
	// registered CA.
	candidates := []*x509.Certificate{leaf}
	candidates = append(candidates, chain[1:]...)
	var verifyErr error
	for _, c := range candidates {
		groups, err := s.cfg.Store.EnrollmentGroupsBySubject(ctx, hexSHA256(c.RawIssuer))
		if err != nil {
			return steward.EnrollmentGroup{}, err
		}
		for _, g := range groups {
			ca, err := parseCA(g.CAPEM)
			if err != nil {
				return steward.EnrollmentGroup{}, fmt.Errorf("stored CA of group %s: %w", g.ID, err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(ca)
			_, err = leaf.Verify(x509.VerifyOptions{
				Roots:         roots,
				Intermediates: inter,
				CurrentTime:   s.cfg.Clock.Now(),
				KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
			})
			if err == nil {
				return g, nil
			}
			verifyErr = err
		}
	}
	var inv x509.CertificateInvalidError
	if errors.As(verifyErr, &inv) && inv.Reason == x509.Expired {
		return steward.EnrollmentGroup{}, steward.WrapError(steward.CodeUnauthenticated, verifyErr, "the factory certificate has expired or is not yet valid")
	}
	if verifyErr != nil {
		return steward.EnrollmentGroup{}, steward.WrapError(steward.CodeUnauthenticated, verifyErr, "the factory certificate does not verify against its manufacturer CA")
	}
	return steward.EnrollmentGroup{}, steward.Errorf(steward.CodeUnauthenticated, "the factory certificate is not from a registered manufacturer CA")
}

// factorySerial is the device's serial number as the factory certificate
// states it: the subject serialNumber attribute (as IEEE 802.1AR IDevIDs
// carry it), or the CN when there is none.
func factorySerial(c *x509.Certificate) string {
	if c.Subject.SerialNumber != "" {
		return c.Subject.SerialNumber
	}
	return c.Subject.CommonName
}

// Enroll implements steward.Enroller (EST simpleenroll). A refusal is
// recorded in the audit log with its reason (auditRefusal).
func (s *Service) Enroll(ctx context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	var who refusal
	certs, err := s.enroll(ctx, r, &who)
	if err != nil {
		s.auditRefusal(ctx, actionEnroll, who, r.Remote, err)
	}
	return certs, err
}

// enroll is Enroll; it fills who as it learns who is asking.
func (s *Service) enroll(ctx context.Context, r steward.EnrollRequest, who *refusal) ([]*x509.Certificate, error) {
	if len(r.PeerChain) == 0 {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "simpleenroll needs a factory certificate in the TLS handshake")
	}
	leaf := r.PeerChain[0]
	who.factory = factorySerial(leaf)
	if certs, ok, err := s.enrollIndividual(ctx, r); ok { // an individual enrollment goes before the group
		return certs, err
	}
	g, err := s.factoryGroup(ctx, r.PeerChain)
	if err != nil {
		s.log.Warn("enrollment refused", "remote", r.Remote, "subject", leaf.Subject.String(), "err", err)
		return nil, err
	}
	if r.Label != "" && r.Label != g.TenantID {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "the factory certificate is not registered with tenant %q", r.Label)
	}
	who.tenant = g.TenantID
	if err := s.tenantActive(ctx, g.TenantID, "", r.Remote); err != nil {
		return nil, err
	}
	if rc, err := s.cfg.Store.GetRevokedCA(ctx, g.TenantID, g.CAFingerprint); err == nil {
		s.security(ctx, steward.SecurityEvent{TenantID: g.TenantID, Kind: steward.SecEnrollRefused, Remote: r.Remote,
			Detail: fmt.Sprintf("manufacturer CA of enrollment group %q was revoked (%s)", g.Name, rc.Reason)})
		return nil, steward.Errorf(steward.CodePermissionDenied, "the manufacturer CA of this factory certificate was revoked")
	} else if !steward.IsNotFound(err) {
		return nil, err
	}
	serial := factorySerial(leaf)
	if !g.SerialAllowed(serial) {
		s.security(ctx, steward.SecurityEvent{TenantID: g.TenantID, Kind: steward.SecEnrollRefused, Remote: r.Remote,
			Detail: fmt.Sprintf("serial %q is not on the allow-list of enrollment group %q", serial, g.Name)})
		return nil, steward.Errorf(steward.CodePermissionDenied, "serial %q is not on the allow-list of its enrollment group", serial)
	}
	csr, err := s.cfg.ParseCSR(r.CSR)
	if err != nil {
		return nil, err
	}
	factoryID := hexSHA256(leaf.Raw)
	keyID := hexSHA256(csr.RawSubjectPublicKeyInfo)
	for range 2 { // a second pass when a concurrent enrollment of the same identity won the race
		d, err := s.cfg.Store.DeviceByFactoryID(ctx, g.TenantID, factoryID)
		switch {
		case err == nil:
			who.device = d.ID
			return s.enrollAgain(ctx, d, keyID, csr, r.Remote)
		case !steward.IsNotFound(err):
			return nil, err
		}
		certs, err := s.enrollNew(ctx, g, factoryID, serial, keyID, csr, r.Remote)
		if steward.IsConflict(err) {
			continue
		}
		return certs, err
	}
	return nil, steward.Errorf(steward.CodeConflict, "enrollment of this factory identity is in progress; try again")
}

// enrollNew creates the device and issues its first certificate.
func (s *Service) enrollNew(ctx context.Context, g steward.EnrollmentGroup, factoryID, serial, keyID string, csr *x509.CertificateRequest, remote string) ([]*x509.Certificate, error) {
	now := s.cfg.Clock.Now()
	d := steward.Device{
		ID:                steward.NewDeviceID(),
		TenantID:          g.TenantID,
		EnrollmentGroupID: g.ID,
		FactoryID:         factoryID,
		FactoryKeyID:      keyID,
		Serial:            serial,
		Labels:            map[string]string{},
		Attributes:        map[string]any{},
		State:             steward.StateRegistered,
		CreatedAt:         now,
		UpdatedAt:         now,
	}
	for k, v := range g.Labels {
		d.Labels[k] = v
	}
	ev, err := steward.Transition(&d, steward.StateProvisioned, "enrolled with factory identity through group "+g.Name, "device", now)
	if err != nil {
		return nil, err
	}
	cert, err := s.cfg.Authority.IssueDevice(ctx, g.TenantID, d.ID, csr)
	if err != nil {
		return nil, err
	}
	err = s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		if err := tx.CreateDevice(ctx, d); err != nil {
			return err
		}
		if err := tx.AddLifecycleEvent(ctx, ev); err != nil {
			return err
		}
		if err := tx.AddCertificate(ctx, certRecord(g.TenantID, d.ID, cert, now)); err != nil {
			return err
		}
		return s.auditEnroll(ctx, tx, d, g, cert, remote)
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("device enrolled", "tenant", g.TenantID, "device", d.ID, "serial", serial, "group", g.Name)
	return s.withCA(ctx, g.TenantID, cert)
}

// enrollAgain answers a factory identity that has enrolled before: the same
// key gets the device's current certificate (a device that lost the answer
// may ask again); another key is a suspected clone.
func (s *Service) enrollAgain(ctx context.Context, d steward.Device, keyID string, csr *x509.CertificateRequest, remote string) ([]*x509.Certificate, error) {
	if d.State == steward.StateDecommissioned {
		return nil, steward.Errorf(steward.CodePermissionDenied, "device %s is decommissioned", d.ID)
	}
	if err := s.checkNotLeaving(ctx, d); err != nil {
		return nil, err
	}
	if d.State == steward.StateRegistered && d.FactoryKeyID == "" {
		return s.reprovision(ctx, d, keyID, csr, remote)
	}
	certs, err := s.cfg.Store.ListCertificates(ctx, d.TenantID, d.ID)
	if err != nil {
		return nil, err
	}
	known := keyID == d.FactoryKeyID
	var current *steward.Certificate
	for i := range certs {
		c := &certs[i]
		if c.KeyID != keyID {
			continue
		}
		known = true
		if c.Revoked() {
			return nil, steward.Errorf(steward.CodePermissionDenied, "the credentials of device %s were revoked", d.ID)
		}
		if c.NotAfter.After(s.cfg.Clock.Now()) && (current == nil || c.NotAfter.After(current.NotAfter)) {
			current = c
		}
	}
	if !known {
		s.security(ctx, steward.SecurityEvent{TenantID: d.TenantID, DeviceID: d.ID, Kind: steward.SecSuspectedClone, Remote: remote,
			Detail: "factory identity enrolled again with a different key"})
		return nil, steward.Errorf(steward.CodePermissionDenied, "this factory identity is already enrolled with another key (suspected clone); the event was recorded")
	}
	if current != nil {
		cert, err := parsePEMCert(current.PEM)
		if err != nil {
			return nil, err
		}
		return s.withCA(ctx, d.TenantID, cert)
	}
	// Same key, but its certificates have all expired: issue a new one.
	return s.issueFor(ctx, d, keyID, csr, actionReissue, remote)
}

// reprovision provisions again a device that was transferred to another
// owner: its old credentials were revoked and its key binding cleared, so
// the factory identity may bring any key now, once.
func (s *Service) reprovision(ctx context.Context, d steward.Device, keyID string, csr *x509.CertificateRequest, remote string) ([]*x509.Certificate, error) {
	certs, err := s.issueFor(ctx, d, keyID, csr, actionReprovision, remote)
	if err != nil {
		return nil, err
	}
	_, err = s.cfg.Lifecycle.Apply(ctx, d.TenantID, d.ID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		if d.State != steward.StateRegistered {
			return nil, nil
		}
		ev, err := steward.Transition(d, steward.StateProvisioned, "provisioned again after a transfer", "device", s.cfg.Clock.Now())
		return []steward.LifecycleEvent{ev}, err
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("device provisioned again", "tenant", d.TenantID, "device", d.ID)
	return certs, nil
}

// issueFor issues a new certificate to an existing device and binds its
// key; the certificate and its audit record (action, from remote) are
// stored together.
func (s *Service) issueFor(ctx context.Context, d steward.Device, keyID string, csr *x509.CertificateRequest, action, remote string) ([]*x509.Certificate, error) {
	certs, err := s.cfg.Store.ListCertificates(ctx, d.TenantID, d.ID)
	if err != nil {
		return nil, err
	}
	var prev *steward.Certificate
	for i := range certs {
		if prev == nil || certs[i].CreatedAt.After(prev.CreatedAt) {
			prev = &certs[i]
		}
	}
	cert, err := s.cfg.Authority.IssueDevice(ctx, d.TenantID, d.ID, csr)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Clock.Now()
	err = s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		if err := tx.AddCertificate(ctx, certRecord(d.TenantID, d.ID, cert, now)); err != nil {
			return err
		}
		return s.auditIssue(ctx, tx, d, prev, cert, keyID, action, remote)
	})
	if err != nil {
		return nil, err
	}
	if keyID != d.FactoryKeyID {
		_, err := s.cfg.Lifecycle.Apply(ctx, d.TenantID, d.ID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
			d.FactoryKeyID = keyID // the factory identity now answers for the new key
			return nil, nil
		})
		if err != nil {
			return nil, err
		}
	}
	return s.withCA(ctx, d.TenantID, cert)
}

// Reenroll implements steward.Enroller (EST simplereenroll): the current
// operational certificate authenticates; the new certificate may carry a
// new key. Older certificates stay valid until they expire, so a device that
// crashes before saving the new one can still connect. The renewal, or its
// refusal with the reason, is recorded in the audit log.
func (s *Service) Reenroll(ctx context.Context, r steward.EnrollRequest) ([]*x509.Certificate, error) {
	var who refusal
	certs, err := s.reenroll(ctx, r, &who)
	if err != nil {
		s.auditRefusal(ctx, actionRenew, who, r.Remote, err)
	}
	return certs, err
}

// reenroll is Reenroll; it fills who as it learns who is asking.
func (s *Service) reenroll(ctx context.Context, r steward.EnrollRequest, who *refusal) ([]*x509.Certificate, error) {
	if len(r.PeerChain) == 0 {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "simplereenroll needs the device's current certificate in the TLS handshake")
	}
	// The tenant and device the certificate names, once its signature
	// holds: a refusal is then recorded in that tenant's log.
	if tenant, err := s.cfg.Authority.VerifyDevice(ctx, r.PeerChain[0]); err == nil {
		who.tenant, who.device = tenant, r.PeerChain[0].Subject.CommonName
	} else {
		who.factory = r.PeerChain[0].Subject.CommonName
	}
	sess, err := s.AuthenticateDevice(ctx, r.PeerChain[0], r.Remote)
	if err != nil {
		return nil, err
	}
	if r.Label != "" && r.Label != sess.TenantID {
		return nil, steward.Errorf(steward.CodeUnauthenticated, "the certificate is not from tenant %q", r.Label)
	}
	csr, err := s.cfg.ParseCSR(r.CSR)
	if err != nil {
		return nil, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, sess.TenantID, sess.DeviceID)
	if err != nil {
		return nil, err
	}
	s.log.Info("device re-enrolled", "tenant", d.TenantID, "device", d.ID)
	return s.issueFor(ctx, d, hexSHA256(csr.RawSubjectPublicKeyInfo), csr, actionRenew, r.Remote)
}

// withCA returns the issued certificate followed by the tenant's device CA.
func (s *Service) withCA(ctx context.Context, tenantID string, cert *x509.Certificate) ([]*x509.Certificate, error) {
	ca, err := s.cfg.Authority.DeviceCA(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return []*x509.Certificate{cert, ca}, nil
}

func certRecord(tenantID, deviceID string, c *x509.Certificate, now time.Time) steward.Certificate {
	return steward.Certificate{
		Serial:    c.SerialNumber.Text(16),
		TenantID:  tenantID,
		DeviceID:  deviceID,
		KeyID:     hexSHA256(c.RawSubjectPublicKeyInfo),
		NotBefore: c.NotBefore.UTC(),
		NotAfter:  c.NotAfter.UTC(),
		PEM:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})),
		CreatedAt: now,
	}
}

func parsePEMCert(p string) (*x509.Certificate, error) {
	block, _ := pem.Decode([]byte(p))
	if block == nil {
		return nil, fmt.Errorf("stored certificate is not PEM")
	}
	return x509.ParseCertificate(block.Bytes)
}

// ---- device plane gate ----

// AuthenticateDevice implements steward.DeviceGate. It runs at every TLS
// handshake of the device plane, so a revoked certificate or a
// decommissioned device never gets a session.
func (s *Service) AuthenticateDevice(ctx context.Context, cert *x509.Certificate, remote string) (steward.DeviceSession, error) {
	tenant, err := s.cfg.Authority.VerifyDevice(ctx, cert)
	if err != nil {
		return steward.DeviceSession{}, err
	}
	if err := s.tenantActive(ctx, tenant, cert.Subject.CommonName, remote); err != nil {
		return steward.DeviceSession{}, err
	}
	serial := cert.SerialNumber.Text(16)
	rec, err := s.cfg.Store.GetCertificate(ctx, tenant, serial)
	// A certificate of the tenant's own CA that the registry refuses is a
	// failed authentication of the identity it names (the CA puts the
	// device ID in the CN): counted against that device.
	if steward.IsNotFound(err) {
		s.authFailed(ctx, tenant, cert.Subject.CommonName, remote, "certificate "+serial+" is unknown")
		return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "certificate %s is unknown", serial)
	}
	if err != nil {
		return steward.DeviceSession{}, err
	}
	if rec.DeviceID != cert.Subject.CommonName {
		s.authFailed(ctx, tenant, cert.Subject.CommonName, remote, "certificate "+serial+" belongs to another device")
		return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "certificate %s does not belong to %q", serial, cert.Subject.CommonName)
	}
	if rec.Revoked() {
		s.security(ctx, steward.SecurityEvent{TenantID: tenant, DeviceID: rec.DeviceID, Kind: steward.SecRevokedCredential, Remote: remote,
			Detail: "revoked certificate " + serial + " presented"})
		return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "certificate %s has been revoked", serial)
	}
	d, err := s.cfg.Store.GetDevice(ctx, tenant, rec.DeviceID)
	if err != nil {
		return steward.DeviceSession{}, err
	}
	if d.State == steward.StateDecommissioned {
		return steward.DeviceSession{}, steward.Errorf(steward.CodeUnauthenticated, "device %s is decommissioned", d.ID)
	}
	return steward.DeviceSession{TenantID: tenant, DeviceID: d.ID, State: d.State, CertSerial: serial, NotAfter: rec.NotAfter}, nil
}

// RecordSecurityEvent implements steward.DeviceGate.
func (s *Service) RecordSecurityEvent(ctx context.Context, e steward.SecurityEvent) {
	s.security(ctx, e)
}

func (s *Service) security(ctx context.Context, e steward.SecurityEvent) {
	if e.At.IsZero() {
		e.At = s.cfg.Clock.Now()
	}
	s.log.Warn("security event", "tenant", e.TenantID, "device", e.DeviceID, "kind", e.Kind, "detail", e.Detail, "remote", e.Remote)
	if err := s.cfg.Store.AddSecurityEvent(ctx, e); err != nil {
		s.log.Error("record security event", "kind", e.Kind, "err", err)
	} else if s.cfg.OnSecurityEvent != nil {
		s.cfg.OnSecurityEvent(ctx, e)
	}
	s.auditSecurity(ctx, e)
}

// authFailed records a refused authentication of a device's identity.
func (s *Service) authFailed(ctx context.Context, tenant, deviceID, remote, detail string) {
	if !steward.ValidDeviceID(deviceID) {
		deviceID = "" // not a name this server gives: nothing to count it against
	}
	s.security(ctx, steward.SecurityEvent{TenantID: tenant, DeviceID: deviceID, Kind: steward.SecAuthFailed, Remote: remote, Detail: detail})
}

// ---- validation before activation ----

// maxAttributesBytes bounds one attributes report; the broker's payload
// limit is larger, but inventory is small.
const maxAttributesBytes = 64 << 10

// handleAttributes folds an attributes report into the inventory and, while
// the device is provisioned (or quarantined by a failed validation), checks
// it against its enrollment group's policy: pass → active, fail →
// quarantined with the reasons. An active device that later changes to a
// model or firmware the policy refuses is quarantined too.
func (s *Service) handleAttributes(ctx context.Context, m steward.DeviceMessage, ack steward.Ack) {
	notify, err := s.applyAttributes(ctx, m)
	ack(err)
	if notify != nil {
		notify()
	}
}

// applyAttributes validates and stores a report; notify, when not nil,
// tells the device plane about a state change, once the report is acknowledged.
func (s *Service) applyAttributes(ctx context.Context, m steward.DeviceMessage) (notify func(), err error) {
	if len(m.Payload) > maxAttributesBytes {
		return nil, steward.Errorf(steward.CodeTooLarge, "an attributes report is at most %d bytes", maxAttributesBytes)
	}
	var attrs map[string]any
	if err := json.Unmarshal(m.Payload, &attrs); err != nil || attrs == nil {
		return nil, steward.Errorf(steward.CodeInvalid, "attributes must be a JSON object")
	}
	for _, k := range []string{steward.AttrModel, steward.AttrSerial, steward.AttrFirmware, steward.AttrHardware} {
		if v, ok := attrs[k]; ok {
			if _, isString := v.(string); !isString {
				return nil, steward.Errorf(steward.CodeInvalid, "attribute %q must be a string", k)
			}
		}
	}
	var group *steward.EnrollmentGroup
	_, notify, err = s.cfg.Lifecycle.ApplyDeferred(ctx, m.TenantID, m.DeviceID, func(d *steward.Device) ([]steward.LifecycleEvent, error) {
		prevModel, prevFirmware := d.Model, d.Firmware
		d.ApplyAttributes(attrs)
		changed := d.Model != prevModel || d.Firmware != prevFirmware
		if group == nil && d.EnrollmentGroupID != "" {
			g, err := s.cfg.Store.GetEnrollmentGroup(ctx, d.TenantID, d.EnrollmentGroupID)
			if err != nil && !steward.IsNotFound(err) {
				return nil, err
			}
			if err == nil {
				group = &g
			}
		}
		reasons, err := s.policyReasons(ctx, group, d)
		if err != nil {
			return nil, err
		}
		now := s.cfg.Clock.Now()
		switch {
		case len(reasons) == 0 && (d.State == steward.StateProvisioned || d.State == steward.StateQuarantined && d.StateActor == "system"):
			ev, err := steward.Transition(d, steward.StateActive, "validated against enrollment policy", "system", now)
			return []steward.LifecycleEvent{ev}, err
		case len(reasons) > 0 && (d.State == steward.StateProvisioned || d.State == steward.StateActive && changed):
			// An active device is judged again only when what the policy
			// looks at changed: an operator who released a device on
			// purpose is not overruled by its next report.
			ev, err := steward.Transition(d, steward.StateQuarantined, "validation failed: "+strings.Join(reasons, "; "), "system", now)
			return []steward.LifecycleEvent{ev}, err
		}
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	return notify, nil
}

// handlePresence records connects and disconnects: the device's current
// presence and a row of its presence history.
func (s *Service) handlePresence(ctx context.Context, p steward.PresenceChange) {
	d, err := s.cfg.Store.GetDevice(ctx, p.TenantID, p.DeviceID)
	if err != nil {
		s.log.Warn("presence for unknown device", "device", p.DeviceID, "err", err)
		return
	}
	if err := s.cfg.Store.AddPresenceEvent(ctx, steward.PresenceEvent{
		TenantID: p.TenantID, DeviceID: p.DeviceID, Online: p.Online, At: p.At, RemoteAddr: p.RemoteAddr,
	}); err != nil {
		s.log.Error("record presence history", "device", p.DeviceID, "err", err)
	}
	pr := d.Presence
	pr.LastSeen = p.At
	if p.Online {
		if !pr.ConnectedSince.IsZero() {
			pr.Reconnects++
		}
		pr.Online = true
		pr.ConnectedSince = p.At
		pr.RemoteAddr = p.RemoteAddr
	} else {
		pr.Online = false
	}
	if err := s.cfg.Store.UpdatePresence(ctx, p.TenantID, p.DeviceID, pr); err != nil {
		s.log.Error("record presence", "device", p.DeviceID, "err", err)
	}
}
