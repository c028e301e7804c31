// Package notify delivers notifications to a tenant's channels: webhooks
// (a signed JSON POST) and email (SMTP). A Notifier enqueues each
// notification durably, as one delivery per channel in the store, and its
// worker (Run) sends the deliveries that are due, on any node, retrying
// with exponential backoff until they are delivered or it gives up.
//
// Webhook signature: the request carries
//
//	X-Steward-Timestamp: <Unix seconds when the attempt was made>
//	X-Steward-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// so a receiver recomputes the HMAC over the timestamp, a dot and the raw
// body with the channel's secret, compares in constant time, and refuses
// a timestamp too far from its clock (five minutes, say) to stop replays.
//
// Notification policies (routing.go) route, group, escalate and act on
// notifications: a matching policy's groups are kept in the store and
// sent by the same worker (FlushDue) after group_wait, group_interval and
// repeat_interval.
package notify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"time"

	"github.com/steward-iot/steward"
)

// Defaults of Config.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 8
	DefaultBaseBackoff = 30 * time.Second
	DefaultMaxBackoff  = time.Hour
	DefaultLease       = 2 * time.Minute
	DefaultBatch       = 50
	DefaultPoll        = 5 * time.Second
)

// Config is what a Notifier works with; zero fields take the defaults.
type Config struct {
	Store  steward.Store
	Clock  steward.Clock
	Logger *slog.Logger
	// HTTP sends webhooks; its own timeout, if any, adds to Timeout.
	HTTP *http.Client
	// SMTP configures the email sender (TLS roots, HELO name).
	SMTP SMTPConfig
	// Timeout bounds one attempt (connect, send, answer).
	Timeout time.Duration
	// MaxAttempts is how many attempts a delivery gets before it fails.
	MaxAttempts int
	// BaseBackoff is the wait after the first failed attempt; it doubles
	// with each attempt up to MaxBackoff, then jitter takes up to half off.
	BaseBackoff, MaxBackoff time.Duration
	// Lease is how long a claimed delivery is left to its node before
	// another may take it again.
	Lease time.Duration
	// Batch is how many due deliveries one round claims.
	Batch int
	// Poll is how often Run looks for due deliveries when not woken.
	Poll time.Duration
	// Jitter returns a number in [0, 1); nil uses math/rand/v2.
	Jitter func() float64
	// Quarantiner runs the "quarantine" action of notification policies
	// (nil: the action is recorded as skipped).
	Quarantiner Quarantiner
}

// Notifier enqueues notifications and sends them.
type Notifier struct {
	cfg   Config
	log   *slog.Logger
	clock steward.Clock
	wake  chan struct{}
}

// New returns a Notifier; cfg.Store is required.
func New(cfg Config) *Notifier {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{}
	}
	setDefault(&cfg.Timeout, DefaultTimeout)
	setDefault(&cfg.BaseBackoff, DefaultBaseBackoff)
	setDefault(&cfg.MaxBackoff, DefaultMaxBackoff)
	setDefault(&cfg.Lease, DefaultLease)
	setDefault(&cfg.Poll, DefaultPoll)
	setDefault(&cfg.MaxAttempts, DefaultMaxAttempts)
	setDefault(&cfg.Batch, DefaultBatch)
	if cfg.Jitter == nil {
		cfg.Jitter = mrand.Float64
	}
	return &Notifier{cfg: cfg, log: cfg.Logger, clock: cfg.Clock, wake: make(chan struct{}, 1)}
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// newID returns prefix + 20 random hex characters.
func newID(prefix string) string {
	b := make([]byte, 10)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return prefix + hex.EncodeToString(b)
}

// Enqueue stores n as a pending delivery to the channel, due now, and
// wakes this node's worker. The same notification key enqueued twice for
// a channel gives the delivery already queued (CodeConflict is not an
// error here: a retried alert evaluation must not notify twice).
func (nt *Notifier) Enqueue(ctx context.Context, channelID string, n steward.Notification) (steward.Delivery, error) {
	d, err := nt.newDelivery(ctx, channelID, n, 0)
	if err != nil {
		return d, err
	}
	if err := nt.cfg.Store.EnqueueDelivery(ctx, d); err != nil {
		if steward.IsConflict(err) {
			return nt.existing(ctx, n.TenantID, channelID, n.Key)
		}
		return d, fmt.Errorf("enqueue notification: %w", err)
	}
	nt.Wake()
	return d, nil
}

func (nt *Notifier) newDelivery(ctx context.Context, channelID string, n steward.Notification, lease time.Duration) (steward.Delivery, error) {
	if err := n.Validate(); err != nil {
		return steward.Delivery{}, err
	}
	ch, err := nt.cfg.Store.GetChannel(ctx, n.TenantID, channelID)
	if err != nil {
		return steward.Delivery{}, err
	}
	now := nt.clock.Now().UTC()
	if n.SentAt.IsZero() {
		n.SentAt = now
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	body, err := json.Marshal(n)
	if err != nil {
		return steward.Delivery{}, fmt.Errorf("encode notification: %w", err)
	}
	return pendingDelivery(n.TenantID, ch.ID, n.Key, body, now, lease), nil
}

// pendingDelivery is a new delivery of body to a channel, due after lease.
func pendingDelivery(tenantID, channelID, key string, body []byte, now time.Time, lease time.Duration) steward.Delivery {
	return steward.Delivery{
		ID: newID("dl-"), TenantID: tenantID, ChannelID: channelID, NotificationKey: key,
		Payload: body, Status: steward.DeliveryPending, NextAttemptAt: now.Add(lease), CreatedAt: now,
	}
}

// existing finds the delivery of key to a channel.
func (nt *Notifier) existing(ctx context.Context, tenantID, channelID, key string) (steward.Delivery, error) {
	ds, err := nt.cfg.Store.ListDeliveries(ctx, tenantID, steward.DeliveryFilter{ChannelID: channelID, Limit: 1000})
	if err != nil {
		return steward.Delivery{}, err
	}
	for _, d := range ds {
		if d.NotificationKey == key {
			return d, nil
		}
	}
	return steward.Delivery{}, steward.Errorf(steward.CodeConflict, "notification %q is already queued for channel %s", key, channelID)
}

// Notify routes n, unless an active silence matches its labels: to the
// tenant's notification policies that match it (see routing.go), which
// group it and send the group later, or, when none matches, at once to
// every enabled channel of its tenant. It returns the deliveries enqueued
// at once and the silence that muted it, if one did.
func (nt *Notifier) Notify(ctx context.Context, n steward.Notification) ([]steward.Delivery, *steward.Silence, error) {
	if err := n.Validate(); err != nil {
		return nil, nil, err
	}
	if s, ok, err := nt.Silenced(ctx, n.TenantID, n.Labels, nt.clock.Now()); err != nil || ok {
		return nil, s, err
	}
	if routed, err := nt.route(ctx, n); err != nil || routed {
		return nil, nil, err
	}
	chs, err := nt.cfg.Store.ListChannels(ctx, n.TenantID)
	if err != nil {
		return nil, nil, err
	}
	var out []steward.Delivery
	for _, ch := range chs {
		if !ch.Enabled {
			continue
		}
		d, err := nt.Enqueue(ctx, ch.ID, n)
		if err != nil {
			return out, nil, err
		}
		out = append(out, d)
	}
	return out, nil, nil
}

// Silenced reports whether an active silence of the tenant matches labels
// at, and which.
func (nt *Notifier) Silenced(ctx context.Context, tenantID string, labels map[string]string, at time.Time) (*steward.Silence, bool, error) {
	ss, err := nt.cfg.Store.ActiveSilences(ctx, tenantID, at)
	if err != nil {
		return nil, false, fmt.Errorf("silences: %w", err)
	}
	s, ok := Silenced(ss, labels, at)
	return s, ok, nil
}

// Test sends a test notification to a channel now, through the real path
// (enqueued, signed, sent, recorded), and returns the delivery as it
// stands after the first attempt. The delivery is enqueued already
// claimed, so that no worker sends it at the same time.
func (nt *Notifier) Test(ctx context.Context, tenantID, channelID, actor string) (steward.Delivery, error) {
	now := nt.clock.Now().UTC()
	n := steward.Notification{
		Key: newID("test-"), GroupKey: "test", TenantID: tenantID, AlertID: "test", Rule: "steward-test",
		State: "firing", Severity: "info",
		Labels:   map[string]string{"test": "true"},
		Summary:  "Test notification sent by " + actor,
		StartsAt: now, SentAt: now,
	}
	d, err := nt.newDelivery(ctx, channelID, n, nt.cfg.Lease)
	if err != nil {
		return d, err
	}
	d.Attempt = 1
	if err := nt.cfg.Store.EnqueueDelivery(ctx, d); err != nil {
		return d, fmt.Errorf("enqueue test notification: %w", err)
	}
	return nt.attempt(ctx, d)
}

// Wake makes Run look for due deliveries now.
func (nt *Notifier) Wake() {
	select {
	case nt.wake <- struct{}{}:
	default:
	}
}

// Run sends due deliveries until ctx is done, every Poll and whenever
// woken.
func (nt *Notifier) Run(ctx context.Context) error {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-nt.wake:
		}
		if _, err := nt.FlushDue(ctx); err != nil && ctx.Err() == nil {
			nt.log.Warn("notify: flush notification groups", "err", err)
		}
		for {
			n, err := nt.SendDue(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				nt.log.Warn("notify: send due deliveries", "err", err)
			}
			if n < nt.cfg.Batch {
				break
			}
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(nt.cfg.Poll)
	}
}

// SendDue claims the deliveries due now, sends them and records the
// outcomes; it returns how many it claimed.
func (nt *Notifier) SendDue(ctx context.Context) (int, error) {
	ds, err := nt.cfg.Store.ClaimDeliveries(ctx, nt.clock.Now(), nt.cfg.Lease, nt.cfg.Batch)
	if err != nil {
		return 0, fmt.Errorf("claim deliveries: %w", err)
	}
	var errs []error
	for _, d := range ds {
		if _, err := nt.attempt(ctx, d); err != nil {
			errs = append(errs, err)
		}
	}
	return len(ds), errors.Join(errs...)
}

// outcome is what one attempt gave.
type outcome struct {
	httpStatus int
	smtpReply  string
	err        error
	retry      bool          // worth another attempt
	retryAfter time.Duration // the receiver's wish, when it said one
}

// attempt sends one claimed delivery (its Attempt already counted) and
// records the outcome.
func (nt *Notifier) attempt(ctx context.Context, d steward.Delivery) (steward.Delivery, error) {
	ch, err := nt.cfg.Store.GetChannel(ctx, d.TenantID, d.ChannelID)
	var o outcome
	switch {
	case err != nil:
		return d, fmt.Errorf("delivery %s: %w", d.ID, err)
	case !ch.Enabled:
		o = outcome{err: errors.New("channel is disabled")}
	default:
		actx, cancel := context.WithTimeout(ctx, nt.cfg.Timeout)
		switch ch.Kind {
		case steward.ChannelWebhook:
			o = nt.sendWebhook(actx, ch, d)
		case steward.ChannelEmail:
			o = nt.sendEmail(actx, ch, d)
		default:
			o = outcome{err: fmt.Errorf("unknown channel kind %q", ch.Kind)}
		}
		cancel()
	}
	now := nt.clock.Now().UTC()
	d.HTTPStatus, d.SMTPReply, d.Error = o.httpStatus, o.smtpReply, ""
	switch {
	case o.err == nil:
		d.Status, d.DeliveredAt, d.NextAttemptAt = steward.DeliveryDelivered, &now, now
	case o.retry && d.Attempt < nt.cfg.MaxAttempts:
		d.Status, d.Error = steward.DeliveryPending, o.err.Error()
		d.NextAttemptAt = now.Add(nt.backoff(d.Attempt, o.retryAfter))
	default:
		d.Status, d.Error, d.NextAttemptAt = steward.DeliveryFailed, o.err.Error(), now
		if o.retry {
			d.Error = fmt.Sprintf("gave up after %d attempts: %s", d.Attempt, d.Error)
		}
	}
	if len(d.Error) > 1024 {
		d.Error = d.Error[:1024]
	}
	nt.log.Info("notification delivery attempt", "tenant", d.TenantID, "delivery", d.ID, "channel", d.ChannelID,
		"attempt", d.Attempt, "status", d.Status, "http_status", d.HTTPStatus, "err", d.Error)
	// The outcome must be kept even when ctx ended during the send.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := nt.cfg.Store.RecordDelivery(rctx, d); err != nil {
		return d, fmt.Errorf("record delivery %s: %w", d.ID, err)
	}
	return d, nil
}

// backoff is the wait before attempt+1: the receiver's Retry-After when it
// gave one (at most MaxBackoff), else BaseBackoff·2^(attempt-1) capped at
// MaxBackoff, less up to half of it at random so that many deliveries
// failing at once do not come back at once.
func (nt *Notifier) backoff(attempt int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, nt.cfg.MaxBackoff)
	}
	d := nt.cfg.BaseBackoff
	for i := 1; i < attempt && d < nt.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, nt.cfg.MaxBackoff)
	return d - time.Duration(nt.cfg.Jitter()*float64(d/2))
}
