// Package fleet makes the devices of a benchmark: a test manufacturer CA
// registered in an enrollment group through the REST API, factory
// identities and certificate requests made ahead of time, and EST
// enrollment over a new mTLS connection per device, as a device does on
// first power-on.
package fleet

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/bench/internal/node"
	"github.com/steward-iot/steward/estclient"
	"github.com/steward-iot/steward/sim"
)

// The model and firmware the devices report; the group approves them.
const (
	Model    = "gw-100"
	Firmware = "1.0.0"
)

// Attributes is the attributes report that activates a device.
var Attributes = []byte(`{"model":"` + Model + `","firmware":"` + Firmware + `","hardware":"revB"}`)

// Fleet is a manufacturer registered with a node.
type Fleet struct {
	Node  *node.Node
	Mfr   *sim.Manufacturer
	Group steward.EnrollmentGroup
	// Curves, when set, are the only key exchanges the devices offer
	// (e.g. X25519 and P-256 without the post-quantum hybrid Go offers
	// first by default, as most embedded TLS stacks).
	Curves []tls.CurveID
}

// New makes a manufacturer CA and registers it in an enrollment group that
// approves Model on Firmware.
func New(ctx context.Context, n *node.Node, name string) (*Fleet, error) {
	m, err := sim.NewManufacturer(name)
	if err != nil {
		return nil, err
	}
	g, err := n.Admin.CreateEnrollmentGroup(ctx, steward.EnrollmentGroup{
		Name:     "bench",
		CAPEM:    string(m.CertPEM()),
		Models:   []string{Model},
		Firmware: map[string][]string{Model: {Firmware}},
		Labels:   map[string]string{"site": "bench"},
	})
	if err != nil {
		return nil, fmt.Errorf("register manufacturer CA: %w", err)
	}
	return &Fleet{Node: n, Mfr: m, Group: g}, nil
}

// Identity is what a device holds before it enrolls: its factory
// certificate, and the key and request it will enroll with.
type Identity struct {
	Serial  string
	Factory tls.Certificate
	Key     *ecdsa.PrivateKey
	CSR     []byte // PKCS#10, DER
}

// Identities makes n factory identities with serials prefix-000001…, each
// with its own operational key and CSR, on every core.
func (f *Fleet) Identities(n int, prefix string) ([]Identity, error) {
	ids := make([]Identity, n)
	var next atomic.Int64
	errs := make(chan error, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for range cap(errs) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				id, err := f.identity(fmt.Sprintf("%s-%06d", prefix, i+1))
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return ids, nil
}

func (f *Fleet) identity(serial string) (Identity, error) {
	factory, err := f.Mfr.FactoryIdentity(serial)
	if err != nil {
		return Identity{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Identity{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: serial}}, key)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Serial: serial, Factory: factory, Key: key, CSR: csr}, nil
}

// Device is an enrolled device: its ID and operational identity.
type Device struct {
	ID   string
	Cert tls.Certificate
}

// TLS returns the client configuration a device uses on the device plane.
func (f *Fleet) TLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{RootCAs: f.Node.Roots, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, CurvePreferences: f.Curves}
}

// Enroll runs EST simpleenroll for id over a new TLS connection from src
// (nil: any local address) authenticated by the factory certificate.
func (f *Fleet) Enroll(ctx context.Context, id Identity, src net.IP) (Device, error) {
	d := &net.Dialer{Timeout: 30 * time.Second}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	tr := &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   f.TLS(id.Factory),
		DisableKeepAlives: true, // one connection per device, closed after its answer
	}
	defer tr.CloseIdleConnections()
	c := &estclient.Client{BaseURL: f.Node.DeviceURL, HTTP: &http.Client{Transport: tr, Timeout: 60 * time.Second}}
	cert, err := c.SimpleEnroll(ctx, id.CSR)
	if err != nil {
		return Device{}, err
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(&id.Key.PublicKey) {
		return Device{}, errors.New("issued certificate is for another key")
	}
	return Device{ID: cert.Subject.CommonName, Cert: tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: id.Key, Leaf: cert}}, nil
}

// Result is what EnrollAll measured.
type Result struct {
	Devices   []Device        // in the order of the identities; zero for a failed one
	Latencies []time.Duration // of the successful enrollments, sorted
	Errors    int
	FirstErr  error
	Elapsed   time.Duration // first request to last answer
}

// Rate is successful enrollments per second.
func (r Result) Rate() float64 { return float64(len(r.Latencies)) / r.Elapsed.Seconds() }

// Percentile returns the p-th percentile latency (0 < p ≤ 100).
func (r Result) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies))*p/100+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// EnrollAll enrolls every identity with concurrency clients at a time,
// request i dialing from src(i) when src is not nil. progress,
// if not nil, is called now and then with the number done.
func (f *Fleet) EnrollAll(ctx context.Context, ids []Identity, concurrency int, src func(i int) net.IP, progress func(done int)) Result {
	r := Result{Devices: make([]Device, len(ids))}
	lat := make([]time.Duration, len(ids))
	var next, done, failed atomic.Int64
	var errOnce sync.Once
	var wg sync.WaitGroup
	stopProgress := make(chan struct{})
	if progress != nil {
		go func() {
			t := time.NewTicker(5 * time.Second)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					progress(int(done.Load()))
				case <-stopProgress:
					return
				}
			}
		}()
	}
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(ids) {
					return
				}
				var ip net.IP
				if src != nil {
					ip = src(i)
				}
				t0 := time.Now()
				d, err := f.Enroll(ctx, ids[i], ip)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { r.FirstErr = fmt.Errorf("enroll %s: %w", ids[i].Serial, err) })
				} else {
					lat[i] = time.Since(t0)
					r.Devices[i] = d
				}
				done.Add(1)
			}
		})
	}
	wg.Wait()
	r.Elapsed = time.Since(start)
	close(stopProgress)
	r.Errors = int(failed.Load())
	for i, d := range r.Devices {
		if d.ID != "" {
			r.Latencies = append(r.Latencies, lat[i])
		}
	}
	slices.Sort(r.Latencies)
	if ctx.Err() != nil && r.FirstErr == nil {
		r.FirstErr = ctx.Err()
	}
	return r
}
