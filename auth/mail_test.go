package auth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/metrics"
)

// Message is a Job for a message composed already.
func Message(to, subject, body string) Job {
	return func(context.Context) (string, string, string, bool, error) { return to, subject, body, true, nil }
}

// Each SMTP_TLS mode against a real SMTP conversation on loopback: what the
// server saw, command by command, and whether the mail arrived over TLS.
func TestSMTPMailerTLSModes(t *testing.T) {
	const delivered = "MAIL RCPT DATA QUIT"
	for _, tc := range []struct {
		name       string
		server     smtptest.Mode
		offerAuth  bool
		mode       string
		username   string
		refused    bool   // Send must fail with ErrMailRefused
		transcript string // every command the server received
	}{
		{"starttls", smtptest.StartTLS, false, SMTPStartTLS, "", false, "connect EHLO STARTTLS tls EHLO " + delivered},
		{"empty mode is starttls", smtptest.StartTLS, false, "", "", false, "connect EHLO STARTTLS tls EHLO " + delivered},
		{"starttls not offered (stripped)", smtptest.Plain, false, SMTPStartTLS, "", true, "connect EHLO"},
		{"starttls not offered, with credentials", smtptest.Plain, true, SMTPStartTLS, "relay-user", true, "connect EHLO"},
		{"implicit", smtptest.Implicit, false, SMTPImplicitTLS, "", false, "connect tls EHLO " + delivered},
		{"none to loopback", smtptest.Plain, false, SMTPNoTLS, "", false, "connect EHLO " + delivered},
		{"auth after starttls", smtptest.StartTLS, true, SMTPStartTLS, "relay-user", false, "connect EHLO STARTTLS tls EHLO AUTH " + delivered},
		{"auth over implicit tls", smtptest.Implicit, true, SMTPImplicitTLS, "relay-user", false, "connect tls EHLO AUTH " + delivered},
		{"username but AUTH not offered", smtptest.StartTLS, false, SMTPStartTLS, "relay-user", true, "connect EHLO STARTTLS tls EHLO"},
		{"username with none: never in clear", smtptest.Plain, true, SMTPNoTLS, "relay-user", true, "connect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, clientTLS := smtptest.Start(t, tc.server, tc.offerAuth)
			m := &SMTPMailer{Host: "127.0.0.1", Port: srv.Port(), TLSMode: tc.mode, From: "auth@example.com",
				Username: tc.username, Password: "relay-password", TLS: clientTLS, Timeout: 10 * time.Second}
			err := m.Send(context.Background(), "ann@example.com", "Reset your password", "a link")
			if tc.refused != errors.Is(err, ErrMailRefused) || (!tc.refused && err != nil) {
				t.Fatalf("Send = %v; want refused %v", err, tc.refused)
			}
			if got := srv.Transcript(); got != tc.transcript {
				t.Errorf("server saw %q; want %q", got, tc.transcript)
			}
			msgs := srv.Messages()
			if tc.refused {
				if len(msgs) != 0 {
					t.Errorf("refused, yet %d messages arrived", len(msgs))
				}
				return
			}
			if len(msgs) != 1 || msgs[0].To != "ann@example.com" || msgs[0].TLS != (tc.mode != SMTPNoTLS) {
				t.Errorf("messages %+v; want one to ann@example.com, over TLS unless mode none", msgs)
			}
		})
	}
}

// A server that does not offer STARTTLS (as after a man in the middle
// stripped it) gets nothing: the forgot answer is the same 202, the refusal
// is logged without the address or the link, and counted in /metrics.
func TestResetMailRefusedWithoutSTARTTLS(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.Plain, true)
	e := newEnv(t, "sqlite", withReset(t, srv, clientTLS, SMTPStartTLS))
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
	closeQueue(e.deps.Mail) // waits until the queue has tried

	if got := srv.Transcript(); got != "connect EHLO" {
		t.Errorf("server saw %q; want only EHLO: no STARTTLS, AUTH, MAIL or DATA", got)
	}
	if n := len(srv.Messages()); n != 0 {
		t.Errorf("%d messages arrived without TLS", n)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, `"msg":"mail not sent","reason":"refused"`) || !strings.Contains(logs, "does not offer STARTTLS") {
		t.Errorf("the refusal is not logged with its reason:\n%s", logs)
	}
	if strings.Contains(logs, "ann@example.com") || strings.Contains(logs, "password/reset") {
		t.Errorf("the log holds the address or the link:\n%s", logs)
	}
	text := e.metricsText()
	for _, want := range []string{`oauth2_mail_failures_total{reason="refused"} 1`, `oauth2_mail_failures_total{reason="error"} 0`, "oauth2_mail_dropped_total 0"} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// mailerFunc is a Mailer made of a function: here, one that blocks.
type mailerFunc func(ctx context.Context, to, subject, body string) error

func (f mailerFunc) Send(ctx context.Context, to, subject, body string) error {
	return f(ctx, to, subject, body)
}

// newTestQueue returns a queue in front of m with its logs and metrics.
func newTestQueue(t *testing.T, m Mailer, n int) (*MailQueue, *syncBuffer, *Metrics) {
	t.Helper()
	logs := &syncBuffer{}
	met := NewMetrics(metrics.NewRegistry())
	q := NewMailQueue(m, n, slog.New(slog.NewJSONHandler(logs, nil)), met)
	t.Cleanup(func() { closeQueue(q) })
	return q, logs, met
}

// A server's error reply may quote the recipient's address ("550 5.1.1
// <unknown@example.com>: User unknown"); the "mail not sent" line keeps its
// code alone, as the queue logs no address.
func TestMailNotSentLogsNoAddress(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	m := &SMTPMailer{Host: "127.0.0.1", Port: srv.Port(), TLSMode: SMTPStartTLS, From: "auth@example.com", TLS: clientTLS, Timeout: 10 * time.Second}
	q, logs, met := newTestQueue(t, m, 1)
	if !q.Enqueue(Message("unknown@example.com", "Reset your password", "a link")) {
		t.Fatal("Enqueue into an empty queue = false")
	}
	closeQueue(q)
	if strings.Contains(logs.String(), "unknown@") {
		t.Fatalf("the log holds the recipient's address: %s", logs)
	}
	if n := met.MailFailures.With(mailError).Value(); n != 1 || !strings.Contains(logs.String(), "RCPT TO: server replied 550") {
		t.Fatalf("failures %d, logs %s; want one \"mail not sent\" with the reply's code", n, logs)
	}
}

// A reply without a code is a textproto.ProtocolError holding the whole
// line, which may quote the recipient: it is named, never quoted (a relay
// answering RCPT with "55 <ann@example.com>: no such user" put the address in
// the log).
func TestMalformedSMTPReplyNotQuoted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		fmt.Fprint(c, "220 relay\r\n")
		for _, reply := range []string{"250 relay", "250 ok", "55 <ann@example.com>: no such user"} { // EHLO, MAIL FROM, RCPT TO
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			fmt.Fprint(c, reply+"\r\n")
		}
		r.ReadString('\n')
	}()
	m := &SMTPMailer{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port, TLSMode: SMTPNoTLS, From: "auth@example.com", Timeout: 10 * time.Second}
	err = m.Send(context.Background(), "ann@example.com", "Reset your password", "a link")
	if err == nil || strings.Contains(err.Error(), "ann@") || !strings.Contains(err.Error(), "RCPT TO: malformed server reply") {
		t.Fatalf("Send = %v; want the step named and the reply not quoted", err)
	}
}

// A full queue drops the message, logged and counted; a Close that runs out
// of time abandons the send in flight and drops what is left, logged and
// counted; after Close nothing is taken.
func TestMailQueueDropsCounted(t *testing.T) {
	sending := make(chan struct{}, 1)
	blocked := mailerFunc(func(ctx context.Context, to, subject, body string) error {
		sending <- struct{}{}
		<-ctx.Done() // a server that never answers
		return ctx.Err()
	})
	q, logs, met := newTestQueue(t, blocked, 1)
	if !q.Enqueue(Message("a@example.com", "s", "first")) {
		t.Fatal("Enqueue into an empty queue = false")
	}
	select { // the first is in flight: the queue is empty again
	case <-sending:
	case <-time.After(10 * time.Second):
		t.Fatal("the queue never started sending")
	}
	if !q.Enqueue(Message("b@example.com", "s", "second")) {
		t.Fatal("Enqueue into a queue with room = false")
	}
	if q.Enqueue(Message("c@example.com", "s", "third")) {
		t.Fatal("Enqueue into a full queue = true")
	}
	if n := met.MailDropped.Value(); n != 1 || !strings.Contains(logs.String(), "mail queue full") {
		t.Fatalf("after a full queue: dropped %d, logs %s; want 1, logged", n, logs)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel() // a shutdown out of time
	q.Close(ctx)
	if n := met.MailDropped.Value(); n != 2 {
		t.Errorf("after Close out of time: dropped %d; want 2 (the full queue and the one left)", n)
	}
	if n := met.MailFailures.With(mailError).Value(); n != 1 {
		t.Errorf("failures %d; want 1: the send abandoned in flight", n)
	}
	if !strings.Contains(logs.String(), `"msg":"mail queue closed before it was empty: messages dropped","count":1`) {
		t.Errorf("the drop at shutdown is not logged:\n%s", logs)
	}
	if q.Enqueue(Message("d@example.com", "s", "fourth")) || met.MailDropped.Value() != 3 {
		t.Errorf("Enqueue after Close: taken, or not counted (dropped %d)", met.MailDropped.Value())
	}
	for _, s := range []string{"@example.com", "first", "second", "third", "fourth"} {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the log holds %q:\n%s", s, logs)
		}
	}
}

// Close sends what is queued before it returns: mail enqueued just before a
// shutdown reaches the server.
func TestMailQueueCloseDrains(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	release := srv.Hold() // nothing is delivered before Close is called
	defer release()
	m := &SMTPMailer{Host: "127.0.0.1", Port: srv.Port(), From: "auth@example.com", TLS: clientTLS, Timeout: 10 * time.Second}
	q, logs, met := newTestQueue(t, m, 10)
	for _, to := range []string{"a@example.com", "b@example.com", "c@example.com"} {
		if !q.Enqueue(Message(to, "Reset your password", "a link")) {
			t.Fatalf("Enqueue(%s) = false", to)
		}
	}
	if n := len(srv.Messages()); n != 0 {
		t.Fatalf("%d messages delivered while the server holds", n)
	}
	closed := make(chan struct{})
	go func() {
		closeQueue(q)
		close(closed)
	}()
	release()
	<-closed
	if msgs := srv.Messages(); len(msgs) != 3 || !msgs[0].TLS {
		t.Errorf("after Close: %+v; want the three queued messages, over TLS", msgs)
	}
	if met.MailDropped.Value() != 0 || met.MailFailures.With(mailError).Value() != 0 {
		t.Errorf("dropped %d, failed %d; want none:\n%s", met.MailDropped.Value(), met.MailFailures.With(mailError).Value(), logs)
	}
}
