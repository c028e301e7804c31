package cli

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/client"
)

func (e *env) channelsCommand() *cobra.Command {
	g := group("channels", "Manage notification channels (webhook, email)", "channel")
	var (
		webhook, secretFile, smtpAddr, from, smtpUser, passwordFile string
		headers, to                                                 []string
		disabled                                                    bool
	)
	create := &cobra.Command{
		Use:   "create NAME (--webhook URL | --email-to ADDR,… --email-from ADDR --smtp HOST:PORT)",
		Short: "Create a notification channel",
		Long: `A webhook channel POSTs each notification as JSON, signed with
HMAC-SHA256 when it has a secret (see docs/operations.md, "Notifications").
An email channel sends a plain text message through an SMTP relay, with
STARTTLS when the relay offers it. Secrets are read from files so that they
stay out of the shell history and the process list; the API never shows
them again.`,
		Example: `  steward channels create ops-hook --webhook https://hooks.example.com/steward --secret-file hook.key
  steward channels create oncall --email-to ops@example.com --email-from steward@example.com --smtp smtp.example.com:587`,
		Args: exactArgs("NAME"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			req := client.ChannelRequest{Name: args[0]}
			if disabled {
				f := false
				req.Enabled = &f
			}
			isEmail := len(to) > 0 || from != "" || smtpAddr != ""
			switch {
			case webhook != "" && isEmail:
				return usagef("give either --webhook or the --email-* flags, not both")
			case webhook != "":
				req.Kind = steward.ChannelWebhook
				req.Webhook = &steward.WebhookConfig{URL: webhook}
				if secretFile != "" {
					s, err := readSecret("secret-file", secretFile)
					if err != nil {
						return err
					}
					req.Webhook.Secret = s
				}
				if len(headers) > 0 {
					req.Webhook.Headers = map[string]string{}
					for _, h := range headers {
						k, v, ok := strings.Cut(h, ":")
						if !ok || strings.TrimSpace(k) == "" {
							return usagef("--header %q: want NAME: VALUE", h)
						}
						req.Webhook.Headers[strings.TrimSpace(k)] = strings.TrimSpace(v)
					}
				}
			case isEmail:
				if len(to) == 0 || from == "" || smtpAddr == "" {
					return usagef("an email channel needs --email-to, --email-from and --smtp")
				}
				req.Kind = steward.ChannelEmail
				req.Email = &steward.EmailConfig{To: to, From: from, SMTPAddr: smtpAddr, Username: smtpUser}
				if passwordFile != "" {
					s, err := readSecret("smtp-password-file", passwordFile)
					if err != nil {
						return err
					}
					req.Email.Password = s
				}
			default:
				return usagef("give --webhook URL or --email-to, --email-from and --smtp")
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ch, err := c.CreateChannel(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(ch, func(w io.Writer) error { return channelTable(w, ch) })
		}),
	}
	f := create.Flags()
	f.StringVar(&webhook, "webhook", "", "the webhook's http(s) `URL`")
	f.StringVar(&secretFile, "secret-file", "", "a `FILE` holding the webhook's HMAC secret")
	f.StringArrayVar(&headers, "header", nil, "an extra request header, `NAME: VALUE` (repeatable)")
	f.StringSliceVar(&to, "email-to", nil, "recipient addresses (`LIST`, comma-separated)")
	f.StringVar(&from, "email-from", "", "the sender `ADDRESS`")
	f.StringVar(&smtpAddr, "smtp", "", "the relay, `HOST:PORT`")
	f.StringVar(&smtpUser, "smtp-user", "", "the relay's user `NAME`, if it wants authentication")
	f.StringVar(&passwordFile, "smtp-password-file", "", "a `FILE` holding the relay's password")
	f.BoolVar(&disabled, "disabled", false, "create the channel disabled")

	list := &cobra.Command{
		Use: "list", Short: "List your tenant's notification channels", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			chs, err := c.ListChannels(cmd.Context())
			if err != nil {
				return err
			}
			return emitList(e, chs, func(w io.Writer, chs []client.Channel) error {
				t := newTable(w, "ID", "NAME", "KIND", "TARGET", "ENABLED", "CREATED")
				for _, ch := range chs {
					t.row(ch.ID, ch.Name, string(ch.Kind), channelTarget(ch), strconv.FormatBool(ch.Enabled), when(ch.CreatedAt))
				}
				return t.flush()
			})
		}),
	}
	del := &cobra.Command{
		Use: "delete ID", Short: "Delete a notification channel and its delivery log", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			if err := c.DeleteChannel(cmd.Context(), args[0]); err != nil {
				return err
			}
			return e.done("deleted notification channel %s", args[0])
		}),
	}
	test := &cobra.Command{
		Use: "test ID", Short: "Send a test notification to a channel now", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			d, err := c.TestChannel(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return e.emit(d, func(w io.Writer) error { return deliveryTable(w, d) })
		}),
	}
	g.AddCommand(create, list, del, test)
	return g
}

// readSecret reads a secret from a file, without its final newline.
func readSecret(flag, path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("--%s: %v", flag, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", usagef("--%s %s is empty", flag, path)
	}
	return s, nil
}

func channelTarget(ch client.Channel) string {
	switch {
	case ch.Webhook != nil:
		return ch.Webhook.URL
	case ch.Email != nil:
		return strings.Join(ch.Email.To, ",") + " via " + ch.Email.SMTPAddr
	}
	return ""
}

func channelTable(w io.Writer, ch client.Channel) error {
	k := newKV(w)
	k.add("ID", ch.ID)
	k.add("Name", ch.Name)
	k.add("Kind", string(ch.Kind))
	if wh := ch.Webhook; wh != nil {
		k.add("URL", wh.URL)
		k.add("Signed", strconv.FormatBool(wh.SecretSet))
		k.add("Headers", joinOr(wh.HeaderNames, "(none)"))
	}
	if em := ch.Email; em != nil {
		k.add("To", strings.Join(em.To, ", "))
		k.add("From", em.From)
		k.add("SMTP", em.SMTPAddr)
		if em.Username != "" {
			k.add("User", em.Username)
		}
	}
	k.add("Enabled", strconv.FormatBool(ch.Enabled))
	k.add("Created", when(ch.CreatedAt))
	return k.flush()
}

func deliveryTable(w io.Writer, d steward.Delivery) error {
	k := newKV(w)
	k.add("ID", d.ID)
	k.add("Channel", d.ChannelID)
	k.add("Notification", d.NotificationKey)
	k.add("Status", string(d.Status))
	k.add("Attempts", strconv.Itoa(d.Attempt))
	k.add("Reply", deliveryReply(d))
	if d.Error != "" {
		k.add("Error", d.Error)
	}
	if d.Status == steward.DeliveryPending {
		k.add("Next attempt", when(d.NextAttemptAt))
	}
	if d.DeliveredAt != nil {
		k.add("Delivered", when(*d.DeliveredAt))
	}
	return k.flush()
}

func deliveryReply(d steward.Delivery) string {
	if d.HTTPStatus != 0 {
		return "HTTP " + strconv.Itoa(d.HTTPStatus)
	}
	return d.SMTPReply
}

func (e *env) deliveriesCommand() *cobra.Command {
	g := group("deliveries", "Show the notification delivery log", "delivery")
	var channel, status string
	var limit int
	list := &cobra.Command{
		Use: "list", Short: "List notification deliveries, newest first", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if status != "" && !steward.DeliveryStatus(status).Valid() {
				return usagef("--status %q: want pending, delivered or failed", status)
			}
			if limit < 0 || limit > 1000 {
				return usagef("--limit %d: want 1 to 1000", limit)
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ds, err := c.ListDeliveries(cmd.Context(), steward.DeliveryFilter{ChannelID: channel, Status: steward.DeliveryStatus(status), Limit: limit})
			if err != nil {
				return err
			}
			return emitList(e, ds, func(w io.Writer, ds []steward.Delivery) error {
				t := newTable(w, "ID", "CHANNEL", "STATUS", "ATTEMPTS", "REPLY", "CREATED", "ERROR")
				for _, d := range ds {
					t.row(d.ID, d.ChannelID, string(d.Status), strconv.Itoa(d.Attempt), deliveryReply(d), when(d.CreatedAt), short(d.Error, 60))
				}
				return t.flush()
			})
		}),
	}
	list.Flags().StringVar(&channel, "channel", "", "only this channel's deliveries (`ID`)")
	list.Flags().StringVar(&status, "status", "", "only deliveries in this `STATUS` (pending, delivered, failed)")
	list.Flags().IntVar(&limit, "limit", 0, "at most `N` deliveries (default 100)")
	g.AddCommand(list)
	return g
}

func (e *env) silencesCommand() *cobra.Command {
	g := group("silences", "Mute notifications for a while", "silence")
	var matchers []string
	var duration time.Duration
	var until, comment string
	create := &cobra.Command{
		Use:   "create --match LABEL=VALUE … (--for DURATION | --until TIME)",
		Short: "Mute the notifications whose labels match",
		Long: `A notification is muted while the silence lasts when every --match
matches its labels: LABEL=VALUE (equal), LABEL!=VALUE (not equal) or
LABEL=~REGEXP (the regular expression matches the whole value). A missing
label has the empty value.`,
		Example: `  steward silences create --match site=paris --match 'model=~gw-.*' --for 2h --comment "router swap"`,
		Args:    exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			if len(matchers) == 0 {
				return usagef("give at least one --match LABEL=VALUE")
			}
			req := client.SilenceRequest{Comment: comment}
			for _, s := range matchers {
				m, err := parseMatcher(s)
				if err != nil {
					return err
				}
				req.Matchers = append(req.Matchers, m)
			}
			switch {
			case (duration > 0) == (until != ""):
				return usagef("give either --for or --until")
			case duration > 0:
				req.EndsAt = time.Now().Add(duration)
			default:
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return usagef("--until %q: want an RFC 3339 time (2026-11-27T10:00:00Z)", until)
				}
				req.EndsAt = t
			}
			c, err := e.client(0)
			if err != nil {
				return err
			}
			s, err := c.CreateSilence(cmd.Context(), req)
			if err != nil {
				return err
			}
			return e.emit(s, func(w io.Writer) error { return silenceTable(w, s) })
		}),
	}
	create.Flags().StringArrayVar(&matchers, "match", nil, "a label matcher, `LABEL=VALUE`, LABEL!=VALUE or LABEL=~REGEXP (repeatable)")
	create.Flags().DurationVar(&duration, "for", 0, "how long the silence lasts from now (`DURATION`, such as 2h)")
	create.Flags().StringVar(&until, "until", "", "when the silence ends (RFC 3339 `TIME`)")
	create.Flags().StringVar(&comment, "comment", "", "why (`TEXT`)")
	var active bool
	list := &cobra.Command{
		Use: "list", Short: "List your tenant's silences, newest first", Args: exactArgs(),
		RunE: run(func(cmd *cobra.Command, _ []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			ss, err := c.ListSilences(cmd.Context(), active)
			if err != nil {
				return err
			}
			return emitList(e, ss, func(w io.Writer, ss []steward.Silence) error {
				t := newTable(w, "ID", "MATCHERS", "STARTS", "ENDS", "BY", "COMMENT")
				for _, s := range ss {
					t.row(s.ID, matchersText(s.Matchers), when(s.StartsAt), when(s.EndsAt), s.CreatedBy, short(s.Comment, 40))
				}
				return t.flush()
			})
		}),
	}
	list.Flags().BoolVar(&active, "active", false, "only the silences active now")
	expire := &cobra.Command{
		Use: "expire ID", Short: "End a silence now", Args: exactArgs("ID"),
		RunE: run(func(cmd *cobra.Command, args []string) error {
			c, err := e.client(0)
			if err != nil {
				return err
			}
			s, err := c.ExpireSilence(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if e.output == "json" {
				return e.emit(s, nil)
			}
			return e.done("expired silence %s", args[0])
		}),
	}
	g.AddCommand(create, list, expire)
	return g
}

// parseMatcher reads LABEL=VALUE, LABEL!=VALUE or LABEL=~REGEXP.
func parseMatcher(s string) (steward.Matcher, error) {
	i := strings.IndexByte(s, '=')
	if i <= 0 {
		return steward.Matcher{}, usagef("--match %q: want LABEL=VALUE, LABEL!=VALUE or LABEL=~REGEXP", s)
	}
	m := steward.Matcher{Name: s[:i], Op: steward.MatchEqual, Value: s[i+1:]}
	switch {
	case strings.HasSuffix(m.Name, "!"):
		m.Name, m.Op = m.Name[:len(m.Name)-1], steward.MatchNotEqual
	case strings.HasPrefix(m.Value, "~"):
		m.Op, m.Value = steward.MatchRegexp, m.Value[1:]
	}
	if err := m.Validate(); err != nil {
		return m, usagef("--match %q: %s", s, steward.ErrorMessage(err))
	}
	return m, nil
}

func matchersText(ms []steward.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = fmt.Sprintf("%s%s%s", m.Name, m.Op, strconv.Quote(m.Value))
	}
	return strings.Join(parts, ",")
}

func silenceTable(w io.Writer, s steward.Silence) error {
	k := newKV(w)
	k.add("ID", s.ID)
	k.add("Matchers", matchersText(s.Matchers))
	k.add("Starts", when(s.StartsAt))
	k.add("Ends", when(s.EndsAt))
	k.add("By", s.CreatedBy)
	if s.Comment != "" {
		k.add("Comment", s.Comment)
	}
	return k.flush()
}
