package steward

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// SecConfigChanged is the security event of a device that reported a
// configuration change it was not sent: a sample of MetricSecConfigChanges
// above 0.
const SecConfigChanged SecurityEventKind = "config_changed"

// QuarantineActor is the actor of a quarantine that a QuarantinePolicy
// rule decided, in lifecycle events and the audit log.
const QuarantineActor = "system:quarantine-policy"

// QuarantineNeverAllowed lists the channels no quarantine policy may give
// a quarantined device: twin/desired is how the server sends a device its
// configuration (and the credentials and endpoints configuration may
// carry), and a device under suspicion must not be handed either.
var QuarantineNeverAllowed = []Channel{ChannelTwinDesired}

// Limits of a quarantine rule.
const (
	// MaxQuarantineThreshold bounds a rule's count: the evaluation reads
	// that many of a device's latest events.
	MaxQuarantineThreshold = 1000
	// MaxQuarantineWindow bounds a rule's window.
	MaxQuarantineWindow = 7 * 24 * time.Hour
)

// QuarantineRule is one automatic quarantine rule: Threshold events of its
// kinds from one device within Window quarantine the device. A threshold of
// 1 acts at once (the window then plays no part).
type QuarantineRule struct {
	Enabled   bool     `json:"enabled"`
	Threshold int      `json:"threshold"`
	Window    Duration `json:"window"`
}

// QuarantineRules are a tenant's automatic quarantine rules, one for each
// signal.
type QuarantineRules struct {
	// ACLDenied counts refused publishes and subscriptions outside the
	// device's own topics (SecACLDenied).
	ACLDenied QuarantineRule `json:"acl_denied"`
	// AuthFailed counts refused authentications of the device's identity:
	// a certificate of the tenant's CA the registry does not know for the
	// device, a revoked certificate, an MQTT client ID that is not the
	// certificate's (SecAuthFailed, SecRevokedCredential, SecClientIDMismatch).
	AuthFailed QuarantineRule `json:"auth_failed"`
	// SuspectedClone counts enrollments of the device's factory identity
	// with another key (SecSuspectedClone).
	SuspectedClone QuarantineRule `json:"suspected_clone"`
	// ConfigChanged counts the device's own reports of configuration
	// changes it was not sent (SecConfigChanged).
	ConfigChanged QuarantineRule `json:"config_changed"`
}

// QuarantineRuleName names a rule in reasons and errors.
type QuarantineRuleName string

// The rule names, as in the JSON of QuarantineRules.
const (
	RuleACLDenied      QuarantineRuleName = "acl_denied"
	RuleAuthFailed     QuarantineRuleName = "auth_failed"
	RuleSuspectedClone QuarantineRuleName = "suspected_clone"
	RuleConfigChanged  QuarantineRuleName = "config_changed"
)

// QuarantineRuleNames lists the rules, in the order of QuarantineRules.
var QuarantineRuleNames = []QuarantineRuleName{RuleACLDenied, RuleAuthFailed, RuleSuspectedClone, RuleConfigChanged}

// QuarantineRuleKinds maps each rule to the security event kinds it counts.
var QuarantineRuleKinds = map[QuarantineRuleName][]SecurityEventKind{
	RuleACLDenied:      {SecACLDenied},
	RuleAuthFailed:     {SecAuthFailed, SecRevokedCredential, SecClientIDMismatch},
	RuleSuspectedClone: {SecSuspectedClone},
	RuleConfigChanged:  {SecConfigChanged},
}

// RuleFor returns the rule that counts events of kind, and its name; false
// when no rule counts that kind.
func (r QuarantineRules) RuleFor(kind SecurityEventKind) (QuarantineRuleName, QuarantineRule, bool) {
	for _, name := range QuarantineRuleNames {
		if slices.Contains(QuarantineRuleKinds[name], kind) {
			return name, r.Rule(name), true
		}
	}
	return "", QuarantineRule{}, false
}

// Rule returns the rule of a name (ConfigChanged for an unknown name).
func (r QuarantineRules) Rule(n QuarantineRuleName) QuarantineRule {
	switch n {
	case RuleACLDenied:
		return r.ACLDenied
	case RuleAuthFailed:
		return r.AuthFailed
	case RuleSuspectedClone:
		return r.SuspectedClone
	}
	return r.ConfigChanged
}

// QuarantinePolicy is a tenant's quarantine policy: what a quarantined
// device may still do, which security signals quarantine a device on their
// own, and the webhook that tells an outside firewall or network controller
// about every quarantine and release. A tenant that never set one has
// DefaultQuarantinePolicy.
type QuarantinePolicy struct {
	TenantID string `json:"tenant_id"`
	// MayPublish and MaySubscribe are the device channels a quarantined
	// device may still use: subsets of DeviceToServer and ServerToDevice,
	// never a channel of QuarantineNeverAllowed.
	MayPublish   []Channel       `json:"may_publish"`
	MaySubscribe []Channel       `json:"may_subscribe"`
	Rules        QuarantineRules `json:"rules"`
	// WebhookChannel, when set, is the ID of a webhook notification
	// channel of the tenant that gets a QuarantineEvent on every
	// quarantine and release.
	WebhookChannel string    `json:"webhook_channel,omitempty"`
	UpdatedAt      time.Time `json:"updated_at,omitzero"`
	UpdatedBy      string    `json:"updated_by,omitempty"`
}

// DefaultQuarantinePolicy is the policy of a tenant that never set one:
// the allowance of QuarantineMayPublish and QuarantineMaySubscribe, every
// rule on.
func DefaultQuarantinePolicy(tenantID string) QuarantinePolicy {
	return QuarantinePolicy{
		TenantID:     tenantID,
		MayPublish:   slices.Clone(QuarantineMayPublish),
		MaySubscribe: slices.Clone(QuarantineMaySubscribe),
		Rules: QuarantineRules{
			// A device that keeps probing other devices' topics; a few
			// refusals are a misconfigured client, twenty in ten minutes
			// are not.
			ACLDenied: QuarantineRule{Enabled: true, Threshold: 20, Window: Duration(10 * time.Minute)},
			// Someone presenting the device's identity with credentials
			// that do not hold.
			AuthFailed: QuarantineRule{Enabled: true, Threshold: 10, Window: Duration(10 * time.Minute)},
			// One clone is enough: the genuine device cannot be told apart.
			SuspectedClone: QuarantineRule{Enabled: true, Threshold: 1, Window: Duration(time.Hour)},
			// A configuration changed on the device, not by the server.
			ConfigChanged: QuarantineRule{Enabled: true, Threshold: 1, Window: Duration(time.Hour)},
		},
	}
}

// Validate checks a policy before it is stored.
func (p *QuarantinePolicy) Validate() error {
	if p.TenantID == "" {
		return Errorf(CodeInvalid, "a quarantine policy needs a tenant")
	}
	if err := checkAllowance("may_publish", p.MayPublish, DeviceToServer); err != nil {
		return err
	}
	if err := checkAllowance("may_subscribe", p.MaySubscribe, ServerToDevice); err != nil {
		return err
	}
	for _, name := range QuarantineRuleNames {
		r := p.Rules.Rule(name)
		switch {
		case r.Threshold < 1 || r.Threshold > MaxQuarantineThreshold:
			return Errorf(CodeInvalid, "rule %s: threshold %d, want 1 to %d", name, r.Threshold, MaxQuarantineThreshold)
		case r.Window.D() <= 0 || r.Window.D() > MaxQuarantineWindow:
			return Errorf(CodeInvalid, "rule %s: window %s, want more than 0 and at most %s", name, r.Window.D(), MaxQuarantineWindow)
		}
	}
	if len(p.WebhookChannel) > 128 {
		return Errorf(CodeInvalid, "webhook_channel is at most 128 bytes")
	}
	return nil
}

func checkAllowance(field string, got, valid []Channel) error {
	for i, ch := range got {
		switch {
		case slices.Contains(QuarantineNeverAllowed, ch):
			return Errorf(CodeInvalid, "%s: %q is never allowed in quarantine: it would let the device receive configuration", field, ch)
		case !slices.Contains(valid, ch):
			return Errorf(CodeInvalid, "%s: %q is not a channel a device may use in that direction (want one of %v)", field, ch, valid)
		case slices.Contains(got[:i], ch):
			return Errorf(CodeInvalid, "%s: %q is listed twice", field, ch)
		}
	}
	return nil
}

// QuarantineEventType is the type of a QuarantineEvent.
type QuarantineEventType string

// The quarantine webhook's event types.
const (
	QuarantineEventQuarantined QuarantineEventType = "device.quarantined"
	QuarantineEventReleased    QuarantineEventType = "device.released"
)

// QuarantineEvent is the body of the quarantine webhook: a device entered
// or left quarantine, by a rule or by an operator.
type QuarantineEvent struct {
	Type     QuarantineEventType `json:"type"`
	TenantID string              `json:"tenant"`
	DeviceID string              `json:"device"`
	Reason   string              `json:"reason"`
	Actor    string              `json:"actor"`
	At       time.Time           `json:"at"`
	// Serial is the device's serial number; CertFingerprint the hex
	// SHA-256 of its latest unrevoked operational certificate (DER).
	Serial          string `json:"serial,omitempty"`
	CertFingerprint string `json:"cert_fingerprint,omitempty"`
	// RemoteAddr is the address the device last connected from, when known.
	RemoteAddr string `json:"remote_addr,omitempty"`
}

// QuarantineStore keeps the tenants' quarantine policies.
type QuarantineStore interface {
	// PutQuarantinePolicy creates or replaces a tenant's policy
	// (CodeInvalid when it does not validate, CodeNotFound for an unknown
	// tenant).
	PutQuarantinePolicy(ctx context.Context, p QuarantinePolicy) error
	// GetQuarantinePolicy returns a tenant's policy; CodeNotFound when it
	// never set one (DefaultQuarantinePolicy then applies).
	GetQuarantinePolicy(ctx context.Context, tenantID string) (QuarantinePolicy, error)
}

// QuarantineAllowance is what a quarantined device of a tenant may still
// publish and subscribe to, as the device plane asks it.
type QuarantineAllowance interface {
	// QuarantineAllowance returns the tenant's allowance; it answers from
	// a cache and falls back to the defaults when the store cannot answer,
	// so it never blocks the device plane for long.
	QuarantineAllowance(ctx context.Context, tenantID string) (publish, subscribe []Channel)
}

// String describes a rule for reasons: "20 in 10m0s".
func (r QuarantineRule) String() string {
	if r.Threshold == 1 {
		return "at once"
	}
	return fmt.Sprintf("%d within %s", r.Threshold, r.Window.D())
}
