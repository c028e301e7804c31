package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"time"

	"github.com/steward-iot/steward/estclient"
)

// renewAt returns when a certificate is due for renewal: once two thirds of
// its life have passed, which leaves a third of it to get through an outage.
func renewAt(c *x509.Certificate) time.Time {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotBefore.Add(life / 3 * 2)
}

// certPhase is where a certificate is in its life.
type certPhase int

const (
	certFresh   certPhase = iota // before renewAt
	certDue                      // renew with simplereenroll
	certExpired                  // enroll again with the factory identity
)

// String names the phase for the logs.
func (p certPhase) String() string {
	return [...]string{"fresh", "due", "expired"}[p]
}

func phaseOf(now time.Time, c *x509.Certificate) certPhase {
	switch {
	case !now.Before(c.NotAfter):
		return certExpired
	case !now.Before(renewAt(c)):
		return certDue
	default:
		return certFresh
	}
}

// renewWait returns how long to wait before looking at the certificate
// again: zero when it needs work now. The wait is capped at most, so that
// the decision is taken again from the Clock now and then (a suspended
// device, a clock set late at boot) rather than trusting one long timer.
func renewWait(now time.Time, c *x509.Certificate, most time.Duration) time.Duration {
	if phaseOf(now, c) != certFresh {
		return 0
	}
	return min(renewAt(c).Sub(now), most)
}

// est returns an EST client that authenticates with cert, and a function
// to release its connections.
func (a *Agent) est(cert *tls.Certificate) (*estclient.Client, func()) {
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{
			RootCAs:    a.cfg.ServerCA,
			MinVersion: tls.VersionTLS12,
			// GetClientCertificate rather than Certificates: the latter is
			// sent only when the server's list of acceptable CAs names its
			// issuer, and a factory CA need not be on that list.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil },
		},
		TLSHandshakeTimeout: 30 * time.Second,
		IdleConnTimeout:     30 * time.Second,
	}
	c := &estclient.Client{
		BaseURL: a.cfg.ESTURL,
		Label:   a.cfg.ESTLabel,
		HTTP:    &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}
	return c, tr.CloseIdleConnections
}

// startIdentity returns the saved identity, or enrolls with the factory
// identity when there is none or it has expired. It retries with backoff
// until it succeeds or ctx ends.
func (a *Agent) startIdentity(ctx context.Context) (*Identity, error) {
	id, err := a.state.loadIdentity()
	switch {
	case err == nil && phaseOf(a.cfg.Clock.Now(), id.Cert) != certExpired:
		a.log.Info("operational identity loaded", "device", id.DeviceID, "not_after", id.Cert.NotAfter)
		return id, nil
	case err == nil:
		a.log.Warn("operational certificate has expired; enrolling again with the factory identity",
			"device", id.DeviceID, "not_after", id.Cert.NotAfter)
		return a.retry(ctx, "enroll", func() (*Identity, error) { return a.enroll(ctx, id.Key) })
	case errors.Is(err, fs.ErrNotExist):
		a.log.Info("no operational identity yet; enrolling with the factory identity", "serial", a.cfg.Serial)
		return a.retry(ctx, "enroll", func() (*Identity, error) { return a.enroll(ctx, nil) })
	default:
		// A damaged identity is not replaced by a new key on our own: the
		// server would take a second key for this factory identity as a
		// clone. Someone has to look.
		return nil, fmt.Errorf("load identity (remove %s to enroll again): %w", a.state.path(IdentityFile), err)
	}
}

// retry calls f until it succeeds or ctx ends, waiting with backoff.
func (a *Agent) retry(ctx context.Context, what string, f func() (*Identity, error)) (*Identity, error) {
	bo := a.newBackoff()
	for {
		id, err := f()
		if err == nil {
			return id, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := retryWait(bo, err)
		a.log.Warn(what+" failed; will retry", "err", err, "attempt", bo.attempt, "retry_in", wait.Round(time.Millisecond))
		if !sleep(ctx, wait) {
			return nil, ctx.Err()
		}
	}
}

// enroll asks simpleenroll for a certificate, authenticated by the factory
// identity. key is the key to certify; nil means the pending key (made
// and saved first when there is none).
func (a *Agent) enroll(ctx context.Context, key *ecdsa.PrivateKey) (*Identity, error) {
	var err error
	if key != nil {
		err = a.state.usePendingKey(key)
	} else {
		key, err = a.state.pendingKey()
	}
	if err != nil {
		return nil, err
	}
	factory := a.cfg.FactoryCert.Leaf
	csr, err := newCSR(key, factory.Subject, factory.RawSubject)
	if err != nil {
		return nil, err
	}
	c, done := a.est(&a.cfg.FactoryCert)
	defer done()
	cert, err := c.SimpleEnroll(ctx, csr)
	if err != nil {
		return nil, fmt.Errorf("simpleenroll: %w", err)
	}
	id, err := newIdentity(key, []*x509.Certificate{cert})
	if err != nil {
		return nil, fmt.Errorf("simpleenroll answer: %w", err)
	}
	if err := a.state.saveIdentity(id); err != nil {
		return nil, err
	}
	a.log.Info("enrolled", "device", id.DeviceID, "not_after", id.Cert.NotAfter)
	return id, nil
}

// reenroll renews cur with simplereenroll, authenticated by cur, for a new
// key: a key that is replaced with each certificate limits what a key that
// leaked can do.
func (a *Agent) reenroll(ctx context.Context, cur *Identity) (*Identity, error) {
	key, err := a.state.pendingKey()
	if err != nil {
		return nil, err
	}
	// RFC 7030 §4.2.2: the subject must be the one being renewed.
	csr, err := newCSR(key, cur.Cert.Subject, cur.Cert.RawSubject)
	if err != nil {
		return nil, err
	}
	c, done := a.est(cur.TLS())
	defer done()
	cert, err := c.SimpleReenroll(ctx, csr)
	if err != nil {
		return nil, fmt.Errorf("simplereenroll: %w", err)
	}
	id, err := newIdentity(key, []*x509.Certificate{cert})
	if err != nil {
		return nil, fmt.Errorf("simplereenroll answer: %w", err)
	}
	if id.DeviceID != cur.DeviceID {
		return nil, fmt.Errorf("simplereenroll answer names device %q, not %q", id.DeviceID, cur.DeviceID)
	}
	if err := a.state.saveIdentity(id); err != nil {
		return nil, err
	}
	a.log.Info("certificate renewed", "device", id.DeviceID, "not_after", id.Cert.NotAfter)
	return id, nil
}

// renewLoop keeps the operational certificate fresh: simplereenroll once
// two thirds of its life have passed, a new factory enrollment if it
// expired all the same. A new certificate is put to use at once by
// reconnecting.
func (a *Agent) renewLoop(ctx context.Context) {
	bo := a.newBackoff()
	for {
		cur := a.identity()
		now := a.cfg.Clock.Now()
		phase := phaseOf(now, cur.Cert)
		if phase == certFresh {
			bo.reset()
			if !sleep(ctx, renewWait(now, cur.Cert, a.cfg.RenewCheck)) {
				return
			}
			continue
		}
		var (
			next *Identity
			err  error
		)
		if phase == certExpired {
			a.log.Warn("operational certificate expired; enrolling again with the factory identity", "not_after", cur.Cert.NotAfter)
			next, err = a.enroll(ctx, cur.Key)
		} else {
			next, err = a.reenroll(ctx, cur)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := retryWait(bo, err)
			a.log.Warn("certificate renewal failed; will retry", "phase", phase.String(), "err", err, "retry_in", wait.Round(time.Millisecond))
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		a.setIdentity(next)
		a.renewals.Add(1)
		a.requestReconnect()
		if p := phaseOf(a.cfg.Clock.Now(), next.Cert); p != certFresh {
			// The server's answer is already due by our clock (a clock
			// ahead of the server's, or a server that gave back the
			// current certificate): back off instead of asking in a loop.
			wait := bo.next()
			a.log.Warn("the new certificate is already due for renewal; is the clock right?",
				"phase", p.String(), "not_before", next.Cert.NotBefore, "not_after", next.Cert.NotAfter, "retry_in", wait.Round(time.Millisecond))
			if !sleep(ctx, wait) {
				return
			}
		}
	}
}

// maxRetryAfter caps a server's Retry-After, so that a wrong header does
// not silence a device for days.
const maxRetryAfter = time.Hour

// retryWait is the next backoff wait, or longer when the EST server asked
// for it with Retry-After (503 while starting, 202 for a pending
// enrollment).
func retryWait(bo *backoff, err error) time.Duration {
	wait := bo.next()
	var e *estclient.Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		wait = max(wait, min(e.RetryAfter, maxRetryAfter))
	}
	return wait
}

// sleep waits d or until ctx ends; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
