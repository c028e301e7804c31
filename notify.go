package steward

import (
	"encoding/json"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// ChannelKind says how a notification channel delivers.
type ChannelKind string

// The channel kinds.
const (
	ChannelWebhook ChannelKind = "webhook"
	ChannelEmail   ChannelKind = "email"
)

// Limits on notification channels and silences.
const (
	MaxChannelNameLen    = 128
	MaxWebhookHeaders    = 32
	MaxEmailRecipients   = 50
	MaxSilenceMatchers   = 32
	MaxSilenceCommentLen = 1024
)

// NotificationChannel is where a tenant's notifications go: a webhook or
// an email address list.
//
// The webhook secret and the SMTP password are sealed under the master key
// before they are stored (notify.SealedChannels); the API never returns
// them after creation (it answers secret_set / password_set instead), so
// that a token that can read the channel list cannot forge signatures.
type NotificationChannel struct {
	ID        string         `json:"id"`
	TenantID  string         `json:"tenant_id"`
	Name      string         `json:"name"`
	Kind      ChannelKind    `json:"kind"`
	Webhook   *WebhookConfig `json:"webhook,omitempty"`
	Email     *EmailConfig   `json:"email,omitempty"`
	Enabled   bool           `json:"enabled"`
	CreatedAt time.Time      `json:"created_at"`
}

// WebhookConfig is a webhook channel's target.
type WebhookConfig struct {
	URL string `json:"url"`
	// Secret is the HMAC-SHA256 key that signs each body; empty sends
	// unsigned requests.
	Secret  string            `json:"secret,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// EmailConfig is an email channel's recipients and relay.
type EmailConfig struct {
	To   []string `json:"to"`
	From string   `json:"from"`
	// SMTPAddr is the relay's host:port; STARTTLS is used when it offers it.
	SMTPAddr string `json:"smtp_addr"`
	// Username and Password, when set, authenticate with PLAIN (only over
	// TLS or to a loopback relay, as net/smtp insists).
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
}

// Validate checks a channel before it is stored.
func (c *NotificationChannel) Validate() error {
	switch {
	case c.ID == "" || c.TenantID == "":
		return Errorf(CodeInvalid, "a notification channel needs an ID and a tenant")
	case strings.TrimSpace(c.Name) == "" || len(c.Name) > MaxChannelNameLen || strings.TrimSpace(c.Name) != c.Name:
		return Errorf(CodeInvalid, "channel name %q: use 1 to %d bytes of UTF-8 without surrounding spaces", Truncate(c.Name, 64), MaxChannelNameLen)
	case c.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "a notification channel needs its creation time")
	}
	switch c.Kind {
	case ChannelWebhook:
		if c.Webhook == nil || c.Email != nil {
			return Errorf(CodeInvalid, "a webhook channel needs webhook settings and no email settings")
		}
		return c.Webhook.validate()
	case ChannelEmail:
		if c.Email == nil || c.Webhook != nil {
			return Errorf(CodeInvalid, "an email channel needs email settings and no webhook settings")
		}
		return c.Email.validate()
	}
	return Errorf(CodeInvalid, "channel kind %q: want webhook or email", c.Kind)
}

func (w *WebhookConfig) validate() error {
	u, err := url.Parse(w.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Errorf(CodeInvalid, "webhook url %q: want an absolute http:// or https:// URL", w.URL)
	}
	if u.User != nil {
		return Errorf(CodeInvalid, "webhook url: put credentials in headers, not in the URL")
	}
	if len(w.Headers) > MaxWebhookHeaders {
		return Errorf(CodeInvalid, "webhook has %d headers, more than %d", len(w.Headers), MaxWebhookHeaders)
	}
	for k, v := range w.Headers {
		if !validHeaderName(k) || strings.ContainsAny(v, "\r\n\x00") {
			return Errorf(CodeInvalid, "webhook header %q: want a token name and a value without line breaks", k)
		}
		switch strings.ToLower(k) {
		case "content-type", "content-length", "host", "x-steward-signature", "x-steward-timestamp":
			return Errorf(CodeInvalid, "webhook header %q is set by Steward", k)
		}
	}
	return nil
}

func validHeaderName(k string) bool {
	if k == "" || len(k) > 128 {
		return false
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func (e *EmailConfig) validate() error {
	if len(e.To) == 0 || len(e.To) > MaxEmailRecipients {
		return Errorf(CodeInvalid, "email channel needs 1 to %d recipients", MaxEmailRecipients)
	}
	for _, a := range append([]string{e.From}, e.To...) {
		if !validAddress(a) {
			return Errorf(CodeInvalid, "email address %q: want a bare address such as ops@example.com", a)
		}
	}
	host, port, ok := strings.Cut(e.SMTPAddr, ":")
	if !ok || host == "" || port == "" || strings.ContainsAny(e.SMTPAddr, "/ \r\n") {
		return Errorf(CodeInvalid, "smtp_addr %q: want host:port", e.SMTPAddr)
	}
	if (e.Username == "") != (e.Password == "") {
		return Errorf(CodeInvalid, "smtp auth needs both username and password, or neither")
	}
	return nil
}

// validAddress accepts a bare address (no display name), the only form
// that is safe to put in SMTP commands and headers as is.
func validAddress(a string) bool {
	p, err := mail.ParseAddress(a)
	return err == nil && p.Name == "" && p.Address == a && !strings.ContainsAny(a, "\r\n<>")
}

// MatchOp compares a label with a silence matcher's value.
type MatchOp string

// The matcher operators.
const (
	MatchEqual    MatchOp = "="
	MatchNotEqual MatchOp = "!="
	MatchRegexp   MatchOp = "=~"
)

// Matcher matches one label of a notification. A missing label has the
// empty value.
type Matcher struct {
	Name  string  `json:"name"`
	Value string  `json:"value"`
	Op    MatchOp `json:"op"`
}

// Validate checks the matcher: a label name, a known operator and, for
// =~, a regular expression that compiles.
func (m Matcher) Validate() error {
	if !ValidLabelName(m.Name) {
		return Errorf(CodeInvalid, "matcher label name %q: use letters, digits, '_', '-' or '.'", m.Name)
	}
	switch m.Op {
	case MatchEqual, MatchNotEqual:
	case MatchRegexp:
		if _, err := regexp.Compile("^(?:" + m.Value + ")$"); err != nil {
			return Errorf(CodeInvalid, "matcher %s=~%q: bad regular expression: %v", m.Name, m.Value, err)
		}
	default:
		return Errorf(CodeInvalid, "matcher operator %q: want =, != or =~", m.Op)
	}
	return nil
}

// ValidLabelName reports whether n can name a label in a matcher: 1 to 64
// letters, digits, '_', '-' or '.'.
func ValidLabelName(n string) bool { return ValidEventType(n) }

// Silence mutes, between StartsAt and EndsAt, the notifications whose
// labels all its matchers match.
type Silence struct {
	ID        string    `json:"id"`
	TenantID  string    `json:"tenant_id"`
	Matchers  []Matcher `json:"matchers"`
	StartsAt  time.Time `json:"starts_at"`
	EndsAt    time.Time `json:"ends_at"`
	CreatedBy string    `json:"created_by"`
	Comment   string    `json:"comment,omitempty"`
	CreatedAt time.Time `json:"created_at"`
}

// Validate checks a silence before it is stored.
func (s *Silence) Validate() error {
	switch {
	case s.ID == "" || s.TenantID == "":
		return Errorf(CodeInvalid, "a silence needs an ID and a tenant")
	case len(s.Matchers) == 0 || len(s.Matchers) > MaxSilenceMatchers:
		return Errorf(CodeInvalid, "a silence needs 1 to %d matchers", MaxSilenceMatchers)
	case s.StartsAt.IsZero() || s.EndsAt.IsZero() || s.CreatedAt.IsZero():
		return Errorf(CodeInvalid, "a silence needs starts_at, ends_at and its creation time")
	case !s.EndsAt.After(s.StartsAt):
		return Errorf(CodeInvalid, "silence ends_at %s is not after starts_at %s", s.EndsAt.Format(time.RFC3339), s.StartsAt.Format(time.RFC3339))
	case s.CreatedBy == "":
		return Errorf(CodeInvalid, "a silence needs created_by")
	case len(s.Comment) > MaxSilenceCommentLen:
		return Errorf(CodeInvalid, "silence comment is %d bytes, more than %d", len(s.Comment), MaxSilenceCommentLen)
	}
	for _, m := range s.Matchers {
		if err := m.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// Active reports whether s mutes at t: StartsAt <= t < EndsAt.
func (s *Silence) Active(t time.Time) bool {
	return !t.Before(s.StartsAt) && t.Before(s.EndsAt)
}

// Notification is what a channel delivers: one alert's change of state,
// with what a receiver needs to act on it. Key identifies it (the same
// key is delivered once per channel); GroupKey groups the notifications a
// receiver may want to fold together.
type Notification struct {
	Key      string `json:"key"`
	GroupKey string `json:"group_key"`
	TenantID string `json:"tenant_id"`
	AlertID  string `json:"alert_id"`
	Rule     string `json:"rule"`
	DeviceID string `json:"device_id,omitempty"`
	State    string `json:"state"` // firing or resolved
	// Severity is the alert's severity as its rule names it (info,
	// warning, minor, major, critical).
	Severity string            `json:"severity"`
	Labels   map[string]string `json:"labels"`
	Summary  string            `json:"summary"`
	Value    float64           `json:"value"`
	StartsAt time.Time         `json:"starts_at"`
	EndsAt   *time.Time        `json:"ends_at,omitempty"`
	SentAt   time.Time         `json:"sent_at"`
}

// Validate checks what a deliverable notification must have.
func (n *Notification) Validate() error {
	switch {
	case n.Key == "" || len(n.Key) > 256:
		return Errorf(CodeInvalid, "a notification needs a key of 1 to 256 bytes")
	case n.TenantID == "" || n.AlertID == "" || n.Rule == "":
		return Errorf(CodeInvalid, "a notification needs a tenant, an alert ID and a rule")
	case n.State != "firing" && n.State != "resolved":
		return Errorf(CodeInvalid, "notification state %q: want firing or resolved", n.State)
	case n.Severity == "" || len(n.Severity) > 32:
		return Errorf(CodeInvalid, "a notification needs a severity of 1 to 32 bytes")
	case n.StartsAt.IsZero():
		return Errorf(CodeInvalid, "a notification needs starts_at")
	}
	return nil
}

// DeliveryStatus is where a delivery stands.
type DeliveryStatus string

// The delivery statuses.
const (
	DeliveryPending   DeliveryStatus = "pending"
	DeliveryDelivered DeliveryStatus = "delivered"
	DeliveryFailed    DeliveryStatus = "failed"
)

// Valid reports whether s is a known status.
func (s DeliveryStatus) Valid() bool {
	return s == DeliveryPending || s == DeliveryDelivered || s == DeliveryFailed
}

// Delivery is one notification on its way to one channel, and the
// record of its attempts: the delivery log.
type Delivery struct {
	ID              string `json:"id"`
	TenantID        string `json:"tenant_id"`
	ChannelID       string `json:"channel_id"`
	NotificationKey string `json:"notification_key"`
	// Payload is the Notification, as JSON, so that the worker on any node
	// can send it.
	Payload json.RawMessage `json:"payload"`
	// Attempt counts the attempts made (claimed) so far.
	Attempt int            `json:"attempt"`
	Status  DeliveryStatus `json:"status"`
	// HTTPStatus is the webhook's last answer; SMTPReply the relay's.
	HTTPStatus    int        `json:"http_status,omitempty"`
	SMTPReply     string     `json:"smtp_reply,omitempty"`
	Error         string     `json:"error,omitempty"`
	NextAttemptAt time.Time  `json:"next_attempt_at"`
	CreatedAt     time.Time  `json:"created_at"`
	DeliveredAt   *time.Time `json:"delivered_at,omitempty"`
}

// Validate checks a delivery before it is enqueued.
func (d *Delivery) Validate() error {
	switch {
	case d.ID == "" || d.TenantID == "" || d.ChannelID == "":
		return Errorf(CodeInvalid, "a delivery needs an ID, a tenant and a channel")
	case d.NotificationKey == "" || len(d.NotificationKey) > 256:
		return Errorf(CodeInvalid, "a delivery needs a notification key of 1 to 256 bytes")
	case !json.Valid(d.Payload):
		return Errorf(CodeInvalid, "a delivery's payload must be JSON")
	case !d.Status.Valid():
		return Errorf(CodeInvalid, "delivery status %q: want pending, delivered or failed", d.Status)
	case d.Attempt < 0:
		return Errorf(CodeInvalid, "delivery attempt %d is negative", d.Attempt)
	case d.CreatedAt.IsZero() || d.NextAttemptAt.IsZero():
		return Errorf(CodeInvalid, "a delivery needs created_at and next_attempt_at")
	}
	return nil
}

// DeliveryFilter narrows the delivery log.
type DeliveryFilter struct {
	ChannelID string
	Status    DeliveryStatus // empty: all
	Limit     int            // 0 means the store's default (100); at most 1000
}
