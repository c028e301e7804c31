package notify

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"

	"github.com/steward-iot/steward"
	"github.com/steward-iot/steward/internal/testpki"
)

// smtpServer is a minimal SMTP relay on loopback, written for the tests:
// it speaks just enough of RFC 5321 (EHLO, STARTTLS, AUTH PLAIN, MAIL,
// RCPT, DATA, QUIT) to take a message from net/smtp and keep it, and can
// be told to refuse recipients with a given reply.
type smtpServer struct {
	addr string
	tls  *tls.Config // nil: no STARTTLS offered

	mu       sync.Mutex
	rcptCode int // a non-zero code refuses every RCPT with it
	msgs     []smtpMessage
}

type smtpMessage struct {
	from   string
	to     []string
	data   string
	tls    bool
	auth   string // the PLAIN credentials, decoded
	helloA string
}

func newSMTPServer(t *testing.T, tlsConf *tls.Config) *smtpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{addr: ln.Addr().String(), tls: tlsConf}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	tp := textproto.NewConn(c)
	_ = tp.PrintfLine("220 test.local ESMTP")
	var m smtpMessage
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			m.helloA = arg
			exts := []string{"250-test.local", "250-8BITMIME"}
			if s.tls != nil && !m.tls {
				exts = append(exts, "250-STARTTLS")
			}
			if m.tls || s.tls == nil {
				exts = append(exts, "250-AUTH PLAIN")
			}
			exts = append(exts, "250 SIZE 1000000")
			for _, e := range exts {
				_ = tp.PrintfLine("%s", e)
			}
		case "STARTTLS":
			_ = tp.PrintfLine("220 go ahead")
			tc := tls.Server(c, s.tls)
			if tc.Handshake() != nil {
				return
			}
			c, m.tls = tc, true
			tp = textproto.NewConn(tc)
		case "AUTH":
			mech, cred, _ := strings.Cut(arg, " ")
			b, err := base64.StdEncoding.DecodeString(cred)
			if mech != "PLAIN" || err != nil {
				_ = tp.PrintfLine("504 unsupported")
				continue
			}
			m.auth = string(b)
			_ = tp.PrintfLine("235 2.7.0 authenticated")
		case "MAIL":
			m.from = strings.Trim(strings.TrimPrefix(arg, "FROM:"), "<>")
			if i := strings.Index(m.from, "> "); i >= 0 {
				m.from = m.from[:i]
			}
			_ = tp.PrintfLine("250 ok")
		case "RCPT":
			s.mu.Lock()
			code := s.rcptCode
			s.mu.Unlock()
			if code != 0 {
				_ = tp.PrintfLine("%d recipient refused", code)
				continue
			}
			m.to = append(m.to, strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>"))
			_ = tp.PrintfLine("250 ok")
		case "DATA":
			_ = tp.PrintfLine("354 go on")
			b, err := tp.ReadDotBytes()
			if err != nil {
				return
			}
			m.data = string(b)
			s.mu.Lock()
			s.msgs = append(s.msgs, m)
			n := len(s.msgs)
			s.mu.Unlock()
			_ = tp.PrintfLine("250 2.0.0 queued as Q%d", n)
		case "RSET", "NOOP":
			_ = tp.PrintfLine("250 ok")
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 not implemented")
		}
	}
}

func (s *smtpServer) messages() []smtpMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]smtpMessage(nil), s.msgs...)
}

func TestEmailDelivery(t *testing.T) {
	t.Parallel()
	ca := testpki.NewCA(t, "smtp test CA")
	cases := []struct {
		name     string
		tls      bool
		username string
	}{
		{"plain", false, ""},
		{"starttls with auth", true, "alerts"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conf *tls.Config
			if tc.tls {
				conf = &tls.Config{Certificates: []tls.Certificate{ca.ServerCert(t)}}
			}
			srv := newSMTPServer(t, conf)
			e := newEnv(t, func(c *Config) { c.SMTP = SMTPConfig{RootCAs: ca.Pool(), Hello: "steward.test"} })
			ec := &steward.EmailConfig{To: []string{"ops@example.com", "oncall@example.com"}, From: "steward@example.com",
				SMTPAddr: strings.Replace(srv.addr, "127.0.0.1", "localhost", 1)}
			if tc.username != "" {
				ec.Username, ec.Password = tc.username, "pw"
			}
			ch := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelEmail, Email: ec})
			d, err := e.n.Enqueue(t.Context(), ch.ID, note("k1"))
			must(t, err)
			e.sendDue(t, 1)
			got := e.get(t, d.ID)
			if got.Status != steward.DeliveryDelivered || got.SMTPReply != "250 2.0.0 queued as Q1" {
				t.Fatalf("delivery %+v", got)
			}
			msgs := srv.messages()
			if len(msgs) != 1 {
				t.Fatalf("relay got %d messages", len(msgs))
			}
			m := msgs[0]
			if m.from != "steward@example.com" || strings.Join(m.to, ",") != "ops@example.com,oncall@example.com" ||
				m.tls != tc.tls || m.helloA != "steward.test" {
				t.Fatalf("envelope %+v", m)
			}
			if tc.username != "" && m.auth != "\x00alerts\x00pw" {
				t.Fatalf("auth %q", m.auth)
			}
			msg, err := mail.ReadMessage(bufio.NewReader(strings.NewReader(m.data)))
			must(t, err)
			subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
			must(t, err)
			for k, want := range map[string]string{
				"From": "steward@example.com", "To": "ops@example.com, oncall@example.com",
				"Message-ID": "<" + d.ID + "@steward>", "Content-Type": "text/plain; charset=utf-8",
				"X-Steward-Notification": "k1", "Date": e.clock.Now().Format("Mon, 02 Jan 2006 15:04:05 -0700"),
			} {
				if got := msg.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			if subject != "[FIRING] cpu-high on d-0000000000000000000a" {
				t.Errorf("subject %q", subject)
			}
			body := m.data[strings.Index(m.data, "\n\n")+2:] // the dot reader gives lines ending in \n
			for _, want := range []string{"CPU above 90% for 5m — Zürich\n", "Severity:  critical\n", "Value:     97.5\n",
				"Label:     model=gw-100\nLabel:     site=paris\n", "Since:     2026-11-27T09:55:00Z\n"} {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q:\n%s", want, body)
				}
			}
		})
	}
}

func TestEmailRefusals(t *testing.T) {
	t.Parallel()
	cases := []struct {
		code   int
		status steward.DeliveryStatus
	}{
		{450, steward.DeliveryPending}, // try again later
		{550, steward.DeliveryFailed},  // no such mailbox: final
	}
	for _, tc := range cases {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			t.Parallel()
			srv := newSMTPServer(t, nil)
			srv.rcptCode = tc.code
			e := newEnv(t, nil)
			ch := e.channel(t, steward.NotificationChannel{Kind: steward.ChannelEmail, Email: &steward.EmailConfig{
				To: []string{"ops@example.com"}, From: "steward@example.com", SMTPAddr: srv.addr}})
			d, err := e.n.Enqueue(t.Context(), ch.ID, note("k1"))
			must(t, err)
			e.sendDue(t, 1)
			got := e.get(t, d.ID)
			if got.Status != tc.status || got.SMTPReply != fmt.Sprintf("%d recipient refused", tc.code) || got.Error == "" {
				t.Fatalf("delivery %+v", got)
			}
			if len(srv.messages()) != 0 {
				t.Fatal("a refused message was stored")
			}
		})
	}
}
