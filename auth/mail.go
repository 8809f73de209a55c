package auth

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"strconv"
	"strings"
	"time"

	"oauth2-api/token"
)

// Mailer sends one plain-text message.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// SMTP_TLS modes (API.md): how SMTPMailer protects the conversation.
const (
	SMTPStartTLS    = "starttls" // the default: STARTTLS before anything else, or nothing is sent
	SMTPImplicitTLS = "implicit" // TLS from the first byte, as on port 465 (RFC 8314 §3.3)
	SMTPNoTLS       = "none"     // clear text: only to a relay on the same machine (config checks)
)

// ErrMailRefused means SMTPMailer sent nothing because the server did not
// offer what the configuration requires: STARTTLS, or AUTH when there are
// credentials to present.
var ErrMailRefused = errors.New("smtp: refused to send")

// SMTPMailer sends mail through an SMTP server with net/smtp.
//
// # Security
//
// A reset mail holds a link that is as good as the password until it
// expires, so it never crosses a network in clear. With TLSMode
// SMTPStartTLS (or empty) Send requires the server to offer STARTTLS and
// starts TLS before any other command: a man in the middle who strips
// STARTTLS from the EHLO answer gets ErrMailRefused, not the link (RFC 3207
// §6 names that attack and asks clients to be able to require TLS). With
// SMTPImplicitTLS the first byte is TLS. SMTPNoTLS sends in clear, which
// loadConfig allows only to a loopback host.
//
// Credentials go only over TLS, and only to a server that offers AUTH: with
// Username set, a server that does not offer AUTH gets ErrMailRefused
// rather than unauthenticated mail, since it is not the relay configured
// (or a man in the middle has stripped AUTH to see what we do without).
type SMTPMailer struct {
	Host     string
	Port     int
	TLSMode  string // SMTP_TLS: SMTPStartTLS (also when empty), SMTPImplicitTLS or SMTPNoTLS
	Username string
	Password token.Secret
	From     string
	// TLS, if set, replaces the default TLS configuration (tests trust their
	// own certificate with it).
	TLS *tls.Config
	// Timeout bounds a whole conversation (30 s when zero).
	Timeout time.Duration
}

// Send delivers one message. It returns an error wrapping ErrMailRefused
// if the server does not offer STARTTLS or AUTH as described above; then
// neither credentials nor any part of the message were sent. Cancelling
// ctx ends the conversation at once.
func (m *SMTPMailer) Send(ctx context.Context, to, subject, body string) error {
	if strings.ContainsAny(to+subject+m.From, "\r\n") {
		return errors.New("smtp: header value holds a line break") // header injection
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(m.Timeout, 30*time.Second))
	defer cancel()
	tlsConf := cmp.Or(m.TLS, &tls.Config{ServerName: m.Host, MinVersion: tls.VersionTLS12})
	raw, err := new(net.Dialer).DialContext(ctx, "tcp", net.JoinHostPort(m.Host, strconv.Itoa(m.Port)))
	if err != nil {
		return fmt.Errorf("smtp: dial: %w", err)
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	// A shutdown out of time cancels ctx: a past deadline ends every read
	// and write in flight.
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	conn := raw
	if m.TLSMode == SMTPImplicitTLS {
		conn = tls.Client(conn, tlsConf)
	}
	c, err := smtp.NewClient(conn, m.Host) // reads the greeting (with implicit TLS, after the handshake)
	if err != nil {
		conn.Close()
		return smtpErr("greeting", err)
	}
	defer c.Close()
	switch m.TLSMode {
	case SMTPImplicitTLS, SMTPNoTLS:
	default: // SMTPStartTLS, the strict mode, for any value loadConfig did not check too
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("%w: the server does not offer STARTTLS", ErrMailRefused)
		}
		if err := c.StartTLS(tlsConf); err != nil {
			return smtpErr("STARTTLS", err)
		}
	}
	if m.Username != "" {
		// net/smtp's PlainAuth would send the password in clear to a host
		// named localhost or 127.0.0.1: we never do.
		if _, encrypted := c.TLSConnectionState(); !encrypted {
			return fmt.Errorf("%w: credentials are never sent without TLS", ErrMailRefused)
		}
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("%w: SMTP_USERNAME is set but the server does not offer AUTH", ErrMailRefused)
		}
		if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password.Reveal(), m.Host)); err != nil {
			return smtpErr("AUTH", err)
		}
	}
	if err := c.Mail(m.From); err != nil {
		return smtpErr("MAIL FROM", err)
	}
	if err := c.Rcpt(to); err != nil {
		return smtpErr("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpErr("DATA", err)
	}
	host := m.Host
	if i := strings.LastIndexByte(m.From, '@'); i >= 0 {
		host = m.From[i+1:]
	}
	msg := "From: " + m.From + "\r\n" +
		"To: " + to + "\r\n" +
		"Subject: " + mime.QEncoding.Encode("utf-8", subject) + "\r\n" +
		"Date: " + time.Now().UTC().Format(time.RFC1123Z) + "\r\n" +
		"Message-ID: <" + token.NewID() + "@" + host + ">\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n" +
		"Auto-Submitted: auto-generated\r\n" +
		"\r\n" + strings.ReplaceAll(body, "\n", "\r\n")
	if _, err := w.Write([]byte(msg)); err != nil {
		return fmt.Errorf("smtp: write: %w", err)
	}
	if err := w.Close(); err != nil {
		return smtpErr("end of data", err)
	}
	return smtpErr("QUIT", c.Quit())
}

// smtpErr names the step that failed and, for a server's error reply, only
// its code: a reply's text may quote the recipient's address, which the
// logs never hold ("550 5.1.1 <ann@example.com>: User unknown"). A reply
// that is no reply (no three-digit code) is a textproto.ProtocolError whose
// text is the whole line: it is named, not quoted.
func smtpErr(step string, err error) error {
	if te, ok := errors.AsType[*textproto.Error](err); ok {
		return fmt.Errorf("smtp: %s: server replied %d", step, te.Code)
	}
	if _, ok := errors.AsType[textproto.ProtocolError](err); ok {
		return fmt.Errorf("smtp: %s: malformed server reply", step)
	}
	if err != nil {
		return fmt.Errorf("smtp: %s: %w", step, err)
	}
	return nil
}

// MailQueue sends mail in the background, so that a forgot-password answer
// takes the same time whether or not the address has an account.
//
// It holds at most a fixed number of messages. A message it cannot take
// (the queue is full, or closed) is dropped; one it cannot send is lost.
// Both are logged and counted (oauth2_mail_dropped_total,
// oauth2_mail_failures_total), never silent. The queue logs neither the
// recipient nor the body, which holds a reset link (Send's errors keep a
// server's error reply by its code alone).
type MailQueue struct {
	m   Mailer
	log *slog.Logger
	met *Metrics
	q   *queue[Job]
}

// Job composes one message when its turn comes, off the request path, and
// reports ok false when there is nothing to send (the forgot-password job
// of an address without an account). The request that queued it has
// already been answered, so its work is the same whatever the job finds.
type Job func(ctx context.Context) (to, subject, body string, ok bool, err error)

// Reasons a mail was not sent: the label values of oauth2_mail_failures_total.
const (
	mailRefused = "refused" // the server did not offer STARTTLS, or AUTH (ErrMailRefused)
	mailError   = "error"   // anything else: connection, TLS handshake, an SMTP error reply
)

// NewMailQueue starts a queue of n messages in front of m. It sends until
// Close, which must be called to stop it.
func NewMailQueue(m Mailer, n int, log *slog.Logger, met *Metrics) *MailQueue {
	q := &MailQueue{m: m, log: log, met: met}
	// One sender; once Close runs out of time the messages left are dropped.
	q.q = newQueue(n, 1, q.send, func(left []Job) {
		met.MailDropped.Add(uint64(len(left)))
		log.Error("mail queue closed before it was empty: messages dropped", "count", len(left))
	})
	return q
}

// send composes and sends one queued message.
func (q *MailQueue) send(ctx context.Context, job Job) {
	to, subject, body, ok, err := job(ctx)
	if err != nil {
		q.met.MailFailures.With(mailError).Inc()
		q.log.Error("mail not composed", "err", err)
		return
	}
	if !ok {
		return
	}
	if err := q.m.Send(ctx, to, subject, body); err != nil {
		reason := mailError
		if errors.Is(err, ErrMailRefused) {
			reason = mailRefused
		}
		q.met.MailFailures.With(reason).Inc()
		q.log.Error("mail not sent", "reason", reason, "err", err) // never the body: it holds a reset link
	}
}

// Enqueue queues a job; it reports false, having logged and counted the
// drop, when the queue is full or closed.
func (q *MailQueue) Enqueue(job Job) bool {
	why := q.q.put(job)
	if why == "" {
		return true
	}
	q.met.MailDropped.Inc()
	// "mail queue full: message dropped" or "mail queue closed: message dropped"
	q.log.Error("mail queue " + why + ": message dropped")
	return false
}

// Close stops the queue taking mail and waits until every queued message
// has been sent, or until ctx ends: then the send in flight is abandoned
// and the messages left are dropped, logged and counted. Close returns once
// the queue's goroutine has ended, so bound ctx. Calling it again waits
// again, for nothing.
func (q *MailQueue) Close(ctx context.Context) {
	q.q.close(ctx)
}
