package pki

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/steward-iot/steward"
)

// Rotation of a tenant's device CA. The CA a tenant starts with is
// generation 0, stored under secretDeviceCAPrefix+tenant as before; a
// rotation makes generation n under secretDeviceCAPrefix+tenant+"/"+n and
// records every generation in the store (steward.CAGeneration). The active
// generation issues; the previous one is still trusted until its overlap
// ends; a retired one is not trusted at all.
//
// Nodes sharing a store learn of a rotation through the generation rows,
// which each node reads again at most genTTL after it last did (at once for
// an issuance, which must use the active CA). Retiring a CA also revokes its
// certificates in the registry (package credentials), so every node refuses
// them at the next handshake whatever its cache says.

// genTTL is how long a node trusts what it read of a tenant's generations.
const genTTL = 15 * time.Second

// MaxOverlap bounds the overlap of a rotation: longer than a device
// certificate's life gains nothing, since every device renews within it.
const MaxOverlap = 2 * 365 * 24 * time.Hour

// genView is what a node knows of a tenant's generations.
type genView struct {
	at   time.Time
	gens []steward.CAGeneration // empty: never rotated, generation 0 is active
}

// rotation holds the Authority's rotation state; the zero value is ready.
type rotation struct {
	mu    sync.Mutex // serialises rotations and retirements in this process
	viewM sync.Mutex
	views map[string]genView // tenant → generations
	cas   map[string]*signer // secret name → a generation n ≥ 1
}

func genSecret(tenantID string, gen int) string {
	if gen == 0 {
		return secretDeviceCAPrefix + tenantID
	}
	return secretDeviceCAPrefix + tenantID + "/" + strconv.Itoa(gen)
}

// generations returns the tenant's generations, from the cache unless it is
// older than genTTL or fresh is set.
func (a *Authority) generations(ctx context.Context, tenantID string, fresh bool) ([]steward.CAGeneration, error) {
	now := time.Now()
	a.rot.viewM.Lock()
	v, ok := a.rot.views[tenantID]
	a.rot.viewM.Unlock()
	if ok && !fresh && now.Sub(v.at) < genTTL {
		return v.gens, nil
	}
	gens, err := a.store.ListCAGenerations(ctx, tenantID)
	if err != nil {
		return nil, fmt.Errorf("device CA generations of tenant %s: %w", tenantID, err)
	}
	a.rot.viewM.Lock()
	if a.rot.views == nil {
		a.rot.views = map[string]genView{}
	}
	a.rot.views[tenantID] = genView{at: now, gens: gens}
	a.rot.viewM.Unlock()
	return gens, nil
}

// activeGeneration is the generation that issues (0 when never rotated).
func activeGeneration(gens []steward.CAGeneration) int {
	for _, g := range gens {
		if g.State == steward.CAActive {
			return g.Generation
		}
	}
	return 0
}

// generationCA returns generation gen ≥ 1 of a tenant's device CA.
func (a *Authority) generationCA(ctx context.Context, tenantID string, gen int) (*signer, error) {
	if gen == 0 {
		return a.deviceCA0(ctx, tenantID, false)
	}
	name := genSecret(tenantID, gen)
	a.rot.viewM.Lock()
	ca := a.rot.cas[name]
	a.rot.viewM.Unlock()
	if ca != nil {
		return ca, nil
	}
	ca, err := a.load(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("device CA generation %d of tenant %s: %w", gen, tenantID, err)
	}
	if !ca.cert.IsCA || len(ca.cert.SubjectKeyId) == 0 || !slices.Equal(ca.cert.Subject.OrganizationalUnit, []string{tenantID}) {
		return nil, steward.Errorf(steward.CodeInternal, "secret %s does not hold tenant %s's device CA", name, tenantID)
	}
	ca.tenantID, ca.gen = tenantID, gen
	ca.roots = x509.NewCertPool()
	ca.roots.AddCert(ca.cert)
	a.rot.viewM.Lock()
	if a.rot.cas == nil {
		a.rot.cas = map[string]*signer{}
	}
	if cached := a.rot.cas[name]; cached != nil {
		ca = cached
	} else {
		a.rot.cas[name] = ca
	}
	a.rot.viewM.Unlock()
	a.mu.Lock()
	a.bySKID[hex.EncodeToString(ca.cert.SubjectKeyId)] = ca
	a.mu.Unlock()
	return ca, nil
}

// caByKeyID finds the tenant's device CA, of any generation, whose subject
// key ID is keyID: CodeUnauthenticated when none is.
func (a *Authority) caByKeyID(ctx context.Context, tenantID string, keyID []byte, cert *x509.Certificate) (*signer, error) {
	foreign := steward.Errorf(steward.CodeUnauthenticated, "certificate %s was not issued by a Steward device CA", describe(cert))
	gens, err := a.generations(ctx, tenantID, false)
	if err != nil {
		return nil, err
	}
	want := hex.EncodeToString(keyID)
	if len(gens) == 0 {
		gens = []steward.CAGeneration{{Generation: 0}}
	}
	for _, g := range gens {
		if g.KeyID != "" && g.KeyID != want {
			continue
		}
		ca, err := a.generationCA(ctx, tenantID, g.Generation)
		if steward.IsNotFound(err) {
			return nil, foreign
		}
		if err != nil {
			return nil, err
		}
		if bytes.Equal(ca.cert.SubjectKeyId, keyID) {
			return ca, nil
		}
	}
	return nil, foreign
}

// checkGeneration refuses a certificate of a retired generation, or of the
// previous one after its overlap.
func (a *Authority) checkGeneration(ctx context.Context, ca *signer, cert *x509.Certificate, now time.Time) error {
	gens, err := a.generations(ctx, ca.tenantID, false)
	if err != nil {
		return err
	}
	for _, g := range gens {
		if g.Generation != ca.gen {
			continue
		}
		switch {
		case g.State == steward.CAActive:
			return nil
		case g.State == steward.CAPrevious && g.OverlapUntil != nil && now.Before(*g.OverlapUntil):
			return nil
		default:
			return steward.Errorf(steward.CodeUnauthenticated, "certificate %s was issued by a retired device CA (generation %d)", describe(cert), g.Generation)
		}
	}
	if len(gens) > 0 && ca.gen == 0 {
		return steward.Errorf(steward.CodeUnauthenticated, "certificate %s was issued by a retired device CA (generation 0)", describe(cert))
	}
	return nil
}

// RotateDeviceCA implements steward.CARotator: a new device CA is made and
// becomes the one that issues; the one that issued until now stays trusted
// for overlap. A rotation while a previous CA is still within its overlap
// is refused (CodeFailedPrecondition): retire it first.
func (a *Authority) RotateDeviceCA(ctx context.Context, tenantID string, overlap time.Duration, approvalID string) ([]steward.CAGenerationInfo, error) {
	if overlap <= 0 || overlap > MaxOverlap {
		return nil, steward.Errorf(steward.CodeInvalid, "overlap must be more than 0 and at most %s", MaxOverlap)
	}
	if _, err := a.DeviceCA(ctx, tenantID); err != nil { // generation 0 exists, and the tenant too
		return nil, err
	}
	a.rot.mu.Lock()
	defer a.rot.mu.Unlock()
	gens, err := a.generations(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	now := a.clock.Now()
	var current steward.CAGeneration
	if len(gens) == 0 {
		ca0, err := a.deviceCA0(ctx, tenantID, false)
		if err != nil {
			return nil, err
		}
		current = steward.CAGeneration{TenantID: tenantID, Generation: 0, KeyID: hex.EncodeToString(ca0.cert.SubjectKeyId), State: steward.CAActive, CreatedAt: ca0.cert.NotBefore}
	}
	var retire []steward.CAGeneration
	for _, g := range gens {
		switch {
		case g.State == steward.CAActive:
			current = g
		case g.State == steward.CAPrevious && g.OverlapUntil != nil && now.Before(*g.OverlapUntil):
			return nil, steward.Errorf(steward.CodeFailedPrecondition,
				"device CA generation %d is still trusted until %s; retire it first (steward ca retire-old)", g.Generation, g.OverlapUntil.UTC().Format(time.RFC3339))
		case g.State == steward.CAPrevious:
			retire = append(retire, g)
		}
	}
	next := current.Generation + 1
	for _, g := range gens {
		next = max(next, g.Generation+1)
	}
	name := genSecret(tenantID, next)
	ca, err := a.loadOrCreate(ctx, name, func() (*signer, error) {
		return newCA(now, pkix.Name{
			CommonName:         fmt.Sprintf("Steward device CA %d", next),
			Organization:       []string{organization},
			OrganizationalUnit: []string{tenantID},
		})
	})
	if err != nil {
		return nil, fmt.Errorf("create device CA generation %d: %w", next, err)
	}
	until := now.Add(overlap)
	current.State, current.OverlapUntil = steward.CAPrevious, &until
	err = a.store.InTx(ctx, func(tx steward.Store) error {
		if len(gens) == 0 {
			if err := tx.AddCAGeneration(ctx, current); err != nil {
				return err
			}
		} else if err := tx.UpdateCAGeneration(ctx, current); err != nil {
			return err
		}
		for _, g := range retire {
			g.State, g.RetiredAt = steward.CARetired, &now
			if err := tx.UpdateCAGeneration(ctx, g); err != nil {
				return err
			}
		}
		return tx.AddCAGeneration(ctx, steward.CAGeneration{TenantID: tenantID, Generation: next, KeyID: hex.EncodeToString(ca.cert.SubjectKeyId),
			State: steward.CAActive, ApprovalID: approvalID, CreatedAt: now})
	})
	if err != nil {
		return nil, fmt.Errorf("record device CA rotation: %w", err)
	}
	a.log.Info("rotated device CA", "tenant", tenantID, "generation", next, "serial", serialHex(ca.cert), "previous", current.Generation, "overlap_until", until)
	return a.DeviceCAStatus(ctx, tenantID)
}

// RetirePreviousCA implements steward.CARotator: the previous generation is
// no longer trusted, whatever is left of its overlap. CodeFailedPrecondition
// when there is none.
func (a *Authority) RetirePreviousCA(ctx context.Context, tenantID string) ([]steward.CAGenerationInfo, error) {
	if err := checkTenantID(tenantID); err != nil {
		return nil, err
	}
	a.rot.mu.Lock()
	defer a.rot.mu.Unlock()
	gens, err := a.generations(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	now := a.clock.Now()
	n := 0
	for _, g := range gens {
		if g.State != steward.CAPrevious {
			continue
		}
		g.State, g.RetiredAt = steward.CARetired, &now
		if err := a.store.UpdateCAGeneration(ctx, g); err != nil {
			return nil, err
		}
		a.log.Info("retired device CA", "tenant", tenantID, "generation", g.Generation)
		n++
	}
	if n == 0 {
		return nil, steward.Errorf(steward.CodeFailedPrecondition, "tenant %s has no previous device CA to retire", tenantID)
	}
	if _, err := a.generations(ctx, tenantID, true); err != nil {
		return nil, err
	}
	return a.DeviceCAStatus(ctx, tenantID)
}

// DeviceCAStatus implements steward.CARotator.
func (a *Authority) DeviceCAStatus(ctx context.Context, tenantID string) ([]steward.CAGenerationInfo, error) {
	if _, err := a.DeviceCA(ctx, tenantID); err != nil {
		return nil, err
	}
	gens, err := a.generations(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	if len(gens) == 0 {
		gens = []steward.CAGeneration{{TenantID: tenantID, State: steward.CAActive}}
	}
	out := make([]steward.CAGenerationInfo, 0, len(gens))
	for _, g := range gens {
		ca, err := a.generationCA(ctx, tenantID, g.Generation)
		if err != nil {
			return nil, err
		}
		if g.KeyID == "" {
			g.KeyID = hex.EncodeToString(ca.cert.SubjectKeyId)
			g.CreatedAt = ca.cert.NotBefore.Add(backdate).UTC()
		}
		out = append(out, steward.CAGenerationInfo{CAGeneration: g, Serial: serialHex(ca.cert), NotAfter: ca.cert.NotAfter.UTC(),
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}))})
	}
	return out, nil
}

// TrustedDeviceCAs implements steward.CARotator.
func (a *Authority) TrustedDeviceCAs(ctx context.Context, tenantID string) ([]*x509.Certificate, error) {
	active, err := a.DeviceCA(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	out := []*x509.Certificate{active}
	gens, err := a.generations(ctx, tenantID, false)
	if err != nil {
		return nil, err
	}
	now := a.clock.Now()
	for _, g := range gens {
		if g.State != steward.CAPrevious || g.OverlapUntil == nil || !now.Before(*g.OverlapUntil) {
			continue
		}
		ca, err := a.generationCA(ctx, tenantID, g.Generation)
		if err != nil {
			return nil, err
		}
		out = append(out, ca.cert)
	}
	return out, nil
}

// SignCRL implements steward.CARotator. The CRL is signed by the tenant's
// device CA of any generation whose subject key ID is issuerKeyID.
func (a *Authority) SignCRL(ctx context.Context, tenantID, issuerKeyID string, tmpl *x509.RevocationList) ([]byte, error) {
	kid, err := hex.DecodeString(issuerKeyID)
	if err != nil {
		return nil, steward.Errorf(steward.CodeInvalid, "issuer key ID must be hex")
	}
	if _, err := a.DeviceCA(ctx, tenantID); err != nil {
		return nil, err
	}
	ca, err := a.caByKeyID(ctx, tenantID, kid, &x509.Certificate{})
	if err != nil {
		return nil, steward.Errorf(steward.CodeNotFound, "tenant %s has no device CA with key ID %s", tenantID, issuerKeyID)
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return der, nil
}

// SignRecord implements steward.CARotator: a CMS SignedData (RFC 5652) with
// data as its content, signed with SHA-256 by the tenant's active device CA,
// which travels in the SignedData. Anyone with the tenant's CA certificate
// checks it with `openssl cms -verify -binary -CAfile ca.pem`. The CA key
// signs the DER of the signed attributes (a SET), never anything shaped
// like a certificate, so a record cannot be passed off as one.
func (a *Authority) SignRecord(ctx context.Context, tenantID string, data []byte) ([]byte, error) {
	ca, err := a.deviceCA(ctx, tenantID, true)
	if err != nil {
		return nil, err
	}
	sd, err := pkcs7.NewSignedData(data)
	if err != nil {
		return nil, fmt.Errorf("sign record: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSigner(ca.cert, ca.key, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("sign record: %w", err)
	}
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("sign record: %w", err)
	}
	return der, nil
}

var _ steward.CARotator = (*Authority)(nil)
