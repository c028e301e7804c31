package agent

import (
	"crypto/tls"
	"errors"
)

// DeviceTLS returns a TLS client configuration for HTTPS to the device
// plane (update downloads, TUF metadata): it presents the device's current
// operational certificate, renewals and rotations included, and trusts only
// the server CA.
func (a *Agent) DeviceTLS() *tls.Config {
	return &tls.Config{
		RootCAs:    a.cfg.ServerCA,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			id := a.identity()
			if id == nil {
				return nil, errors.New("the device is not enrolled yet")
			}
			return id.TLS(), nil
		},
	}
}

// TenantID returns the tenant the operational certificate names (its
// subject's organizational unit, as the server issues it); empty before
// the first enrollment.
func (a *Agent) TenantID() string {
	id := a.identity()
	if id == nil || len(id.Cert.Subject.OrganizationalUnit) == 0 {
		return ""
	}
	return id.Cert.Subject.OrganizationalUnit[0]
}
