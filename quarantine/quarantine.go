// Package quarantine makes quarantine a per-tenant policy: it keeps the
// tenants' steward.QuarantinePolicy, tells the device plane what a
// quarantined device may still do (steward.QuarantineAllowance), watches
// security events and quarantines the devices a rule picks out, and sends
// every quarantine and release, whoever made it, to the policy's webhook.
//
// Security events reach it through Observe (the device gate's
// OnSecurityEvent hook) and ObserveSamples (the telemetry intake's
// OnSamples hook, for sec.config.changes); both only queue, and Run
// evaluates the queue on one goroutine. The counts come from the store's
// security events, so events recorded on every node count, and a restart
// forgets nothing.
package quarantine

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/ttlcache"
)

// Defaults of Config.
const (
	DefaultCacheTTL  = 30 * time.Second
	DefaultQueueSize = 1024
)

// Quarantiner quarantines a device as an operator would: the state change,
// its audit record and the closing of the live session (*lifecycle.Service
// is one).
type Quarantiner interface {
	Quarantine(ctx context.Context, tenantID, id, reason, actor string) (steward.Device, error)
}

// EventSender delivers an event to a webhook channel through the
// notification worker (*notify.Notifier is one).
type EventSender interface {
	EnqueueEventIn(ctx context.Context, tx steward.Store, tenantID, channelID, key string, event any) (steward.Delivery, error)
	Wake()
}

// TxAuditor records in the audit log within a store transaction (*audit.Log
// is one), so that a policy change and its record land together.
type TxAuditor interface {
	RecordIn(ctx context.Context, tx steward.Store, r steward.AuditRecord) error
}

// Config wires the service.
type Config struct {
	Store       steward.Store
	Quarantiner Quarantiner
	// Bus closes the live sessions of quarantined devices when their
	// allowance changes; nil leaves them.
	Bus steward.Bus
	// Events delivers the webhook; nil sends none.
	Events EventSender
	// Auditor records policy changes; nil records none.
	Auditor TxAuditor
	Clock   steward.Clock
	Logger  *slog.Logger
	// CacheTTL is how long a tenant's policy is kept in memory (default
	// DefaultCacheTTL): the longest a change made on another node takes to
	// apply here. A change made through this node applies at once.
	CacheTTL time.Duration
	// QueueSize bounds the observations waiting for Run (default
	// DefaultQueueSize); past it they are dropped and counted, so that a
	// flood of events never stalls the device plane.
	QueueSize int
}

// observation is one security event waiting for evaluation; record says
// it is not stored yet (a device's sec.config.changes report).
type observation struct {
	e      steward.SecurityEvent
	record bool
}

// Service is the quarantine policy service.
type Service struct {
	cfg     Config
	log     *slog.Logger
	queue   chan observation
	dropped atomic.Uint64

	policies *ttlcache.Cache[steward.QuarantinePolicy]
}

// New returns the service; start its evaluation with Run.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = steward.SystemClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = DefaultQueueSize
	}
	return &Service{cfg: cfg, log: cfg.Logger, queue: make(chan observation, cfg.QueueSize), policies: ttlcache.New[steward.QuarantinePolicy](cfg.Clock, cfg.CacheTTL)}
}

var (
	_ steward.QuarantineAllowance = (*Service)(nil)
)

// ---- the policy ----

// Policy returns the tenant's policy: the stored one, or
// steward.DefaultQuarantinePolicy when it never set one.
func (s *Service) Policy(ctx context.Context, tenantID string) (steward.QuarantinePolicy, error) {
	return policyIn(ctx, s.cfg.Store, tenantID)
}

func policyIn(ctx context.Context, st steward.Store, tenantID string) (steward.QuarantinePolicy, error) {
	p, err := st.GetQuarantinePolicy(ctx, tenantID)
	if steward.IsNotFound(err) {
		return steward.DefaultQuarantinePolicy(tenantID), nil
	}
	if err != nil {
		return steward.QuarantinePolicy{}, fmt.Errorf("read quarantine policy: %w", err)
	}
	return p, nil
}

// cachedPolicy is Policy from memory when read within CacheTTL.
func (s *Service) cachedPolicy(ctx context.Context, tenantID string) (steward.QuarantinePolicy, error) {
	return s.policies.Get(ctx, tenantID, s.Policy)
}

// QuarantineAllowance implements steward.QuarantineAllowance. When the
// policy cannot be read it answers with the defaults, which are also what
// a tenant without a policy gets: the device plane must decide now.
func (s *Service) QuarantineAllowance(ctx context.Context, tenantID string) (publish, subscribe []steward.Channel) {
	p, err := s.cachedPolicy(ctx, tenantID)
	if err != nil {
		s.log.Warn("quarantine policy unavailable, using the defaults", "tenant", tenantID, "err", err)
		return steward.QuarantineMayPublish, steward.QuarantineMaySubscribe
	}
	return p.MayPublish, p.MaySubscribe
}

// SetPolicy checks and stores a tenant's policy, with an audit record of
// the policy before and after in the same transaction. The webhook
// channel must be a webhook channel of the tenant. The change applies on
// this node at once; when the allowance changed, the live sessions of the
// tenant's quarantined devices are closed, so that each device reconnects
// and learns from its subscriptions' answers what it may do now (MQTT has
// no way to tell a device that a granted subscription was withdrawn).
func (s *Service) SetPolicy(ctx context.Context, p steward.QuarantinePolicy, actor string) (steward.QuarantinePolicy, error) {
	if p.MayPublish == nil {
		p.MayPublish = []steward.Channel{}
	}
	if p.MaySubscribe == nil {
		p.MaySubscribe = []steward.Channel{}
	}
	p.UpdatedAt, p.UpdatedBy = s.cfg.Clock.Now(), actor
	if err := p.Validate(); err != nil {
		return steward.QuarantinePolicy{}, err
	}
	var before steward.QuarantinePolicy
	err := s.cfg.Store.InTx(ctx, func(tx steward.Store) error {
		if p.WebhookChannel != "" {
			ch, err := tx.GetChannel(ctx, p.TenantID, p.WebhookChannel)
			if steward.IsNotFound(err) {
				return steward.Errorf(steward.CodeInvalid, "webhook_channel %q: no such notification channel", p.WebhookChannel)
			}
			if err != nil {
				return err
			}
			if ch.Kind != steward.ChannelWebhook {
				return steward.Errorf(steward.CodeInvalid, "webhook_channel %q is a %s channel, not a webhook", p.WebhookChannel, ch.Kind)
			}
		}
		var err error
		if before, err = policyIn(ctx, tx, p.TenantID); err != nil {
			return err
		}
		if err := tx.PutQuarantinePolicy(ctx, p); err != nil {
			return err
		}
		return s.audit(ctx, tx, before, p, actor)
	})
	if err != nil {
		return steward.QuarantinePolicy{}, err
	}
	s.policies.Forget(p.TenantID)
	stored, err := s.Policy(ctx, p.TenantID)
	if err != nil {
		return steward.QuarantinePolicy{}, err
	}
	if !slices.Equal(before.MayPublish, p.MayPublish) || !slices.Equal(before.MaySubscribe, p.MaySubscribe) {
		s.closeQuarantined(context.WithoutCancel(ctx), p.TenantID)
	}
	return stored, nil
}

func (s *Service) audit(ctx context.Context, tx steward.Store, before, after steward.QuarantinePolicy, actor string) error {
	if s.cfg.Auditor == nil {
		return nil
	}
	b, err := json.Marshal(before)
	if err != nil {
		return err
	}
	a, err := json.Marshal(after)
	if err != nil {
		return err
	}
	err = s.cfg.Auditor.RecordIn(ctx, tx, steward.AuditRecord{TenantID: after.TenantID, Actor: actor, Action: "quarantine_policy.update",
		Target: "quarantine-policy", Outcome: steward.AuditSuccess, Before: b, After: a, At: after.UpdatedAt})
	if err != nil {
		return fmt.Errorf("audit quarantine policy change: %w", err)
	}
	return nil
}

// closeQuarantined closes the live sessions of the tenant's quarantined
// devices, wherever they are connected.
func (s *Service) closeQuarantined(ctx context.Context, tenantID string) {
	if s.cfg.Bus == nil {
		return
	}
	after := ""
	for {
		ds, err := s.cfg.Store.ListDevices(ctx, tenantID, steward.DeviceQuery{Query: "state = quarantined", After: after, Limit: 1000})
		if err != nil {
			s.log.Warn("list quarantined devices after a policy change", "tenant", tenantID, "err", err)
			return
		}
		for _, d := range ds {
			c := steward.SessionControl{TenantID: tenantID, DeviceID: d.ID, State: d.State, Close: true, Reason: "quarantine policy changed"}
			if err := s.cfg.Bus.Control(ctx, c); err != nil {
				s.log.Warn("close the session of a quarantined device", "tenant", tenantID, "device", d.ID, "err", err)
			}
		}
		if len(ds) < 1000 {
			return
		}
		after = ds[len(ds)-1].ID
	}
}

// ---- the webhook ----

// ObserveTransition implements lifecycle.TransitionObserver: a quarantine
// or a release, by anyone, is enqueued for the policy's webhook in the
// transaction that makes it. A webhook channel deleted since the policy
// named it is logged and skipped: it must not stand in the way of a
// quarantine.
func (s *Service) ObserveTransition(ctx context.Context, tx steward.Store, d steward.Device, ev steward.LifecycleEvent) error {
	var typ steward.QuarantineEventType
	switch {
	case ev.To == steward.StateQuarantined:
		typ = steward.QuarantineEventQuarantined
	case ev.From == steward.StateQuarantined && ev.To == steward.StateActive:
		typ = steward.QuarantineEventReleased
	default:
		return nil
	}
	if s.cfg.Events == nil {
		return nil
	}
	p, err := policyIn(ctx, tx, d.TenantID)
	if err != nil || p.WebhookChannel == "" {
		return err
	}
	event := steward.QuarantineEvent{Type: typ, TenantID: d.TenantID, DeviceID: d.ID, Reason: ev.Reason, Actor: ev.Actor, At: ev.At.UTC(),
		Serial: d.Serial, RemoteAddr: d.Presence.RemoteAddr}
	if event.CertFingerprint, err = fingerprint(ctx, tx, d); err != nil {
		return err
	}
	key := string(typ) + ":" + d.ID + ":" + randomHex()
	_, err = s.cfg.Events.EnqueueEventIn(ctx, tx, d.TenantID, p.WebhookChannel, key, event)
	switch code := steward.ErrorCode(err); {
	case err == nil:
		s.cfg.Events.Wake()
	case code == steward.CodeNotFound || code == steward.CodeInvalid:
		s.log.Warn("quarantine webhook not sent: the policy's channel is gone or no webhook", "tenant", d.TenantID, "device", d.ID,
			"channel", p.WebhookChannel, "err", err)
	default:
		return fmt.Errorf("enqueue quarantine webhook: %w", err)
	}
	return nil
}

// fingerprint is the hex SHA-256 of the device's latest unrevoked
// certificate (DER); "" when it has none.
func fingerprint(ctx context.Context, st steward.Store, d steward.Device) (string, error) {
	certs, err := st.ListCertificates(ctx, d.TenantID, d.ID)
	if err != nil {
		return "", fmt.Errorf("certificates of %s: %w", d.ID, err)
	}
	var latest *steward.Certificate
	for i := range certs {
		c := &certs[i]
		if !c.Revoked() && (latest == nil || c.NotAfter.After(latest.NotAfter)) {
			latest = c
		}
	}
	if latest == nil {
		return "", nil
	}
	block, _ := pem.Decode([]byte(latest.PEM))
	if block == nil {
		return "", nil
	}
	if _, err := x509.ParseCertificate(block.Bytes); err != nil {
		return "", nil
	}
	sum := sha256.Sum256(block.Bytes)
	return hex.EncodeToString(sum[:]), nil
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b)
}
