package api

import (
	"net/http"
	"net/url"
	"time"

	"github.com/steward-iot/steward"
)

// DefaultPresenceWindow is the window of GET /api/v1/devices/{id}/presence
// when from is not given: the last day.
const DefaultPresenceWindow = 24 * time.Hour

// PresenceHistory is the answer of GET /api/v1/devices/{id}/presence: the
// device's connects and disconnects in the window, newest first (at most
// limit of them), and a summary of the whole window.
type PresenceHistory struct {
	Items   []steward.PresenceEvent `json:"items"`
	Summary steward.PresenceSummary `json:"summary"`
}

// timeParam reads an optional RFC 3339 time; zero when absent.
func timeParam(q url.Values, name string) (time.Time, error) {
	s := q.Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, invalidf("%s must be an RFC 3339 time such as 2026-11-27T10:00:00Z, not %q", name, s)
	}
	return t.UTC(), nil
}

// deviceOf checks that the device exists in the caller's tenant, so that
// the history of an unknown device (or another tenant's) is 404, not an
// empty list.
func (s *Server) deviceOf(r *http.Request, p principal) (steward.Device, error) {
	id := r.PathValue("id")
	if !steward.ValidDeviceID(id) {
		return steward.Device{}, steward.Errorf(steward.CodeNotFound, "device %q not found", id)
	}
	return s.cfg.Store.GetDevice(r.Context(), p.tenantID, id)
}

func (s *Server) listDeviceEvents(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "type", "severity", "from", "to", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	f := steward.DeviceEventFilter{Type: q.Get("type"), MinSeverity: steward.Severity(q.Get("severity")), Limit: limit}
	if f.Type != "" && !steward.ValidEventType(f.Type) {
		return invalidf("type must be 1 to %d letters, digits, '_', '-' or '.'", steward.MaxEventTypeLen)
	}
	if f.MinSeverity != "" && !f.MinSeverity.Valid() {
		return invalidf("severity must be one of debug, info, notice, warning, error, critical, not %q", f.MinSeverity)
	}
	if f.From, err = timeParam(q, "from"); err != nil {
		return err
	}
	if f.To, err = timeParam(q, "to"); err != nil {
		return err
	}
	if !f.To.IsZero() && !f.From.Before(f.To) {
		return invalidf("from must be before to")
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	evs, err := s.cfg.Store.ListDeviceEvents(r.Context(), p.tenantID, d.ID, f)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(evs))
}

func (s *Server) devicePresence(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "from", "to", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	from, err := timeParam(q, "from")
	if err != nil {
		return err
	}
	to, err := timeParam(q, "to")
	if err != nil {
		return err
	}
	if to.IsZero() {
		to = s.clock.Now().UTC()
	}
	if from.IsZero() {
		from = to.Add(-DefaultPresenceWindow)
	}
	if !from.Before(to) {
		return invalidf("from must be before to")
	}
	d, err := s.deviceOf(r, p)
	if err != nil {
		return err
	}
	ctx := r.Context()
	items, err := s.cfg.Store.ListPresenceEvents(ctx, p.tenantID, d.ID, from, to, limit)
	if err != nil {
		return err
	}
	counts, err := s.cfg.Store.CountPresenceEvents(ctx, p.tenantID, d.ID, from, to)
	if err != nil {
		return err
	}
	// Whether the device was ever heard of before the window decides if
	// the window's first connect is a reconnect or the device's first.
	earlier, err := s.cfg.Store.ListPresenceEvents(ctx, p.tenantID, d.ID, time.Time{}, from, 1)
	if err != nil {
		return err
	}
	sum := steward.PresenceSummary{
		Online: d.Presence.Online, From: from, To: to,
		Connects: counts.Connects, Disconnects: counts.Disconnects, Reconnects: counts.Connects,
	}
	if len(earlier) == 0 && sum.Reconnects > 0 {
		sum.Reconnects--
	}
	sum.ReconnectsPerHour = float64(sum.Reconnects) / to.Sub(from).Hours()
	if items == nil {
		items = []steward.PresenceEvent{}
	}
	return writeJSON(w, http.StatusOK, PresenceHistory{Items: items, Summary: sum})
}
