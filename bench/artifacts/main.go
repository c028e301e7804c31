// Command artifacts measures artifact download throughput on the device
// plane (HTTPS with the device's client certificate, authenticated and
// checked for a grant on every request, content served with HTTP Range)
// against plain file serving of the same file on the same machine
// (net/http's FileServer, over HTTP and over HTTPS without client
// certificates).
//
//	go run ./bench/artifacts -size 128 -c 4 -rounds 4
//
// Everything runs in this process on loopback: the real SQLite store, PKI,
// provisioning gate, blob directory, TUF repository and artifact service,
// as server.Server wires them. Each of c clients keeps one connection and
// downloads the whole artifact rounds times; the ranged run fetches it in
// -range MiB pieces (as an agent resuming after cuts would). Every
// download's bytes are hashed and checked. It prints MiB/s per setup, and
// the CPU time the process used (clients and server together).
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/artifacts"
	"github.com/steward-iot/steward/bench/internal/machine"
	"github.com/steward-iot/steward/fsblob"
	"github.com/steward-iot/steward/inproc"
	"github.com/steward-iot/steward/pki"
	"github.com/steward-iot/steward/provisioning"
	"github.com/steward-iot/steward/sqlite"
	"github.com/steward-iot/steward/tufrepo"
)

func main() {
	sizeMiB := flag.Int("size", 128, "artifact size in MiB")
	c := flag.Int("c", 4, "concurrent clients")
	rounds := flag.Int("rounds", 4, "whole downloads per client")
	rangeMiB := flag.Int("range", 8, "piece size in MiB of the ranged run")
	flag.Parse()
	if *sizeMiB < 1 || *sizeMiB > 4096 || *c < 1 || *c > 64 || *rounds < 1 || *rangeMiB < 1 {
		fmt.Fprintln(os.Stderr, "artifacts: want 1 ≤ size ≤ 4096, 1 ≤ c ≤ 64, rounds ≥ 1, range ≥ 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := run(ctx, int64(*sizeMiB)<<20, *c, *rounds, int64(*rangeMiB)<<20); err != nil {
		fmt.Fprintln(os.Stderr, "artifacts:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, size int64, c, rounds int, piece int64) error {
	log := slog.New(slog.DiscardHandler)
	dir, err := os.MkdirTemp("", "steward-bench-artifacts-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	st, err := sqlite.Open(ctx, filepath.Join(dir, "steward.db"), log)
	if err != nil {
		return err
	}
	defer st.Close()
	clock := steward.SystemClock{}
	tenant := steward.DefaultTenant
	if err := st.CreateTenant(ctx, steward.Tenant{ID: tenant, Name: "Default", CreatedAt: clock.Now()}); err != nil {
		return err
	}
	master := make([]byte, pki.MasterKeySize)
	_, _ = rand.Read(master)
	auth, err := pki.New(ctx, pki.Config{Store: st, MasterKey: master, DeviceCertValidity: time.Hour, Clock: clock, Logger: log})
	if err != nil {
		return err
	}
	gate := provisioning.New(provisioning.Config{Store: st, Authority: auth, Bus: inproc.New(log), ParseCSR: pki.ParseCSR, Clock: clock, Logger: log})
	blobs, err := fsblob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		return err
	}
	repo, err := tufrepo.New(tufrepo.Config{Store: st, MasterKey: master, Clock: clock, Logger: log})
	if err != nil {
		return err
	}
	svc := artifacts.New(artifacts.Config{Store: st, Blobs: blobs, TUF: repo, Clock: clock, Logger: log, MaxSize: size})

	// The artifact, also written as a plain file for the file servers.
	content := make([]byte, size)
	_, _ = rand.Read(content)
	sum := sha256.Sum256(content)
	digest := hex.EncodeToString(sum[:])
	plainDir := filepath.Join(dir, "plain")
	if err := os.MkdirAll(plainDir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(plainDir, digest), content, 0o600); err != nil {
		return err
	}
	a, err := svc.Upload(ctx, steward.Artifact{TenantID: tenant, Name: "bench", Version: "1.0", Type: steward.ArtifactFirmware},
		bytes.NewReader(content), digest, "bench")
	if err != nil {
		return err
	}
	content = nil // the clients hash what they receive instead

	// The device and its grant.
	devCert, err := device(ctx, st, auth, tenant, "d-bench")
	if err != nil {
		return err
	}
	if err := st.GrantArtifact(ctx, tenant, "d-bench", a.ID); err != nil {
		return err
	}

	if _, err := auth.ServerCertificate(ctx, []string{"127.0.0.1"}); err != nil {
		return err
	}
	serverTLS := func(clientAuth tls.ClientAuthType) *tls.Config {
		return &tls.Config{GetCertificate: auth.GetCertificateFunc([]string{"127.0.0.1"}), ClientAuth: clientAuth, MinVersion: tls.VersionTLS12}
	}
	mux := http.NewServeMux()
	svc.Register(mux, gate)
	steURL, stopSte, err := serve(mux, serverTLS(tls.RequestClientCert))
	if err != nil {
		return err
	}
	defer stopSte()
	fs := http.FileServer(http.Dir(plainDir))
	httpURL, stopHTTP, err := serve(fs, nil)
	if err != nil {
		return err
	}
	defer stopHTTP()
	httpsURL, stopHTTPS, err := serve(fs, serverTLS(tls.NoClientCert))
	if err != nil {
		return err
	}
	defer stopHTTPS()

	roots := x509.NewCertPool()
	roots.AddCert(auth.ServerCA())
	client := func(certs []tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12},
			MaxIdleConnsPerHost: 1, DisableCompression: true}}
	}

	fmt.Println(machine.Describe())
	fmt.Printf("artifact: %d MiB, %d clients × %d downloads each, ranged pieces of %d MiB\n", size>>20, c, rounds, piece>>20)
	fmt.Printf("%-44s %10s %10s %12s\n", "setup", "MiB/s", "wall", "cpu (all)")
	for _, s := range []struct {
		name  string
		url   string
		certs []tls.Certificate
		piece int64
	}{
		{"plain HTTP, http.FileServer", httpURL + "/" + digest, nil, 0},
		{"HTTPS, http.FileServer (no client cert)", httpsURL + "/" + digest, nil, 0},
		{"device plane, mTLS, grant checked", steURL + "/artifacts/" + digest, []tls.Certificate{devCert}, 0},
		{"device plane, mTLS, Range pieces", steURL + "/artifacts/" + digest, []tls.Certificate{devCert}, piece},
		{"HTTPS, http.FileServer, Range pieces", httpsURL + "/" + digest, nil, piece},
	} {
		wall, cpu, err := measure(ctx, c, rounds, func() *http.Client { return client(s.certs) }, s.url, size, digest, s.piece)
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		mib := float64(size>>20) * float64(c*rounds)
		fmt.Printf("%-44s %10.0f %10s %12s\n", s.name, mib/wall.Seconds(), wall.Round(time.Millisecond), cpu.Round(time.Millisecond))
	}
	return nil
}

// device registers a device with a certificate of the tenant's device CA.
func device(ctx context.Context, st steward.Store, auth *pki.Authority, tenant, id string) (tls.Certificate, error) {
	now := time.Now().UTC()
	if err := st.CreateDevice(ctx, steward.Device{ID: id, TenantID: tenant, Model: "bench", State: steward.StateActive,
		StateChangedAt: now, CreatedAt: now, UpdatedAt: now}); err != nil {
		return tls.Certificate{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: id}}, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := auth.IssueDevice(ctx, tenant, id, csr)
	if err != nil {
		return tls.Certificate{}, err
	}
	spki := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	if err := st.AddCertificate(ctx, steward.Certificate{Serial: cert.SerialNumber.Text(16), TenantID: tenant, DeviceID: id,
		KeyID: hex.EncodeToString(spki[:]), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, CreatedAt: now}); err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}, nil
}

// serve serves h on a loopback port, over TLS when cfg is set.
func serve(h http.Handler, cfg *tls.Config) (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, TLSConfig: cfg, ReadHeaderTimeout: 10 * time.Second}
	scheme := "http"
	if cfg != nil {
		scheme = "https"
		go func() { _ = srv.ServeTLS(ln, "", "") }()
	} else {
		go func() { _ = srv.Serve(ln) }()
	}
	return scheme + "://" + ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// measure runs c clients, each downloading the file rounds times (whole,
// or in Range pieces of piece bytes), checks every download's digest, and
// returns the wall time and the process's CPU time.
func measure(ctx context.Context, c, rounds int, newClient func() *http.Client, url string, size int64, digest string, piece int64) (time.Duration, time.Duration, error) {
	cpu0 := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, c)
	for range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := newClient()
			defer hc.CloseIdleConnections()
			buf := make([]byte, 256<<10)
			for range rounds {
				h := sha256.New()
				for off := int64(0); off < size; {
					end := size
					if piece > 0 {
						end = min(off+piece, size)
					}
					n, err := fetch(ctx, hc, url, off, end, piece > 0, h, buf)
					if err != nil {
						errs <- err
						return
					}
					off += n
				}
				if got := hex.EncodeToString(h.Sum(nil)); got != digest {
					errs <- fmt.Errorf("downloaded SHA-256 %s, want %s", got, digest)
					return
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, 0, err
	}
	return wall, cpuTime() - cpu0, nil
}

func fetch(ctx context.Context, hc *http.Client, url string, off, end int64, ranged bool, w io.Writer, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	want := http.StatusOK
	if ranged {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-"+strconv.FormatInt(end-1, 10))
		want = http.StatusPartialContent
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != want {
		return 0, errors.New(res.Status)
	}
	n, err := io.CopyBuffer(w, res.Body, buf)
	if err != nil {
		return n, err
	}
	if n != end-off {
		return n, fmt.Errorf("got %d bytes, want %d", n, end-off)
	}
	return n, nil
}

// cpuTime is the user and system CPU time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
