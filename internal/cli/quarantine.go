package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
)

// quarantinePolicyFile is what quarantine-policy set reads: the API's
// request body, or what quarantine-policy get -o json wrote (whose
// read-only keys are dropped). It is decoded only to refuse unknown keys
// and bad values here, with the file's name; its keys are sent as written,
// so that what it leaves out takes the server's default.
type quarantinePolicyFile struct {
	MayPublish     []steward.Channel       `json:"may_publish"`
	MaySubscribe   []steward.Channel       `json:"may_subscribe"`
	Rules          steward.QuarantineRules `json:"rules"`
	WebhookChannel string                  `json:"webhook_channel"`
	TenantID       string                  `json:"tenant_id"`
	UpdatedAt      json.RawMessage         `json:"updated_at"`
	UpdatedBy      string                  `json:"updated_by"`
}

// readOnlyPolicyKeys are the keys of a policy the server sets itself.
var readOnlyPolicyKeys = []string{"tenant_id", "updated_at", "updated_by"}

func (e *env) quarantinePolicyCommand() *cobra.Command {
	g := group("quarantine-policy", "What quarantined devices may do, automatic quarantine rules, the firewall webhook")
	get := &cobra.Command{
		Use: "get", Short: "Show your tenant's quarantine policy", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			p, err := c.QuarantinePolicy(cmd.Context())
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return quarantinePolicyTable(w, p) })
		}),
	}
	var file string
	set := &cobra.Command{
		Use:   "set --file F",
		Short: "Replace your tenant's quarantine policy from a JSON file (- for stdin)",
		Long: `The file holds the whole policy: may_publish and may_subscribe (the device
channels a quarantined device may still use), rules (acl_denied, auth_failed,
suspected_clone, config_changed, each {"enabled", "threshold", "window"}) and
webhook_channel (the ID of a webhook notification channel told of every
quarantine and release). A key left out takes its default, within rules key
by key (see docs/security.md, "Quarantine"). Needs the quarantine:policy
permission; the change is audited with the policy before and after.`,
		Example: `  steward quarantine-policy get -o json > policy.json
  steward quarantine-policy set --file policy.json
  echo '{"rules": {"acl_denied": {"threshold": 5, "window": "1m"}}}' | steward quarantine-policy set --file -`,
		Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if file == "" {
				return usagef("--file is required")
			}
			b, err := e.readInput(file)
			if err != nil {
				return err
			}
			var check quarantinePolicyFile
			d := json.NewDecoder(bytes.NewReader(b))
			d.DisallowUnknownFields()
			if err := d.Decode(&check); err != nil {
				return usagef("%s: %v", file, err)
			}
			if d.More() {
				return usagef("%s: want one JSON object", file)
			}
			var keys map[string]json.RawMessage
			if err := json.Unmarshal(b, &keys); err != nil || keys == nil {
				return usagef("%s: want one JSON object", file)
			}
			for _, k := range readOnlyPolicyKeys {
				delete(keys, k)
			}
			body, err := json.Marshal(keys)
			if err != nil {
				return err
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			p, err := c.SetQuarantinePolicy(cmd.Context(), body)
			if err != nil {
				return err
			}
			return e.emit(p, func(w io.Writer) error { return quarantinePolicyTable(w, p) })
		}),
	}
	set.Flags().StringVar(&file, "file", "", "read the policy from `F` (- for stdin)")
	g.AddCommand(get, set)
	return g
}

func quarantinePolicyTable(w io.Writer, p steward.QuarantinePolicy) error {
	k := newKV(w)
	k.add("Tenant", p.TenantID)
	k.add("May publish", channelsText(p.MayPublish))
	k.add("May subscribe", channelsText(p.MaySubscribe))
	for _, name := range steward.QuarantineRuleNames {
		k.add("Rule "+string(name), ruleText(p.Rules, name))
	}
	k.add("Webhook channel", p.WebhookChannel)
	if p.UpdatedAt.IsZero() {
		k.add("Updated", "never (the default policy)")
	} else {
		k.add("Updated", p.UpdatedAt.UTC().Format(time.RFC3339)+" by "+p.UpdatedBy)
	}
	return k.flush()
}

func channelsText(chs []steward.Channel) string {
	if len(chs) == 0 {
		return "nothing"
	}
	s := make([]string, len(chs))
	for i, ch := range chs {
		s[i] = string(ch)
	}
	return strings.Join(s, ", ")
}

func ruleText(rs steward.QuarantineRules, name steward.QuarantineRuleName) string {
	r := rs.Rule(name)
	if !r.Enabled {
		return "off"
	}
	return r.String()
}
