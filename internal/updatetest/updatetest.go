// Package updatetest assembles the real parts of over-the-air updates for
// tests: a SQLite store, the PKI and the provisioning gate, the blob
// directory, the TUF repository, the artifact service, and the device
// plane's handlers behind TLS on loopback that asks for client
// certificates, as server.Server wires them. Only tests import it.
package updatetest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/artifacts"
	"github.com/steward-iot/steward/fsblob"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/sqlstore"
	"github.com/steward-iot/steward/tufrepo"
)

// Clock is a clock a test sets.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now implements steward.Clock.
func (c *Clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

// Add moves the clock.
func (c *Clock) Add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// Env is a running device plane with everything behind it.
type Env struct {
	T         testing.TB
	Clock     *Clock
	Store     *sqlstore.Store
	Authority *pki.Authority
	Gate      *provisioning.Service
	Blobs     *fsblob.Store
	BlobDir   string
	TUF       *tufrepo.Repo
	Artifacts *artifacts.Service
	// URL is the device plane's base URL.
	URL string
	// Intercept, when set, sees every device plane request first and
	// handles it when it returns true: the tests' network faults and
	// malicious servers.
	Intercept func(w http.ResponseWriter, r *http.Request) bool
	// Mux is the device plane's real handler.
	Mux *http.ServeMux

	// MasterKey seals the server's keys: what an attacker who owns the
	// server has.
	MasterKey []byte

	serverCA *x509.CertPool
	mu       sync.Mutex
	creds    map[string][2][]byte // device ID: certificate and key PEM
}

// Credentials returns the PEM certificate and key of a device made by
// Device, for clients other than Go's (tuf-js).
func (e *Env) Credentials(id string) (certPEM, keyPEM []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.creds[id]
	return c[0], c[1]
}

// ServerCAPEM returns the CA that signed the device plane's certificate.
func (e *Env) ServerCAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.Authority.ServerCA().Raw})
}

// Tenant is the tenant every Env has.
const Tenant = steward.DefaultTenant

// New starts an Env; it stops when the test ends.
func New(t testing.TB) *Env {
	t.Helper()
	log := slog.New(slog.DiscardHandler)
	ctx := t.Context()
	dir := t.TempDir()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "steward.db"), log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	clock := NewClock(time.Now().UTC().Truncate(time.Second))
	if err := st.CreateTenant(ctx, steward.Tenant{ID: Tenant, Name: "Default", CreatedAt: clock.Now()}); err != nil {
		t.Fatal(err)
	}
	master := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(master)
	auth, err := pki.New(ctx, pki.Config{Store: st, MasterKey: master, DeviceCertValidity: 24 * time.Hour, Clock: steward.SystemClock{}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	bus := inproc.New(log)
	gate := provisioning.New(provisioning.Config{Store: st, Authority: auth, Bus: bus, ParseCSR: pki.ParseCSR, Clock: steward.SystemClock{}, Logger: log})
	blobDir := filepath.Join(dir, "blobs")
	blobs, err := fsblob.Open(blobDir)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := tufrepo.New(tufrepo.Config{Store: st, MasterKey: master, Clock: clock, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	svc := artifacts.New(artifacts.Config{Store: st, Blobs: blobs, TUF: repo, Clock: clock, Logger: log})
	e := &Env{T: t, Clock: clock, Store: st, Authority: auth, Gate: gate, Blobs: blobs, BlobDir: blobDir, TUF: repo, Artifacts: svc, Mux: http.NewServeMux(), MasterKey: master}
	svc.Register(e.Mux, gate)

	if _, err := auth.ServerCertificate(ctx, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	// http.Server rather than httptest: httptest puts its own certificate
	// first, and the device plane's must be the one the PKI issues.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		icpt := e.Intercept
		e.mu.Unlock()
		if icpt != nil && icpt(w, r) {
			return
		}
		e.Mux.ServeHTTP(w, r)
	}), TLSConfig: &tls.Config{GetCertificate: auth.GetCertificateFunc([]string{"127.0.0.1"}), ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelError)}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	e.URL = "https://" + ln.Addr().String()
	e.serverCA = x509.NewCertPool()
	e.serverCA.AddCert(auth.ServerCA())
	return e
}

// SetIntercept sets Intercept safely while requests run.
func (e *Env) SetIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	e.mu.Lock()
	e.Intercept = f
	e.mu.Unlock()
}

// Device registers an active device with an operational certificate from
// the tenant's device CA, and returns an HTTP client that presents it and
// trusts the server CA, as an enrolled agent's does.
func (e *Env) Device(id string) *http.Client {
	t := e.T
	t.Helper()
	ctx := t.Context()
	now := time.Now().UTC()
	if err := e.Store.CreateDevice(ctx, steward.Device{ID: id, TenantID: Tenant, Model: "gw-100", State: steward.StateActive,
		StateChangedAt: now, CreatedAt: now, UpdatedAt: now}); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := e.Authority.IssueDevice(ctx, Tenant, id, csr)
	if err != nil {
		t.Fatal(err)
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if err := e.Store.AddCertificate(ctx, steward.Certificate{Serial: cert.SerialNumber.Text(16), TenantID: Tenant, DeviceID: id,
		KeyID: hex.EncodeToString(spki[:]), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter,
		PEM: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	tlsCert := tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	e.mu.Lock()
	if e.creds == nil {
		e.creds = map[string][2][]byte{}
	}
	e.creds[id] = [2][]byte{pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})}
	e.mu.Unlock()
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.serverCA, Certificates: []tls.Certificate{tlsCert}, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// Anonymous returns a client that trusts the server but presents no
// certificate.
func (e *Env) Anonymous() *http.Client {
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: e.serverCA, MinVersion: tls.VersionTLS12}}}
}

// Upload uploads content as a firmware artifact and returns it.
func (e *Env) Upload(name, version string, content []byte) steward.Artifact {
	t := e.T
	t.Helper()
	p, err := e.Artifacts.Upload(t.Context(), steward.Artifact{TenantID: Tenant, Name: name, Version: version, Type: steward.ArtifactFirmware},
		bytes.NewReader(content), "", "token:test")
	if err != nil {
		t.Fatal(err)
	}
	return p.Artifact
}

// BlobPath is where the blob directory keeps a digest's content.
func (e *Env) BlobPath(sum string) string {
	return filepath.Join(e.BlobDir, "sha256", sum[:2], sum)
}

// ServerKey returns a private key the server holds, by its TUF key ID,
// unsealed as a compromised server would.
func (e *Env) ServerKey(keyID string) ed25519.PrivateKey {
	t := e.T
	t.Helper()
	name := tufrepo.KeySecretName(Tenant, keyID)
	sealed, err := e.Store.GetSecret(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tufrepo.OpenKey(e.MasterKey, name, sealed)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Root returns the newest root metadata.
func (e *Env) Root() *metadata.Metadata[metadata.RootType] {
	t := e.T
	t.Helper()
	b, err := e.TUF.Root(t.Context(), Tenant)
	if err != nil {
		t.Fatal(err)
	}
	r, err := metadata.Root().FromBytes(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// CompromisedPublish stores targets metadata as the next version with a
// snapshot and timestamp signed by the server's online keys, skipping
// every check the repository makes: what an attacker who owns the server
// can make devices download.
func (e *Env) CompromisedPublish(targets *metadata.Metadata[metadata.TargetsType]) {
	t := e.T
	t.Helper()
	ctx := t.Context()
	root := e.Root()
	cur := func(role string) int64 {
		m, err := e.Store.GetTUFMetadata(ctx, Tenant, role, 0)
		if err != nil {
			t.Fatal(err)
		}
		return m.Version
	}
	sign := func(role string, sign func(signature.Signer) error) {
		for _, id := range root.Signed.Roles[role].KeyIDs {
			s, err := signature.LoadED25519Signer(e.ServerKey(id))
			if err != nil {
				t.Fatal(err)
			}
			if err := sign(s); err != nil {
				t.Fatal(err)
			}
		}
	}
	exp := e.Clock.Now().Add(24 * time.Hour).Truncate(time.Second)
	targets.Signed.Version = cur(steward.TUFTargets) + 1
	put := func(role string, version int64, b []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Store.PutTUFMetadata(ctx, steward.TUFMetadata{TenantID: Tenant, Role: role, Version: version, Body: b, Expires: exp, CreatedAt: e.Clock.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	b, err := targets.ToBytes(false)
	put(steward.TUFTargets, targets.Signed.Version, b, err)
	snap := metadata.Snapshot(exp)
	snap.Signed.Version = cur(steward.TUFSnapshot) + 1
	snap.Signed.Meta["targets.json"] = metadata.MetaFile(targets.Signed.Version)
	sign(metadata.SNAPSHOT, func(s signature.Signer) error { _, err := snap.Sign(s); return err })
	b, err = snap.ToBytes(false)
	put(steward.TUFSnapshot, snap.Signed.Version, b, err)
	ts := metadata.Timestamp(exp)
	ts.Signed.Version = cur(steward.TUFTimestamp) + 1
	ts.Signed.Meta["snapshot.json"] = metadata.MetaFile(snap.Signed.Version)
	sign(metadata.TIMESTAMP, func(s signature.Signer) error { _, err := ts.Sign(s); return err })
	b, err = ts.ToBytes(false)
	put(steward.TUFTimestamp, ts.Signed.Version, b, err)
}
