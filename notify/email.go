package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"sort"
	"strings"
	"time"

	"github.com/steward-iot/steward"
)

// SMTPConfig configures the email sender.
type SMTPConfig struct {
	// RootCAs verifies relays' STARTTLS certificates; nil uses the
	// system's roots.
	RootCAs *x509.CertPool
	// Hello is the name given in EHLO; empty means "localhost".
	Hello string
}

// sendEmail sends the delivery's notification as a plain text message.
// STARTTLS is used whenever the relay offers it. A 4xx reply or a network
// error is worth a retry; a 5xx reply is not.
func (nt *Notifier) sendEmail(ctx context.Context, ch steward.NotificationChannel, d steward.Delivery) outcome {
	ec := ch.Email
	if ec == nil {
		return outcome{err: fmt.Errorf("email channel %s has no settings", ch.ID)}
	}
	var msg []byte
	// A policy's group message has alerts; a lone notification has none.
	var g steward.GroupMessage
	if err := json.Unmarshal(d.Payload, &g); err == nil && len(g.Alerts) > 0 {
		msg = nt.groupMessage(ec, d, g)
	} else {
		var n steward.Notification
		if err := json.Unmarshal(d.Payload, &n); err != nil {
			return outcome{err: fmt.Errorf("decode notification: %w", err)}
		}
		msg = nt.message(ec, d, n)
	}
	reply, err := nt.smtpSend(ctx, ec, msg)
	o := outcome{smtpReply: reply}
	if err != nil {
		o.err = fmt.Errorf("smtp: %w", err)
		var te *textproto.Error
		o.retry = !errors.As(err, &te) || te.Code < 500
		if errors.As(err, &te) {
			o.smtpReply = fmt.Sprintf("%d %s", te.Code, te.Msg)
		}
	}
	return o
}

// smtpSend runs one SMTP session and returns the relay's reply to the
// message. net/smtp has no context: the deadline goes on the connection.
func (nt *Notifier) smtpSend(ctx context.Context, ec *steward.EmailConfig, msg []byte) (string, error) {
	host, _, err := net.SplitHostPort(ec.SMTPAddr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", ec.SMTPAddr, err)
	}
	var dialer net.Dialer
	conn, err := dialer.DialContext(ctx, "tcp", ec.SMTPAddr)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return "", err
	}
	defer c.Close()
	hello := nt.cfg.SMTP.Hello
	if hello == "" {
		hello = "localhost"
	}
	if err := c.Hello(hello); err != nil {
		return "", err
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: nt.cfg.SMTP.RootCAs, MinVersion: tls.VersionTLS12}); err != nil {
			return "", fmt.Errorf("starttls: %w", err)
		}
	}
	if ec.Username != "" {
		if err := c.Auth(smtp.PlainAuth("", ec.Username, ec.Password, host)); err != nil {
			return "", fmt.Errorf("auth: %w", err)
		}
	}
	if err := c.Mail(ec.From); err != nil {
		return "", err
	}
	for _, to := range ec.To {
		if err := c.Rcpt(to); err != nil {
			return "", err
		}
	}
	// DATA by hand, through the client's text connection: net/smtp's
	// Data writer drops the relay's final reply, which the delivery log
	// keeps ("250 2.0.0 queued as …").
	id, err := c.Text.Cmd("DATA")
	if err != nil {
		return "", err
	}
	c.Text.StartResponse(id)
	_, _, err = c.Text.ReadResponse(354)
	c.Text.EndResponse(id)
	if err != nil {
		return "", err
	}
	w := c.Text.DotWriter()
	if _, err := w.Write(msg); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	code, text, err := c.Text.ReadResponse(250)
	if err != nil {
		return "", err
	}
	_ = c.Quit() // the message is accepted; a failed QUIT changes nothing
	return fmt.Sprintf("%d %s", code, text), nil
}

// message builds the RFC 5322 message of a notification.
func (nt *Notifier) message(ec *steward.EmailConfig, d steward.Delivery, n steward.Notification) []byte {
	subject := fmt.Sprintf("[%s] %s", strings.ToUpper(n.State), n.Rule)
	if n.DeviceID != "" {
		subject += " on " + n.DeviceID
	}
	b := nt.header(ec, d, subject, n.Key)
	writeAlert(b, n)
	return b.Bytes()
}

// groupMessage builds the message of a policy's group: one block per alert.
func (nt *Notifier) groupMessage(ec *steward.EmailConfig, d steward.Delivery, g steward.GroupMessage) []byte {
	subject := fmt.Sprintf("[%s:%d] %s %s", strings.ToUpper(g.Status), len(g.Alerts), g.Policy, g.GroupKey)
	b := nt.header(ec, d, subject, d.NotificationKey)
	for i, n := range g.Alerts {
		if i > 0 {
			b.WriteString("\r\n")
		}
		writeAlert(b, n)
	}
	return b.Bytes()
}

func (nt *Notifier) header(ec *steward.EmailConfig, d steward.Delivery, subject, key string) *bytes.Buffer {
	var b bytes.Buffer
	hdr := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, oneLine(v)) }
	hdr("From", ec.From)
	hdr("To", strings.Join(ec.To, ", "))
	hdr("Subject", mime.QEncoding.Encode("utf-8", oneLine(subject)))
	hdr("Date", nt.clock.Now().Format(time.RFC1123Z))
	hdr("Message-ID", "<"+d.ID+"@steward>")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("X-Steward-Delivery", d.ID)
	hdr("X-Steward-Notification", key)
	b.WriteString("\r\n")
	return &b
}

// writeAlert writes one notification's block of text.
func writeAlert(b *bytes.Buffer, n steward.Notification) {
	fmt.Fprintf(b, "%s\r\n\r\n", n.Summary)
	line := func(k, v string) { fmt.Fprintf(b, "%-10s %s\r\n", k+":", v) }
	line("State", n.State)
	line("Severity", string(n.Severity))
	line("Rule", n.Rule)
	line("Alert", n.AlertID)
	if n.DeviceID != "" {
		line("Device", n.DeviceID)
	}
	line("Value", fmt.Sprintf("%g", n.Value))
	line("Since", n.StartsAt.UTC().Format(time.RFC3339))
	if n.EndsAt != nil {
		line("Ended", n.EndsAt.UTC().Format(time.RFC3339))
	}
	line("Group", n.GroupKey)
	keys := make([]string, 0, len(n.Labels))
	for k := range n.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		line("Label", k+"="+n.Labels[k])
	}
}

// oneLine keeps a header value on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}
