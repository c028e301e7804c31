package api

import (
	"net/http"

	"github.com/steward-iot/steward"
)

// registerTransfers registers the transfer of devices between tenants. The
// source starts and cancels a transfer with the right to decommission (the
// device leaves the tenant); the target accepts it with the right to
// change enrollment, since accepting trusts a factory certificate into the
// tenant as registering a manufacturer CA does.
func (s *Server) registerTransfers() {
	s.handle("POST", "/api/v1/devices/{id}/tenant-transfer", steward.PermDevicesDecommission, s.transferToTenant)
	s.handle("GET", "/api/v1/device-transfers", steward.PermDevicesRead, s.listTransfers)
	s.handle("GET", "/api/v1/device-transfers/{id}", steward.PermDevicesRead, s.getTransfer)
	s.handle("POST", "/api/v1/device-transfers/{id}/cancel", steward.PermDevicesDecommission, s.cancelTransfer)
	s.handle("POST", "/api/v1/transfer-acceptances", steward.PermEnrollmentWrite, s.acceptTransfer)
}

func (s *Server) transfers() (steward.TenantTransfers, error) {
	if s.cfg.Transfers == nil {
		return nil, steward.Errorf(steward.CodeUnavailable, "transfers between tenants are not available on this node")
	}
	return s.cfg.Transfers, nil
}

func (s *Server) transferToTenant(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.transfers()
	if err != nil {
		return err
	}
	var req steward.TenantTransferRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	id := r.PathValue("id")
	if !steward.ValidDeviceID(id) {
		return invalidf("%q is not a valid device ID", id)
	}
	res, err := t.TransferToTenant(r.Context(), p.tenantID, id, req, p.actor())
	if err != nil {
		return err
	}
	if res.Approval != nil {
		return writeJSON(w, http.StatusAccepted, res)
	}
	w.Header().Set("Cache-Control", "no-store") // the code is shown once
	return writeJSON(w, http.StatusCreated, res)
}

// listTransfers lists the tenant's outgoing transfers (of one device with
// ?device=), or with ?direction=incoming those it accepted.
func (s *Server) listTransfers(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.transfers()
	if err != nil {
		return err
	}
	q, err := queryParams(r, "device", "direction")
	if err != nil {
		return err
	}
	dev := q.Get("device")
	if dev != "" && !steward.ValidDeviceID(dev) {
		return invalidf("device %q is not a valid device ID", dev)
	}
	var trs []steward.DeviceTransfer
	device := func(tr steward.DeviceTransfer) string { return tr.DeviceID }
	switch q.Get("direction") {
	case "", "outgoing":
		trs, err = t.ListTransfers(r.Context(), p.tenantID, dev)
	case "incoming":
		if dev != "" {
			return invalidf("device goes with outgoing transfers only: an incoming transfer names the source's device")
		}
		trs, err = t.ListIncomingTransfers(r.Context(), p.tenantID)
		device = func(tr steward.DeviceTransfer) string { return tr.TargetDeviceID } // the device in this tenant
	default:
		return invalidf("direction is outgoing or incoming, not %q", q.Get("direction"))
	}
	if err != nil {
		return err
	}
	if trs, err = inScope(s, r.Context(), p, trs, device); err != nil { // a role limited to a fleet query sees its devices' transfers
		return err
	}
	return writeJSON(w, http.StatusOK, list(trs))
}

func (s *Server) getTransfer(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.transfers()
	if err != nil {
		return err
	}
	tr, err := t.GetTransfer(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tr)
}

func (s *Server) cancelTransfer(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.transfers()
	if err != nil {
		return err
	}
	tr, err := t.CancelTransfer(r.Context(), p.tenantID, r.PathValue("id"), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, tr)
}

// TransferAcceptRequest is the body of POST /api/v1/transfer-acceptances.
type TransferAcceptRequest struct {
	Code string `json:"code"`
}

func (s *Server) acceptTransfer(w http.ResponseWriter, r *http.Request, p principal) error {
	t, err := s.transfers()
	if err != nil {
		return err
	}
	var req TransferAcceptRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	res, err := t.AcceptTransfer(r.Context(), p.tenantID, req.Code, p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}
