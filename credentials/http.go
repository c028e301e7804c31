package credentials

import (
	"net/http"
	"strings"

	"github.com/steward-iot/steward"
)

// CRLHandler serves the tenants' CRLs on the device plane, without
// authentication (a CRL is public and signed):
//
//	GET /crl/{tenant}.crl           the CRL of the tenant's active device CA
//	GET /crl/{tenant}/{keyid}.crl   the CRL of the device CA with that key ID (hex)
//
// Mount it at "/crl/".
func (s *Service) CRLHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /crl/{file}", func(w http.ResponseWriter, r *http.Request) {
		tenant, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
		s.serveCRL(w, r, tenant, "", ok)
	})
	mux.HandleFunc("GET /crl/{tenant}/{file}", func(w http.ResponseWriter, r *http.Request) {
		kid, ok := strings.CutSuffix(r.PathValue("file"), ".crl")
		s.serveCRL(w, r, r.PathValue("tenant"), kid, ok && validKeyID(kid))
	})
	return mux
}

func (s *Service) serveCRL(w http.ResponseWriter, r *http.Request, tenant, kid string, ok bool) {
	if !ok || !validTenant(tenant) {
		http.Error(w, "no such CRL", http.StatusNotFound)
		return
	}
	der, err := s.CRL(r.Context(), tenant, kid)
	if err != nil {
		code := steward.ErrorCode(err)
		if code == steward.CodeInternal {
			s.log.Error("serve CRL", "tenant", tenant, "err", err)
		}
		http.Error(w, steward.ErrorMessage(err), code.HTTPStatus())
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl")
	w.Header().Set("Cache-Control", "max-age=300")
	_, _ = w.Write(der)
}

func validTenant(t string) bool { return t != "" && len(t) <= 64 && steward.ValidDeviceID(t) }

func validKeyID(k string) bool { return len(k) <= 64 && validSerial(k) }
