package api

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"

	"github.com/steward-iot/steward"
)

// tenantWide reports whether a route answers with one document over the
// whole tenant that cannot be cut down to some devices without breaking
// it, or acts on devices whatever their fleet query: the audit log's
// search, export and proofs are checked against the whole log, and the
// compliance report's summary counts every device; revoking an enrollment
// group or a manufacturer CA cuts off every device it enrolled, and
// rotating the device CA or the TUF root moves the whole fleet. A caller
// limited to a fleet query is refused these (403) rather than shown other
// devices' records or let reach other devices.
func tenantWide(path string) bool {
	switch path {
	case "/api/v1/compliance/report",
		"/api/v1/enrollment-groups/{id}/revoke", "/api/v1/enrollment-groups/{id}/revoke-ca",
		"/api/v1/ca/rotate", "/api/v1/ca/migrate", "/api/v1/ca/retire-old", "/api/v1/tuf/rotate-root":
		return true
	}
	return under(path, "/api/v1/audit")
}

// checkRecordScope is checkDeviceScope for the routes of records that
// belong to one device without being under /api/v1/devices/{id}: a
// deployment's device, a decommissioning, a transfer to another tenant, an
// approval of a device action, a certificate. Such a record of a device outside the caller's fleet
// query answers 404, as one that does not exist.
func (s *Server) checkRecordScope(r *http.Request, path string, p principal) error {
	if tenantWide(path) {
		return steward.Errorf(steward.CodePermissionDenied, "%s covers every device of the tenant and your role is limited to the fleet query %q", path, p.fleetQuery)
	}
	ctx, id := r.Context(), r.PathValue("id")
	var device, what string
	switch {
	case under(path, "/api/v1/deployments/{id}/devices/{device}"):
		device = r.PathValue("device")
		what = "device " + device + " of deployment " + id
	case under(path, "/api/v1/decommissions/{id}"):
		d, err := s.decommissioner()
		if err != nil {
			return err
		}
		rec, err := d.GetDecommission(ctx, p.tenantID, id)
		if err != nil {
			return err
		}
		device, what = rec.DeviceID, "decommissioning "+id
	case under(path, "/api/v1/device-transfers/{id}"):
		t, err := s.transfers()
		if err != nil {
			return err
		}
		tr, err := t.GetTransfer(ctx, p.tenantID, id)
		if err != nil {
			return err
		}
		device, what = tr.DeviceID, "transfer "+id
	case under(path, "/api/v1/approvals/{id}"):
		svc, err := s.approvalService()
		if err != nil {
			return err
		}
		a, err := svc.Get(ctx, p.tenantID, id)
		if err != nil {
			return err
		}
		dev, ok := targetDevice(a.Target)
		if !ok {
			return nil // an approval of a deployment or a policy: no one device's
		}
		device, what = dev, "approval "+id
	case under(path, "/api/v1/certificates/{serial}"):
		serial := r.PathValue("serial")
		c, err := s.cfg.Store.GetCertificate(ctx, p.tenantID, serial)
		if err != nil {
			return err
		}
		device, what = c.DeviceID, "certificate "+serial
	default:
		return nil
	}
	ok, err := s.deviceVisible(ctx, p, device)
	if err != nil {
		return err
	}
	if !ok {
		return steward.Errorf(steward.CodeNotFound, "%s not found", what)
	}
	return nil
}

// targetDevice returns the device of an approval's or audit record's
// target ("device:ID"), and false for a target that is not a device.
func targetDevice(target string) (string, bool) {
	return strings.CutPrefix(target, "device:")
}

// inScopeOrNone is inScope for lists whose items may belong to no device
// at all (an approval of a deployment): those are kept for every caller,
// and an item of a device only if the caller's fleet query reaches it.
func inScopeOrNone[T any](s *Server, ctx context.Context, p principal, items []T, device func(T) string) ([]T, error) {
	if p.fleetQuery == "" {
		return items, nil
	}
	var ids []string
	for _, it := range items {
		if d := device(it); d != "" {
			ids = append(ids, d)
		}
	}
	seen, err := s.visibleDevices(ctx, p, ids)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(items, func(it T) bool { d := device(it); return d != "" && !seen[d] }), nil
}

// deliveryDevice is the device of a delivery's notification ("" for a
// site's alert, or a payload that does not say).
func deliveryDevice(d steward.Delivery) string {
	var n struct {
		DeviceID string `json:"device_id"`
	}
	_ = json.Unmarshal(d.Payload, &n) // the payload is a Notification the server wrote
	return n.DeviceID
}

// scopedDriftCount counts the drifted devices the caller's fleet query
// reaches, a thousand twins at a time, so that the count of GET
// /api/v1/drift says nothing of devices outside it.
func (s *Server) scopedDriftCount(ctx context.Context, svc TwinService, p principal) (int, error) {
	n := 0
	f := steward.TwinFilter{Limit: 1000}
	for {
		ts, _, err := svc.Drifted(ctx, p.tenantID, f)
		if err != nil {
			return 0, err
		}
		seen, err := inScope(s, ctx, p, slices.Clone(ts), func(t steward.Twin) string { return t.DeviceID })
		if err != nil {
			return 0, err
		}
		n += len(seen)
		if len(ts) < f.Limit {
			return n, nil
		}
		f.After = ts[len(ts)-1].DeviceID
	}
}
