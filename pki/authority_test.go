package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/steward-iot/steward"
)

func TestNewRefusesBadConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if _, err := New(context.Background(), Config{MasterKey: e.key}); err == nil {
		t.Error("New without a store succeeded")
	}
	_, err := New(context.Background(), Config{Store: e.store, MasterKey: e.key[:16]})
	wantCode(t, err, steward.CodeInvalid, "32 bytes")
	if e.writes() != 0 {
		t.Error("a refused New wrote secrets")
	}
}

func TestCAsPersistAcrossRestarts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme", "globex")
	a := e.authority(t)
	ca1, err := a.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if again != ca1 {
		t.Error("second DeviceCA call did not come from the cache")
	}
	other, err := a.DeviceCA(ctx, "globex")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(other.Raw, ca1.Raw) || bytes.Equal(other.SubjectKeyId, ca1.SubjectKeyId) {
		t.Error("two tenants share a device CA")
	}

	e.clock.Advance(24 * time.Hour)
	b := e.authority(t) // a restart: new process, same store and master key
	if !bytes.Equal(b.ServerCA().Raw, a.ServerCA().Raw) {
		t.Error("server CA changed across a restart")
	}
	ca2, err := b.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca2.Raw, ca1.Raw) {
		t.Error("device CA changed across a restart")
	}
	if n := e.writes(); n != 3 {
		t.Errorf("%d secrets stored, want 3 (server CA and two device CAs)", n)
	}
	for _, name := range []string{secretServerCA, secretDeviceCAPrefix + "acme", secretDeviceCAPrefix + "globex"} {
		v, err := e.store.GetSecret(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(v, ca1.Raw[:40]) || bytes.Contains(v, a.ServerCA().Raw[:40]) || bytes.Contains(v, []byte("cert")) {
			t.Errorf("secret %s is stored in the clear", name)
		}
	}

	// Another master key cannot open the stored CAs: the server refuses to
	// start rather than make new ones.
	_, err = New(ctx, Config{Store: e.store, MasterKey: randomKey(t), Clock: e.clock})
	wantCode(t, err, steward.CodeInternal, "does not open")
	if n := e.writes(); n != 3 {
		t.Error("a refused start stored secrets")
	}
}

func TestTamperedCAIsRefused(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme", "globex")
	a := e.authority(t)
	if _, err := a.DeviceCA(ctx, "globex"); err != nil {
		t.Fatal(err)
	}
	// Store globex's sealed CA under acme's name, as someone with write
	// access to the database could: the sealed value is bound to its name,
	// so the copy does not open, and no CA is made in its place.
	sealed, err := e.store.GetSecret(ctx, secretDeviceCAPrefix+"globex")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateSecret(ctx, secretDeviceCAPrefix+"acme", sealed); err != nil {
		t.Fatal(err)
	}
	before := e.writes()
	_, err = a.DeviceCA(ctx, "acme")
	wantCode(t, err, steward.CodeInternal, "does not open")
	if _, err := a.IssueDevice(ctx, "acme", "d-1", newCSR(t, p256(t))); steward.ErrorCode(err) != steward.CodeInternal {
		t.Errorf("issuance under a tampered CA: %v", err)
	}
	if e.writes() != before {
		t.Error("a CA was created over the tampered one")
	}
}

func TestDeviceCAProperties(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "acme")
	a := e.authority(t)
	ca, err := a.DeviceCA(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", ca.PublicKey)
	}
	if !ca.IsCA || !ca.BasicConstraintsValid || ca.MaxPathLen != 0 || !ca.MaxPathLenZero {
		t.Errorf("basic constraints: CA=%v valid=%v pathlen=%d zero=%v", ca.IsCA, ca.BasicConstraintsValid, ca.MaxPathLen, ca.MaxPathLenZero)
	}
	if len(ca.SubjectKeyId) != 20 {
		t.Errorf("SubjectKeyId is %d bytes", len(ca.SubjectKeyId))
	}
	if ca.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Error("CA may not sign certificates")
	}
	now := e.clock.Now()
	if !ca.NotBefore.Equal(now.Add(-time.Minute)) || !ca.NotAfter.Equal(now.AddDate(10, 0, 0)) {
		t.Errorf("validity %s – %s, want ten years from %s", ca.NotBefore, ca.NotAfter, now)
	}
	if got := ca.Subject.OrganizationalUnit; len(got) != 1 || got[0] != "acme" {
		t.Errorf("OU = %v", got)
	}
	if err := ca.CheckSignatureFrom(ca); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	if bytes.Equal(ca.Raw, a.ServerCA().Raw) {
		t.Error("device CA is the server CA")
	}
	if !a.ServerCA().IsCA || a.ServerCA().MaxPathLen != 0 || !a.ServerCA().MaxPathLenZero {
		t.Error("server CA constraints")
	}
}

func TestDeviceCARefusals(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "acme")
	a := e.authority(t)
	before := e.writes()
	for _, tc := range []struct {
		name, tenant string
		code         steward.Code
		want         string
	}{
		{"unknown tenant", "nobody", steward.CodeNotFound, `no tenant "nobody"`},
		{"empty", "", steward.CodeInvalid, "1 to 64"},
		{"path", "../server-ca", steward.CodeInvalid, "may hold only"},
		{"long", string(bytes.Repeat([]byte("a"), 65)), steward.CodeInvalid, "1 to 64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := a.DeviceCA(context.Background(), tc.tenant)
			wantCode(t, err, tc.code, tc.want)
			if ca != nil {
				t.Error("got a CA")
			}
		})
	}
	if e.writes() != before {
		t.Error("refused DeviceCA calls wrote secrets")
	}
}

// TestConcurrentFirstUse starts two nodes on one store and has both ask for
// a new tenant's CA at once: exactly one CA is created and all agree on it.
func TestConcurrentFirstUse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "acme")
	// Two nodes, each with its own connections to the database.
	hs := &hookStore{Store: e.open(t), creates: map[string]int{}}
	nodes := []*Authority{
		e.authority(t),
		e.authority(t, func(c *Config) { c.Store = hs }),
	}
	const perNode = 16
	certs := make([]*x509.Certificate, 2*perNode)
	errs := make([]error, 2*perNode)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range certs {
		wg.Go(func() {
			<-start
			certs[i], errs[i] = nodes[i%2].DeviceCA(context.Background(), "acme")
		})
	}
	close(start)
	wg.Wait()
	for i := range certs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !bytes.Equal(certs[i].Raw, certs[0].Raw) {
			t.Fatal("callers got different CAs")
		}
	}
	if n := hs.created(secretDeviceCAPrefix+"acme") + e.hooks.created(secretDeviceCAPrefix+"acme"); n != 1 {
		t.Errorf("device CA stored %d times, want 1", n)
	}
}

// TestCreationRaceLoser makes another node store its CA between this
// node's miss and its own CreateSecret: this node must adopt the winner's.
func TestCreationRaceLoser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	winner := e.authority(t)
	hs := &hookStore{Store: e.open(t), creates: map[string]int{}}
	var once sync.Once
	var winnerCA *x509.Certificate
	hs.onMiss = func(name string) {
		if name != secretDeviceCAPrefix+"acme" {
			return
		}
		once.Do(func() {
			var err error
			if winnerCA, err = winner.DeviceCA(ctx, "acme"); err != nil {
				t.Error(err)
			}
		})
	}
	loser := e.authority(t, func(c *Config) { c.Store = hs })
	got, err := loser.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	if winnerCA == nil || !bytes.Equal(got.Raw, winnerCA.Raw) {
		t.Fatal("the race loser kept its own CA")
	}
	if n := hs.created(secretDeviceCAPrefix + "acme"); n != 0 {
		t.Errorf("loser stored its CA %d times", n)
	}
	// And what the loser issues verifies on the winner.
	cert, err := loser.IssueDevice(ctx, "acme", "d-0123456789abcdefghij", newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	if tenant, err := winner.VerifyDevice(ctx, cert); err != nil || tenant != "acme" {
		t.Fatalf("winner VerifyDevice = %q, %v", tenant, err)
	}
}

func TestIssueDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	a := e.authority(t)
	ca, err := a.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serials := map[string]bool{}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{
		{"p256", p256(t)},
		{"rsa2048", rsaKey},
		{"ed25519", edKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const id = "d-0123456789abcdefghij"
			cert, err := a.IssueDevice(ctx, "acme", id, newCSR(t, tc.key))
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != id {
				t.Errorf("CN = %q", cert.Subject.CommonName)
			}
			if ou := cert.Subject.OrganizationalUnit; len(ou) != 1 || ou[0] != "acme" {
				t.Errorf("OU = %v", ou)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %s is not a positive 128-bit number", cert.SerialNumber)
			}
			if serials[cert.SerialNumber.String()] {
				t.Error("serial number repeated")
			}
			serials[cert.SerialNumber.String()] = true
			now := e.clock.Now()
			if !cert.NotBefore.Equal(now.Add(-time.Minute)) {
				t.Errorf("NotBefore = %s, want %s", cert.NotBefore, now.Add(-time.Minute))
			}
			if !cert.NotAfter.Equal(now.Add(90 * 24 * time.Hour)) {
				t.Errorf("NotAfter = %s, want 90 days after %s", cert.NotAfter, now)
			}
			if cert.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage = %v", cert.KeyUsage)
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || len(cert.UnknownExtKeyUsage) != 0 {
				t.Errorf("ExtKeyUsage = %v %v", cert.ExtKeyUsage, cert.UnknownExtKeyUsage)
			}
			if cert.IsCA || !cert.BasicConstraintsValid {
				t.Error("device certificate is a CA or lacks basic constraints")
			}
			if !bytes.Equal(cert.AuthorityKeyId, ca.SubjectKeyId) {
				t.Error("AuthorityKeyId is not the CA's SubjectKeyId")
			}
			if err := cert.CheckSignatureFrom(ca); err != nil {
				t.Errorf("not signed by the tenant CA: %v", err)
			}
			pub := tc.key.Public().(interface{ Equal(crypto.PublicKey) bool })
			if !pub.Equal(cert.PublicKey) {
				t.Error("certificate does not carry the CSR's key")
			}
			if len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses)+len(cert.URIs) != 0 {
				t.Error("certificate has SANs the server did not choose")
			}
		})
	}
}

func TestIssueDeviceValidity(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	a := e.authority(t, func(c *Config) { c.DeviceCertValidity = 7 * 24 * time.Hour })
	csr := newCSR(t, p256(t))
	cert, err := a.IssueDevice(ctx, "acme", "d-1", csr)
	if err != nil {
		t.Fatal(err)
	}
	if got := cert.NotAfter.Sub(e.clock.Now()); got != 7*24*time.Hour {
		t.Errorf("validity = %s, want 7 days", got)
	}
	// Near the end of the CA's life, certificates end with the CA.
	ca, err := a.DeviceCA(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(ca.NotAfter.Sub(e.clock.Now()) - 24*time.Hour)
	cert, err = a.IssueDevice(ctx, "acme", "d-1", csr)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("NotAfter = %s, want the CA's %s", cert.NotAfter, ca.NotAfter)
	}
}

func TestIssueDeviceRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme")
	a := e.authority(t)
	if _, err := a.DeviceCA(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	good := newCSR(t, p256(t))
	tampered := *good
	tampered.Signature = bytes.Clone(good.Signature)
	tampered.Signature[len(tampered.Signature)-3] ^= 0xff
	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	before := e.writes()
	for _, tc := range []struct {
		name, tenant, device string
		csr                  *x509.CertificateRequest
		code                 steward.Code
		want                 string
	}{
		{"bad device ID", "acme", "d/1", good, steward.CodeInvalid, "invalid device ID"},
		{"empty device ID", "acme", "", good, steward.CodeInvalid, "invalid device ID"},
		{"no CSR", "acme", "d-1", nil, steward.CodeInvalid, "no certificate request"},
		{"bad signature", "acme", "d-1", &tampered, steward.CodeInvalid, "signature does not verify"},
		{"weak key", "acme", "d-1", newCSR(t, weakKey), steward.CodeInvalid, "RSA key of 1024 bits"},
		{"unknown tenant", "nobody", "d-1", good, steward.CodeNotFound, `no tenant "nobody"`},
		{"bad tenant", "a b", "d-1", good, steward.CodeInvalid, "tenant ID"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, err := a.IssueDevice(ctx, tc.tenant, tc.device, tc.csr)
			wantCode(t, err, tc.code, tc.want)
			if cert != nil {
				t.Error("got a certificate")
			}
		})
	}
	if e.writes() != before {
		t.Error("refused issuance wrote secrets")
	}
}

func TestVerifyDevice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, "acme", "globex", "empty")
	a := e.authority(t)
	const id = "d-0123456789abcdefghij"
	own, err := a.IssueDevice(ctx, "acme", id, newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	globex, err := a.IssueDevice(ctx, "globex", id, newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.DeviceCA(ctx, "empty"); err != nil {
		t.Fatal(err)
	}
	acmeCA := a.cas["acme"]
	globexCA := a.cas["globex"]

	// Another installation with a tenant of the same name: same subject,
	// other key.
	foreignEnv := newEnv(t, "acme")
	foreign, err := foreignEnv.authority(t).IssueDevice(ctx, "acme", id, newCSR(t, p256(t)))
	if err != nil {
		t.Fatal(err)
	}

	leaf := func(mod func(*x509.Certificate)) *x509.Certificate {
		tmpl := &x509.Certificate{
			SerialNumber:          big.NewInt(42),
			Subject:               pkix.Name{CommonName: id, OrganizationalUnit: []string{"acme"}},
			NotBefore:             e.clock.Now().Add(-time.Hour),
			NotAfter:              e.clock.Now().Add(time.Hour),
			KeyUsage:              x509.KeyUsageDigitalSignature,
			ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			BasicConstraintsValid: true,
			AuthorityKeyId:        acmeCA.cert.SubjectKeyId,
		}
		mod(tmpl)
		return tmpl
	}
	issue := func(tmpl, parent *x509.Certificate, key crypto.Signer) *x509.Certificate {
		t.Helper()
		k := p256(t)
		if key == nil {
			key = k
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &k.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Signed by globex's CA key but claiming to be acme's (OU and AKI).
	fakeParent := *acmeCA.cert
	fakeParent.PublicKey = globexCA.key.Public()
	crossKey := issue(leaf(func(*x509.Certificate) {}), &fakeParent, globexCA.key)
	// Self-signed, pointing at acme's CA.
	selfTmpl := leaf(func(*x509.Certificate) {})
	selfSigned := issue(selfTmpl, selfTmpl, nil)
	// Issued by the server CA with acme's name.
	byServerCA := issue(leaf(func(c *x509.Certificate) { c.AuthorityKeyId = a.serverCA.cert.SubjectKeyId }), a.serverCA.cert, a.serverCA.key)
	// Signed by acme's CA but for servers only.
	serverUsage := issue(leaf(func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} }), acmeCA.cert, acmeCA.key)
	// Signed by acme's CA, naming globex.
	wrongOU := issue(leaf(func(c *x509.Certificate) { c.Subject.OrganizationalUnit = []string{"globex"} }), acmeCA.cert, acmeCA.key)
	// Signed by acme's CA with no device ID.
	badCN := issue(leaf(func(c *x509.Certificate) { c.Subject.CommonName = "not a device" }), acmeCA.cert, acmeCA.key)
	// Pointing at a tenant without a CA.
	noCA := issue(leaf(func(c *x509.Certificate) {
		c.Subject.OrganizationalUnit = []string{"ghost"}
		c.AuthorityKeyId = []byte("no such key identifier")
	}), acmeCA.cert, acmeCA.key)
	serverTLS, err := a.ServerCertificate(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name   string
		cert   *x509.Certificate
		clock  time.Duration // moved before verifying
		tenant string
		want   string
		cold   string // what a node that has not loaded the issuing CA says, when it differs
	}{
		{name: "own", cert: own, tenant: "acme"},
		{name: "other tenant's own", cert: globex, tenant: "globex"},
		{name: "own, last minute", cert: own, clock: 90*24*time.Hour - time.Second, tenant: "acme"},
		{name: "expired", cert: own, clock: 90*24*time.Hour + time.Second, want: "expired at"},
		{name: "not yet valid", cert: own, clock: -2 * time.Minute, want: "not valid before"},
		{name: "foreign CA, same tenant name", cert: foreign, want: "not issued by a Steward device CA"},
		{name: "signed by another tenant's CA", cert: crossKey, want: "not signed by its tenant's device CA"},
		{name: "self-signed", cert: selfSigned, want: "not signed by its tenant's device CA"},
		{name: "issued by the server CA", cert: byServerCA, want: "not issued by a Steward device CA"},
		{name: "server TLS certificate", cert: serverTLS.Leaf, want: "not issued by a Steward device CA"},
		{name: "server usage only", cert: serverUsage, want: "not for client authentication"},
		{name: "names another tenant", cert: wrongOU, want: "names another tenant", cold: "not issued by a Steward device CA"},
		{name: "no device ID", cert: badCN, want: "does not name a device"},
		{name: "tenant without CA", cert: noCA, want: "not issued by a Steward device CA"},
		{name: "CA certificate", cert: acmeCA.cert, want: "CA certificate"},
		{name: "none", cert: nil, want: "no client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			clock.now = e.clock.Now().Add(tc.clock)
			// A fresh node each time: the CA comes from the store, found
			// through the certificate, not from a warm cache.
			v := e.authority(t, func(c *Config) { c.Clock = clock })
			if tc.cold != "" {
				// Cold, the OU leads to globex's CA, whose key ID does not match.
				_, err := v.VerifyDevice(ctx, tc.cert)
				wantCode(t, err, steward.CodeUnauthenticated, tc.cold)
				if _, err := v.DeviceCA(ctx, "acme"); err != nil {
					t.Fatal(err)
				}
			}
			for _, node := range []*Authority{v, v} { // cold, then cached
				tenant, err := node.VerifyDevice(ctx, tc.cert)
				if tc.want == "" {
					if err != nil || tenant != tc.tenant {
						t.Fatalf("VerifyDevice = %q, %v; want %q", tenant, err, tc.tenant)
					}
					continue
				}
				wantCode(t, err, steward.CodeUnauthenticated, tc.want)
				if tenant != "" {
					t.Errorf("refused certificate returned tenant %q", tenant)
				}
			}
		})
	}
}
