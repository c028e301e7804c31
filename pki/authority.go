// Package pki is Steward's certificate authority: a device CA per tenant,
// the server CA and the server's TLS certificate, device certificate
// issuance and verification, certificate request checks, and the sealing of
// server-held secrets at rest (AES-256-GCM under a master key).
//
// Every key lives in the store as a secret sealed by a Keyring, under a
// fixed name, so that nodes sharing a store share the CAs: CreateSecret
// refuses a name that is taken, and the node that loses a creation race
// reads the winner's CA instead of keeping its own.
package pki

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/steward-iot/steward"
)

// Defaults of Config.
const (
	DefaultDeviceCertValidity = 90 * 24 * time.Hour
	DefaultServerCertValidity = 365 * 24 * time.Hour
)

// caYears is the life of a CA certificate.
const caYears = 10

// backdate is how far NotBefore lies before the issuing moment, so that a
// device whose clock is a little behind still accepts a fresh certificate.
const backdate = time.Minute

// Secret names. A device CA's name ends with its tenant ID.
const (
	secretServerCA        = "pki/server-ca"
	secretDeviceCAPrefix  = "pki/device-ca/"
	secretServerTLSPrefix = "pki/server-tls/"
)

// organization is the O of every subject Steward issues.
const organization = "Steward"

// Config configures an Authority.
type Config struct {
	// Store holds the sealed CAs; only CreateSecret, GetSecret and
	// ListTenants are used.
	Store steward.Store
	// MasterKey is the MasterKeySize-byte key-encryption key.
	MasterKey []byte
	// DeviceCertValidity is the life of an operational device certificate
	// (default DefaultDeviceCertValidity).
	DeviceCertValidity time.Duration
	// ServerCertValidity is the life of the server's TLS certificate
	// (default DefaultServerCertValidity); it is re-issued when less than a
	// third of it remains.
	ServerCertValidity time.Duration
	// Clock tells the time (default steward.SystemClock).
	Clock steward.Clock
	// Logger receives CA creation and issuance records (default: discarded).
	Logger *slog.Logger
}

// Authority implements steward.Authority over a Store. It is safe for
// concurrent use.
type Authority struct {
	store          steward.Store
	keys           *Keyring
	clock          steward.Clock
	log            *slog.Logger
	deviceValidity time.Duration
	serverValidity time.Duration
	hostname       string
	serverCA       *signer

	mu     sync.Mutex         // guards cas and bySKID
	cas    map[string]*signer // tenant ID → device CA
	bySKID map[string]*signer // hex SubjectKeyId → device CA

	createMu sync.Mutex // serialises CA creation in this process

	tlsMu sync.Mutex            // guards tls; held while a server certificate is loaded or issued
	tls   map[string]*serverTLS // host set → current certificate

	rot rotation // device CA generations (rotation.go)
}

var _ steward.Authority = (*Authority)(nil)

// signer is a certificate with its private key: a CA or the server's
// TLS identity.
type signer struct {
	cert     *x509.Certificate
	key      crypto.Signer
	tenantID string         // device CAs only
	gen      int            // device CAs: the generation (see rotation.go)
	roots    *x509.CertPool // this CA alone, for verification
}

// record is a signer as stored: the whole record is sealed, so the
// certificate is as tamper-evident as the key.
type record struct {
	Cert []byte `json:"cert"` // DER
	Key  []byte `json:"key"`  // PKCS#8 DER
}

// New returns an Authority, creating the server CA on first start (or
// reading the one another node created).
func New(ctx context.Context, cfg Config) (*Authority, error) {
	if cfg.Store == nil {
		return nil, errors.New("pki: no store")
	}
	keys, err := NewKeyring(cfg.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	a := &Authority{
		store:          cfg.Store,
		keys:           keys,
		clock:          cfg.Clock,
		log:            cfg.Logger,
		deviceValidity: cfg.DeviceCertValidity,
		serverValidity: cfg.ServerCertValidity,
		cas:            map[string]*signer{},
		bySKID:         map[string]*signer{},
		tls:            map[string]*serverTLS{},
	}
	if a.clock == nil {
		a.clock = steward.SystemClock{}
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.deviceValidity <= 0 {
		a.deviceValidity = DefaultDeviceCertValidity
	}
	if a.serverValidity <= 0 {
		a.serverValidity = DefaultServerCertValidity
	}
	if h, err := os.Hostname(); err == nil {
		if n, ok := normalizeHost(h); ok {
			a.hostname = n
		} else {
			a.log.Warn("host name is not a valid DNS name; left out of the server certificate", "hostname", h)
		}
	}
	a.createMu.Lock()
	defer a.createMu.Unlock()
	ca, err := a.loadOrCreate(ctx, secretServerCA, func() (*signer, error) {
		s, err := newCA(a.clock.Now(), pkix.Name{CommonName: "Steward server CA", Organization: []string{organization}})
		if err == nil {
			a.log.Info("created server CA", "serial", serialHex(s.cert), "not_after", s.cert.NotAfter)
		}
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("pki: server CA: %w", err)
	}
	a.serverCA = ca
	return a, nil
}

// ServerCA returns the CA that signs the server's TLS certificates.
func (a *Authority) ServerCA() *x509.Certificate { return a.serverCA.cert }

// DeviceCA returns the tenant's device CA certificate, creating the CA on
// first use. The tenant must exist in the store (CodeNotFound otherwise), so
// that a name from the network cannot make the server mint CAs.
func (a *Authority) DeviceCA(ctx context.Context, tenantID string) (*x509.Certificate, error) {
	ca, err := a.deviceCA(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	return ca.cert, nil
}

// deviceCA returns the tenant's device CA that issues: the active
// generation after a rotation, else generation 0, created when create is set
// and there is none.
func (a *Authority) deviceCA(ctx context.Context, tenantID string, create bool) (*signer, error) {
	if err := checkTenantID(tenantID); err != nil {
		return nil, err
	}
	gens, err := a.generations(ctx, tenantID, false)
	if err != nil {
		return nil, err
	}
	if gen := activeGeneration(gens); gen > 0 {
		return a.generationCA(ctx, tenantID, gen)
	}
	return a.deviceCA0(ctx, tenantID, create)
}

// deviceCA0 returns a tenant's first device CA (generation 0) from the
// cache or the store, and creates it when create is set and there is none.
func (a *Authority) deviceCA0(ctx context.Context, tenantID string, create bool) (*signer, error) {
	a.mu.Lock()
	ca := a.cas[tenantID]
	a.mu.Unlock()
	if ca != nil {
		return ca, nil
	}
	var mk func() (*signer, error)
	if create {
		a.createMu.Lock()
		defer a.createMu.Unlock()
		a.mu.Lock()
		ca = a.cas[tenantID]
		a.mu.Unlock()
		if ca != nil {
			return ca, nil
		}
		mk = func() (*signer, error) { return a.newDeviceCA(ctx, tenantID) }
	}
	name := secretDeviceCAPrefix + tenantID
	ca, err := a.loadOrCreate(ctx, name, mk)
	if err != nil {
		if steward.IsNotFound(err) && !create {
			return nil, steward.WrapError(steward.CodeNotFound, err, "tenant %q has no device CA", tenantID)
		}
		return nil, fmt.Errorf("device CA of tenant %s: %w", tenantID, err)
	}
	if !ca.cert.IsCA || len(ca.cert.SubjectKeyId) == 0 || !slices.Equal(ca.cert.Subject.OrganizationalUnit, []string{tenantID}) {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s does not hold tenant %s's device CA", name, tenantID)
	}
	ca.tenantID = tenantID
	ca.roots = x509.NewCertPool()
	ca.roots.AddCert(ca.cert)
	a.mu.Lock()
	defer a.mu.Unlock()
	if cached := a.cas[tenantID]; cached != nil {
		return cached, nil
	}
	a.cas[tenantID] = ca
	a.bySKID[hex.EncodeToString(ca.cert.SubjectKeyId)] = ca
	return ca, nil
}

func (a *Authority) newDeviceCA(ctx context.Context, tenantID string) (*signer, error) {
	tenants, err := a.store.ListTenants(ctx)
	if err != nil {
		return nil, fmt.Errorf("list tenants: %w", err)
	}
	found := false
	for _, t := range tenants {
		if t.ID == tenantID {
			found = true
			break
		}
	}
	if !found {
		return nil, steward.Errorf(steward.CodeNotFound, "no tenant %q", tenantID)
	}
	ca, err := newCA(a.clock.Now(), pkix.Name{
		CommonName:         "Steward device CA",
		Organization:       []string{organization},
		OrganizationalUnit: []string{tenantID},
	})
	if err != nil {
		return nil, err
	}
	a.log.Info("created device CA", "tenant", tenantID, "serial", serialHex(ca.cert), "not_after", ca.cert.NotAfter)
	return ca, nil
}

// IssueDevice signs an operational certificate for the CSR's public key:
// CN = deviceID, OU = tenantID, client authentication only, valid from a
// minute ago for the configured period (never past the CA's own end).
func (a *Authority) IssueDevice(ctx context.Context, tenantID, deviceID string, csr *x509.CertificateRequest) (*x509.Certificate, error) {
	if !steward.ValidDeviceID(deviceID) {
		return nil, steward.Errorf(steward.CodeInvalid, "invalid device ID %q", deviceID)
	}
	if err := checkCSR(csr); err != nil {
		return nil, err
	}
	if _, err := a.generations(ctx, tenantID, true); err != nil { // issue with the CA active now, not the one cached
		return nil, err
	}
	ca, err := a.deviceCA(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			CommonName:         deviceID,
			Organization:       []string{organization},
			OrganizationalUnit: []string{tenantID},
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	cert, err := issueLeaf(ca, tmpl, csr.PublicKey, a.clock.Now(), a.deviceValidity)
	if err != nil {
		return nil, fmt.Errorf("issue certificate for device %s: %w", deviceID, err)
	}
	a.log.Debug("issued device certificate", "tenant", tenantID, "device", deviceID, "serial", serialHex(cert), "not_after", cert.NotAfter)
	return cert, nil
}

// VerifyDevice checks that cert was issued by a tenant's device CA and is
// valid now, and returns the tenant's ID. The CA is found by the
// certificate's authority key identifier (the OU only says which tenant's
// CA to load when it is not cached yet) and the signature is checked
// against that one CA alone: subject text proves nothing by itself.
func (a *Authority) VerifyDevice(ctx context.Context, cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", steward.Errorf(steward.CodeUnauthenticated, "no client certificate")
	}
	if cert.IsCA {
		return "", steward.Errorf(steward.CodeUnauthenticated, "a CA certificate cannot identify a device")
	}
	foreign := steward.Errorf(steward.CodeUnauthenticated, "certificate %s was not issued by a Steward device CA", describe(cert))
	if len(cert.AuthorityKeyId) == 0 {
		return "", foreign
	}
	a.mu.Lock()
	ca := a.bySKID[hex.EncodeToString(cert.AuthorityKeyId)]
	a.mu.Unlock()
	if ca == nil {
		ou := cert.Subject.OrganizationalUnit
		if len(ou) != 1 || checkTenantID(ou[0]) != nil {
			return "", foreign
		}
		var err error
		if ca, err = a.caByKeyID(ctx, ou[0], cert.AuthorityKeyId, cert); err != nil {
			return "", err
		}
	}
	now := a.clock.Now()
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:       ca.roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return "", verifyError(cert, now, err)
	}
	if err := a.checkGeneration(ctx, ca, cert, now); err != nil {
		return "", err
	}
	if !slices.Equal(cert.Subject.OrganizationalUnit, []string{ca.tenantID}) {
		return "", steward.Errorf(steward.CodeUnauthenticated, "certificate %s names another tenant than its issuing CA", describe(cert))
	}
	if !steward.ValidDeviceID(cert.Subject.CommonName) {
		return "", steward.Errorf(steward.CodeUnauthenticated, "certificate %s does not name a device", describe(cert))
	}
	return ca.tenantID, nil
}

// verifyError turns an x509 verification failure into a caller-safe
// CodeUnauthenticated error.
func verifyError(cert *x509.Certificate, now time.Time, err error) error {
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			if now.After(cert.NotAfter) {
				return steward.WrapError(steward.CodeUnauthenticated, err, "certificate %s expired at %s", describe(cert), cert.NotAfter.UTC().Format(time.RFC3339))
			}
			return steward.WrapError(steward.CodeUnauthenticated, err, "certificate %s is not valid before %s", describe(cert), cert.NotBefore.UTC().Format(time.RFC3339))
		case x509.IncompatibleUsage:
			return steward.WrapError(steward.CodeUnauthenticated, err, "certificate %s is not for client authentication", describe(cert))
		}
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return steward.WrapError(steward.CodeUnauthenticated, err, "certificate %s was not signed by its tenant's device CA", describe(cert))
	}
	return steward.WrapError(steward.CodeUnauthenticated, err, "certificate %s does not verify: %v", describe(cert), err)
}

// describe names a certificate in messages by its CN and serial.
func describe(cert *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", cert.Subject.CommonName, serialHex(cert))
}

func serialHex(cert *x509.Certificate) string {
	if cert.SerialNumber == nil {
		return "none"
	}
	return cert.SerialNumber.Text(16)
}

// loadOrCreate reads the signer stored under name; when there is none and
// create is not nil, it creates one and stores it. When another node stored
// one first, that one is returned.
func (a *Authority) loadOrCreate(ctx context.Context, name string, create func() (*signer, error)) (*signer, error) {
	s, err := a.load(ctx, name)
	if err == nil || !steward.IsNotFound(err) || create == nil {
		return s, err
	}
	s, err = create()
	if err != nil {
		return nil, err
	}
	if err := a.save(ctx, name, s); err != nil {
		if steward.IsConflict(err) {
			a.log.Info("another node created the secret first; using theirs", "secret", name)
			return a.load(ctx, name)
		}
		return nil, err
	}
	return s, nil
}

func (a *Authority) load(ctx context.Context, name string) (*signer, error) {
	sealed, err := a.store.GetSecret(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	plain, err := a.keys.Open(name, sealed)
	if err != nil {
		return nil, err
	}
	var rec record
	if err := json.Unmarshal(plain, &rec); err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "secret %s is not a key record", name)
	}
	cert, err := x509.ParseCertificate(rec.Cert)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "secret %s holds a bad certificate", name)
	}
	k, err := x509.ParsePKCS8PrivateKey(rec.Key)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInternal, err, "secret %s holds a bad private key", name)
	}
	key, ok := k.(crypto.Signer)
	if !ok {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s holds a %T, which cannot sign", name, k)
	}
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(key.Public()) {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s holds a key that does not match its certificate", name)
	}
	return &signer{cert: cert, key: key}, nil
}

// save seals a signer and creates it under name.
func (a *Authority) save(ctx context.Context, name string, s *signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(s.key)
	if err != nil {
		return fmt.Errorf("marshal key for %s: %w", name, err)
	}
	plain, err := json.Marshal(record{Cert: s.cert.Raw, Key: der})
	if err != nil {
		return fmt.Errorf("marshal record for %s: %w", name, err)
	}
	sealed, err := a.keys.Seal(name, plain)
	if err != nil {
		return err
	}
	if err := a.store.CreateSecret(ctx, name, sealed); err != nil {
		return fmt.Errorf("store secret %s: %w", name, err)
	}
	return nil
}

// newCA makes a self-signed ECDSA P-256 CA that may sign only end-entity
// certificates (path length 0).
func newCA(now time.Time, subject pkix.Name) (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(caYears, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SubjectKeyId:          skid,
	}
	cert, err := sign(tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}
	return &signer{cert: cert, key: key}, nil
}

// issueLeaf signs an end-entity certificate for pub with ca. It completes
// tmpl (subject and extended key usage set by the caller): a random serial,
// the subject key ID, digital signature only, valid from backdate before
// now for validity, never past the CA's own end.
func issueLeaf(ca *signer, tmpl *x509.Certificate, pub crypto.PublicKey, now time.Time, validity time.Duration) (*x509.Certificate, error) {
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := subjectKeyID(pub)
	if err != nil {
		return nil, err
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	tmpl.SerialNumber = serial
	tmpl.SubjectKeyId = skid
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	return sign(tmpl, ca.cert, pub, ca.key)
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, key crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// randomSerial returns a random, positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	b[15] |= 1 // never zero
	return new(big.Int).SetBytes(b), nil
}

// subjectKeyID is RFC 7093 method 1: the leftmost 160 bits of the SHA-256
// of the subjectPublicKey bits.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, steward.WrapError(steward.CodeInvalid, err, "unsupported public key")
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("subject key ID: %w", err)
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// checkTenantID refuses tenant IDs that cannot safely be part of a secret
// name or an OU.
func checkTenantID(id string) error {
	if id == "" || len(id) > 64 {
		return steward.Errorf(steward.CodeInvalid, "tenant ID must be 1 to 64 characters")
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return steward.Errorf(steward.CodeInvalid, "tenant ID %q may hold only letters, digits, '-', '_' and '.'", id)
		}
	}
	return nil
}
