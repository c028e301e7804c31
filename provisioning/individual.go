package provisioning

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/steward-iot/steward"
)

// enrollIndividual enrolls a factory certificate that has an individual
// enrollment (a device transferred into a tenant): the enrollment names
// the tenant and the device, whatever group the certificate's
// manufacturer CA belongs to, so it takes precedence over group routing.
// The pin is the certificate itself (its SHA-256), so the manufacturer CA
// is not consulted; the TLS handshake proved the device holds the
// certificate's key, and the certificate must be within its validity. ok
// is false when the certificate has no individual enrollment.
func (s *Service) enrollIndividual(ctx context.Context, r steward.EnrollRequest) (certs []*x509.Certificate, ok bool, err error) {
	leaf := r.PeerChain[0]
	factoryID := hexSHA256(leaf.Raw)
	e, err := s.cfg.Store.IndividualEnrollmentByFactoryID(ctx, factoryID)
	switch {
	case steward.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, true, err
	}
	if now := s.cfg.Clock.Now(); now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, true, steward.Errorf(steward.CodeUnauthenticated, "the factory certificate has expired or is not yet valid")
	}
	if r.Label != "" && r.Label != e.TenantID {
		return nil, true, steward.Errorf(steward.CodeUnauthenticated, "the factory certificate is not registered with tenant %q", r.Label)
	}
	if err := s.tenantActive(ctx, e.TenantID, e.DeviceID, r.Remote); err != nil {
		return nil, true, err
	}
	csr, err := s.cfg.ParseCSR(r.CSR)
	if err != nil {
		return nil, true, err
	}
	d, err := s.cfg.Store.GetDevice(ctx, e.TenantID, e.DeviceID)
	if err != nil {
		return nil, true, fmt.Errorf("device of individual enrollment: %w", err)
	}
	if d.FactoryID != factoryID {
		return nil, true, steward.Errorf(steward.CodePermissionDenied, "device %s no longer answers for this factory certificate", d.ID)
	}
	certs, err = s.enrollAgain(ctx, d, hexSHA256(csr.RawSubjectPublicKeyInfo), csr, r.Remote)
	return certs, true, err
}

// checkNotLeaving refuses to provision again a device that waits, released,
// for another tenant to accept its transfer: it enrolls there, not here.
func (s *Service) checkNotLeaving(ctx context.Context, d steward.Device) error {
	if d.State != steward.StateRegistered || d.FactoryKeyID != "" {
		return nil
	}
	trs, err := s.cfg.Store.ListDeviceTransfers(ctx, d.TenantID, d.ID)
	if err != nil {
		return err
	}
	now := s.cfg.Clock.Now()
	for _, tr := range trs {
		if tr.State == steward.TransferPending && now.Before(tr.ExpiresAt) {
			return steward.Errorf(steward.CodePermissionDenied, "device %s is being transferred to another tenant (%s) and enrolls there once it is accepted", d.ID, tr.ID)
		}
	}
	return nil
}

// policyReasons checks a device against its group; a device whose group
// was deleted fails, since nothing vouches for it any more. A device that
// came in by a transfer has no group: its individual enrollment vouches
// for it, and it must report the model it was transferred as.
func (s *Service) policyReasons(ctx context.Context, g *steward.EnrollmentGroup, d *steward.Device) ([]string, error) {
	if g != nil {
		return g.CheckAttributes(d), nil
	}
	if d.EnrollmentGroupID == "" && d.FactoryID != "" {
		e, err := s.cfg.Store.IndividualEnrollmentByFactoryID(ctx, d.FactoryID)
		switch {
		case err == nil && e.TenantID == d.TenantID && e.DeviceID == d.ID:
			switch {
			case d.Model == "":
				return []string{"no model reported"}, nil
			case e.Model != "" && d.Model != e.Model:
				return []string{fmt.Sprintf("model %q is not the model %q it was transferred as", d.Model, e.Model)}, nil
			}
			return nil, nil
		case err != nil && !steward.IsNotFound(err):
			return nil, err
		}
	}
	return []string{"its enrollment group no longer exists"}, nil
}
