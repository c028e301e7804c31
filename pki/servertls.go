package pki

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// maxGenerations bounds the walk through a host set's stored certificates.
// One generation lasts two thirds of ServerCertValidity, so this is never
// reached in practice; it only stops a loop on a broken store.
const maxGenerations = 1 << 16

// serverTLS is the current server certificate for one host set.
type serverTLS struct {
	gen  int
	cert tls.Certificate
}

// ServerCertificate returns the server's TLS certificate, issued by the
// server CA for localhost, 127.0.0.1, ::1, this machine's host name and
// hosts. It is stored sealed and shared by the nodes that ask for the same
// host set; a new one is issued when the host set changes or when less than
// a third of the current one's life remains. A host that is neither an IP
// address nor a DNS name is CodeInvalid.
//
// Certificates of a host set are stored as generations 0, 1, 2, … because a
// stored secret cannot be replaced: the current one is the first whose life
// is not two-thirds spent.
func (a *Authority) ServerCertificate(ctx context.Context, hosts []string) (tls.Certificate, error) {
	names, ips, err := a.hostSet(hosts)
	if err != nil {
		return tls.Certificate{}, err
	}
	key := strings.Join(names, ",") + "|" + strings.Join(ips, ",")
	now := a.clock.Now()

	a.tlsMu.Lock()
	defer a.tlsMu.Unlock()
	gen := 0
	if c := a.tls[key]; c != nil {
		if !renewDue(c.cert.Leaf, now) {
			return c.cert, nil
		}
		gen = c.gen + 1
	}
	sum := sha256.Sum256([]byte(key))
	prefix := secretServerTLSPrefix + hex.EncodeToString(sum[:12]) + "/"
	for ; gen < maxGenerations; gen++ {
		name := prefix + strconv.Itoa(gen)
		s, err := a.loadOrCreate(ctx, name, func() (*signer, error) {
			return a.newServerCert(names, ips)
		})
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("server certificate: %w", err)
		}
		if err := a.checkServerCert(s.cert, names, ips); err != nil {
			return tls.Certificate{}, fmt.Errorf("server certificate %s: %w", name, err)
		}
		// A certificate issued moments ago is kept even if its life is
		// short (clamped to the server CA's end), or this would loop.
		if renewDue(s.cert, now) && s.cert.NotBefore.Before(now.Add(-2*backdate)) {
			continue
		}
		c := &serverTLS{gen: gen, cert: tls.Certificate{
			Certificate: [][]byte{s.cert.Raw},
			PrivateKey:  s.key,
			Leaf:        s.cert,
		}}
		a.tls[key] = c
		return c.cert, nil
	}
	return tls.Certificate{}, steward.Errorf(steward.CodeInternal, "server certificate: more than %d generations stored", maxGenerations)
}

// GetCertificateFunc returns a tls.Config.GetCertificate callback serving
// ServerCertificate(hosts), so that a long-running listener picks up the
// renewed certificate without a restart.
func (a *Authority) GetCertificateFunc(hosts []string) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	hosts = slices.Clone(hosts)
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		c, err := a.ServerCertificate(hello.Context(), hosts)
		if err != nil {
			return nil, err
		}
		return &c, nil
	}
}

// renewDue reports whether less than a third of cert's life remains.
func renewDue(cert *x509.Certificate, now time.Time) bool {
	life := cert.NotAfter.Sub(cert.NotBefore)
	return cert.NotAfter.Sub(now) < life/3
}

func (a *Authority) newServerCert(names, ips []string) (*signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate server key: %w", err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "Steward server", Organization: []string{organization}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    names,
	}
	for _, ip := range ips {
		tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
	}
	cert, err := issueLeaf(a.serverCA, tmpl, &key.PublicKey, a.clock.Now(), a.serverValidity)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: %w", err)
	}
	a.log.Info("issued server TLS certificate", "dns", names, "ip", ips, "serial", serialHex(cert), "not_after", cert.NotAfter)
	return &signer{cert: cert, key: key}, nil
}

// checkServerCert makes sure a stored server certificate is the server CA's
// and covers exactly the host set, whatever the store returned.
func (a *Authority) checkServerCert(cert *x509.Certificate, names, ips []string) error {
	if err := cert.CheckSignatureFrom(a.serverCA.cert); err != nil {
		return steward.WrapError(steward.CodeInternal, err, "not signed by the server CA")
	}
	got := make([]string, 0, len(cert.IPAddresses))
	for _, ip := range cert.IPAddresses {
		got = append(got, ip.String())
	}
	slices.Sort(got)
	if !slices.Equal(cert.DNSNames, names) || !slices.Equal(got, ips) {
		return steward.Errorf(steward.CodeInternal, "stored certificate covers other hosts")
	}
	return nil
}

// hostSet returns the sorted, de-duplicated DNS names and IP addresses a
// server certificate must cover.
func (a *Authority) hostSet(hosts []string) (names, ips []string, err error) {
	all := append([]string{"localhost", "127.0.0.1", "::1"}, hosts...)
	if a.hostname != "" {
		all = append(all, a.hostname)
	}
	for _, h := range all {
		if strings.TrimSpace(h) == "" {
			continue
		}
		n, ok := normalizeHost(h)
		if !ok {
			return nil, nil, steward.Errorf(steward.CodeInvalid, "%q is neither an IP address nor a DNS name", h)
		}
		if net.ParseIP(n) != nil {
			ips = append(ips, n)
		} else {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	slices.Sort(ips)
	return slices.Compact(names), slices.Compact(ips), nil
}

// normalizeHost returns the canonical form of an IP address (brackets
// allowed) or a DNS name (lower case, no trailing dot; a leading "*." for
// a wildcard), and whether h is either.
func normalizeHost(h string) (string, bool) {
	h = strings.TrimSpace(h)
	if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil {
		return ip.String(), true
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if h == "" || len(h) > 253 {
		return "", false
	}
	labels := strings.Split(h, ".")
	for i, l := range labels {
		if i == 0 && l == "*" && len(labels) > 2 {
			continue
		}
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "", false
			}
		}
	}
	return h, true
}
