package api

import (
	"context"
	"net/http"
	"slices"
	"time"

	"github.com/steward-iot/steward"
)

// NotificationTester sends a test notification to a channel through the
// real delivery path (notify.Notifier does).
type NotificationTester interface {
	Test(ctx context.Context, tenantID, channelID, actor string) (steward.Delivery, error)
}

// ChannelRequest is the body of POST /api/v1/notification-channels.
type ChannelRequest struct {
	Name    string                 `json:"name"`
	Kind    steward.ChannelKind    `json:"kind"`
	Webhook *steward.WebhookConfig `json:"webhook,omitempty"`
	Email   *steward.EmailConfig   `json:"email,omitempty"`
	// Enabled defaults to true.
	Enabled *bool `json:"enabled,omitempty"`
}

// Channel is a notification channel as the API shows it: the webhook
// secret, the SMTP password and the webhook header values (often
// credentials) are never returned, only whether they are set.
type Channel struct {
	ID        string              `json:"id"`
	TenantID  string              `json:"tenant_id"`
	Name      string              `json:"name"`
	Kind      steward.ChannelKind `json:"kind"`
	Webhook   *WebhookView        `json:"webhook,omitempty"`
	Email     *EmailView          `json:"email,omitempty"`
	Enabled   bool                `json:"enabled"`
	CreatedAt time.Time           `json:"created_at"`
}

// WebhookView is a webhook channel's settings without its secrets.
type WebhookView struct {
	URL         string   `json:"url"`
	SecretSet   bool     `json:"secret_set"`
	HeaderNames []string `json:"header_names"`
}

// EmailView is an email channel's settings without the password.
type EmailView struct {
	To          []string `json:"to"`
	From        string   `json:"from"`
	SMTPAddr    string   `json:"smtp_addr"`
	Username    string   `json:"username,omitempty"`
	PasswordSet bool     `json:"password_set"`
}

func channelView(c steward.NotificationChannel) Channel {
	v := Channel{ID: c.ID, TenantID: c.TenantID, Name: c.Name, Kind: c.Kind, Enabled: c.Enabled, CreatedAt: c.CreatedAt}
	if w := c.Webhook; w != nil {
		v.Webhook = &WebhookView{URL: w.URL, SecretSet: w.Secret != "", HeaderNames: []string{}}
		for k := range w.Headers {
			v.Webhook.HeaderNames = append(v.Webhook.HeaderNames, k)
		}
		slices.Sort(v.Webhook.HeaderNames)
	}
	if e := c.Email; e != nil {
		v.Email = &EmailView{To: e.To, From: e.From, SMTPAddr: e.SMTPAddr, Username: e.Username, PasswordSet: e.Password != ""}
	}
	return v
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request, p principal) error {
	if _, err := queryParams(r); err != nil {
		return err
	}
	chs, err := s.cfg.Store.ListChannels(r.Context(), p.tenantID)
	if err != nil {
		return err
	}
	out := make([]Channel, 0, len(chs))
	for _, c := range chs {
		out = append(out, channelView(c))
	}
	return writeJSON(w, http.StatusOK, list(out))
}

func (s *Server) createChannel(w http.ResponseWriter, r *http.Request, p principal) error {
	var req ChannelRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	c := steward.NotificationChannel{ID: newID("ch-"), TenantID: p.tenantID, Name: req.Name, Kind: req.Kind,
		Webhook: req.Webhook, Email: req.Email, Enabled: req.Enabled == nil || *req.Enabled, CreatedAt: s.clock.Now().UTC()}
	if err := c.Validate(); err != nil {
		return err
	}
	if err := s.cfg.Store.CreateChannel(r.Context(), c); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetChannel(r.Context(), p.tenantID, c.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/notification-channels/"+c.ID)
	return writeJSON(w, http.StatusCreated, channelView(stored))
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request, p principal) error {
	c, err := s.cfg.Store.GetChannel(r.Context(), p.tenantID, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, channelView(c))
}

func (s *Server) deleteChannel(w http.ResponseWriter, r *http.Request, p principal) error {
	if err := s.cfg.Store.DeleteChannel(r.Context(), p.tenantID, r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) testChannel(w http.ResponseWriter, r *http.Request, p principal) error {
	if s.cfg.Notifier == nil {
		return steward.Errorf(steward.CodeUnavailable, "notifications are not enabled on this node")
	}
	d, err := s.cfg.Notifier.Test(r.Context(), p.tenantID, r.PathValue("id"), p.actor())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, d)
}

func (s *Server) listDeliveries(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "channel", "status", "limit")
	if err != nil {
		return err
	}
	limit, err := limitParam(q)
	if err != nil {
		return err
	}
	ds, err := s.cfg.Store.ListDeliveries(r.Context(), p.tenantID, steward.DeliveryFilter{
		ChannelID: q.Get("channel"), Status: steward.DeliveryStatus(q.Get("status")), Limit: limit})
	if err != nil {
		return err
	}
	if ds, err = inScope(s, r.Context(), p, ds, deliveryDevice); err != nil { // users.go, scope.go
		return err
	}
	return writeJSON(w, http.StatusOK, list(ds))
}

// SilenceRequest is the body of POST /api/v1/silences. StartsAt defaults
// to now.
type SilenceRequest struct {
	Matchers []steward.Matcher `json:"matchers"`
	StartsAt *time.Time        `json:"starts_at,omitempty"`
	EndsAt   time.Time         `json:"ends_at"`
	Comment  string            `json:"comment,omitempty"`
}

func (s *Server) listSilences(w http.ResponseWriter, r *http.Request, p principal) error {
	q, err := queryParams(r, "active")
	if err != nil {
		return err
	}
	var ss []steward.Silence
	switch q.Get("active") {
	case "":
		ss, err = s.cfg.Store.ListSilences(r.Context(), p.tenantID)
	case "true":
		ss, err = s.cfg.Store.ActiveSilences(r.Context(), p.tenantID, s.clock.Now())
	default:
		return invalidf("active must be true or absent")
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list(ss))
}

func (s *Server) createSilence(w http.ResponseWriter, r *http.Request, p principal) error {
	var req SilenceRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	now := s.clock.Now().UTC()
	x := steward.Silence{ID: newID("sil-"), TenantID: p.tenantID, Matchers: req.Matchers, StartsAt: now,
		EndsAt: req.EndsAt, CreatedBy: p.actor(), Comment: req.Comment, CreatedAt: now}
	if req.StartsAt != nil {
		x.StartsAt = *req.StartsAt
	}
	if err := x.Validate(); err != nil {
		return err
	}
	if err := s.cfg.Store.CreateSilence(r.Context(), x); err != nil {
		return err
	}
	stored, err := s.cfg.Store.GetSilence(r.Context(), p.tenantID, x.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/silences/"+x.ID)
	return writeJSON(w, http.StatusCreated, stored)
}

func (s *Server) expireSilence(w http.ResponseWriter, r *http.Request, p principal) error {
	x, err := s.cfg.Store.ExpireSilence(r.Context(), p.tenantID, r.PathValue("id"), s.clock.Now())
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, x)
}
