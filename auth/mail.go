package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"time"

	"oauth2-api/token"
)

// Mailer sends one plain-text message.
type Mailer interface {
	Send(ctx context.Context, to, subject, body string) error
}

// SMTPMailer sends mail through an SMTP server with net/smtp: implicit TLS
// on port 465, otherwise STARTTLS whenever the server offers it, and
// authentication only over TLS (net/smtp's PlainAuth refuses it in clear
// except to localhost).
type SMTPMailer struct {
	Host     string
	Port     int
	Username string
	Password token.Secret
	From     string
	// TLS, if set, replaces the default TLS configuration (tests trust their
	// own certificate with it).
	TLS *tls.Config
	// Timeout bounds a whole conversation.
	Timeout time.Duration
}

// Send delivers one message.
func (m *SMTPMailer) Send(ctx context.Context, to, subject, body string) error {
	if strings.ContainsAny(to+subject+m.From, "\r\n") {
		return errors.New("smtp: header value holds a line break") // header injection
	}
	timeout := m.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	addr := net.JoinHostPort(m.Host, strconv.Itoa(m.Port))
	tlsConf := m.TLS
	if tlsConf == nil {
		tlsConf = &tls.Config{ServerName: m.Host, MinVersion: tls.VersionTLS12}
	}
	d := &net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp: dial: %w", err)
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	secure := false
	if m.Port == 465 {
		conn = tls.Client(conn, tlsConf)
		secure = true
	}
	c, err := smtp.NewClient(conn, m.Host)
	if err != nil {
		conn.Close()
		return fmt.Errorf("smtp: %w", err)
	}
	defer c.Close()
	if !secure {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConf); err != nil {
				return fmt.Errorf("smtp: starttls: %w", err)
			}
			secure = true
		}
	}
	if m.Username != "" {
		if ok, _ := c.Extension("AUTH"); ok {
			if err := c.Auth(smtp.PlainAuth("", m.Username, m.Password.Reveal(), m.Host)); err != nil {
				return fmt.Errorf("smtp: auth: %w", err)
			}
		}
	}
	if err := c.Mail(m.From); err != nil {
		return fmt.Errorf("smtp: MAIL FROM: %w", err)
	}
	if err := c.Rcpt(to); err != nil {
		return fmt.Errorf("smtp: RCPT TO: %w", err)
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("smtp: DATA: %w", err)
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
		return fmt.Errorf("smtp: end of data: %w", err)
	}
	return c.Quit()
}

// MailQueue sends mail in the background, so that a forgot-password answer
// takes the same time whether or not the address has an account. It holds
// at most a fixed number of messages; beyond that it drops them (logged).
type MailQueue struct {
	m   Mailer
	log *slog.Logger
	ch  chan message
}

type message struct{ to, subject, body string }

// NewMailQueue starts a queue of size n in front of m; it runs until ctx ends.
func NewMailQueue(ctx context.Context, m Mailer, n int, log *slog.Logger) *MailQueue {
	q := &MailQueue{m: m, log: log, ch: make(chan message, n)}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case msg := <-q.ch:
				if err := m.Send(ctx, msg.to, msg.subject, msg.body); err != nil {
					log.Error("mail not sent", "err", err) // never the body: it holds a reset link
				}
			}
		}
	}()
	return q
}

// Enqueue queues a message; it reports false when the queue is full.
func (q *MailQueue) Enqueue(to, subject, body string) bool {
	select {
	case q.ch <- message{to, subject, body}:
		return true
	default:
		q.log.Warn("mail queue full: message dropped")
		return false
	}
}
