// Package smtptest runs a small SMTP server on loopback for tests. It speaks
// enough of RFC 5321 (EHLO, STARTTLS, AUTH PLAIN, MAIL, RCPT, DATA, QUIT) to
// receive what auth.SMTPMailer sends, and keeps a transcript of every
// conversation, so that a test can show what was sent and, as much, what was
// not: no MAIL, DATA or AUTH once STARTTLS was missing.
//
// # Security
//
// Test support only: imported by _test files, never by the server. It
// trusts its client and keeps what it receives, reset links included, for
// the test to read.
package smtptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Mode is how a Server offers TLS.
type Mode int

const (
	Plain    Mode = iota // no TLS: STARTTLS is not offered, as when a man in the middle strips it
	StartTLS             // STARTTLS offered in the EHLO answer (RFC 3207)
	Implicit             // TLS from the first byte, as on port 465 (RFC 8314)
)

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	ln    net.Listener
	mode  Mode
	auth  bool
	tls   *tls.Config
	got   chan struct{}
	conns sync.WaitGroup
	hold  sync.RWMutex // write-locked by Hold: new conversations wait on a read lock before the greeting

	mu       sync.Mutex
	messages []Message
	events   []string
}

// Message is one mail received.
type Message struct {
	From, To string
	Data     string // headers and body, dot-unstuffed, lines ending in CRLF
	TLS      bool   // the conversation was encrypted when the mail was sent
}

// Start runs a server until the test ends. offerAuth adds AUTH PLAIN to the
// EHLO answer (any credentials are accepted). The returned client
// configuration trusts the server's certificate, made for 127.0.0.1.
func Start(t testing.TB, mode Mode, offerAuth bool) (*Server, *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{ln: ln, mode: mode, auth: offerAuth, got: make(chan struct{}, 100),
		tls: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// Port is the port the server listens on, on 127.0.0.1.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// Hold makes new conversations wait before the server's greeting until
// release is called: mail stays in flight as long as a test needs.
func (s *Server) Hold() (release func()) {
	s.hold.Lock()
	return sync.OnceFunc(s.hold.Unlock)
}

// Wait returns the latest message once a message has arrived since the
// previous Wait; it fails the test after 10 seconds.
func (s *Server) Wait(t testing.TB) Message {
	t.Helper()
	select {
	case <-s.got:
	case <-time.After(10 * time.Second):
		t.Fatal("no mail arrived")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.messages[len(s.messages)-1]
}

// Messages returns every message received so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Transcript waits until no conversation is open (each ends within 10
// seconds), then returns what happened in all of them, in order: "connect",
// "tls" once TLS is up, and the verb of each command, e.g.
// "connect EHLO STARTTLS tls EHLO MAIL RCPT DATA QUIT".
func (s *Server) Transcript() string {
	s.conns.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.events, " ")
}

func (s *Server) record(event string) {
	s.mu.Lock()
	s.events = append(s.events, event)
	s.mu.Unlock()
}

func (s *Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.conns.Go(func() { s.handle(c) })
	}
}

func (s *Server) handle(c net.Conn) {
	defer func() { c.Close() }() // c may become a TLS connection
	// The read lock is taken at once unless Hold holds new conversations.
	s.hold.RLock()
	s.hold.RUnlock()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	s.record("connect")
	var m Message
	startTLS := func() bool {
		tc := tls.Server(c, s.tls)
		if err := tc.Handshake(); err != nil {
			return false
		}
		c, m.TLS = tc, true
		s.record("tls")
		return true
	}
	if s.mode == Implicit && !startTLS() {
		return
	}
	tp := textproto.NewConn(c)
	// say writes a reply: several lines make one multiline reply ("250-a", "250 b").
	say := func(code string, lines ...string) {
		for _, l := range lines[:len(lines)-1] {
			tp.PrintfLine("%s-%s", code, l)
		}
		tp.PrintfLine("%s %s", code, lines[len(lines)-1])
	}
	say("220", "sink ESMTP")
	for {
		cmd, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		s.record(verb)
		switch {
		case verb == "EHLO":
			ehlo := []string{"sink"}
			if s.mode == StartTLS && !m.TLS {
				ehlo = append(ehlo, "STARTTLS")
			}
			if s.auth {
				ehlo = append(ehlo, "AUTH PLAIN")
			}
			say("250", ehlo...)
		case verb == "STARTTLS" && s.mode == StartTLS && !m.TLS:
			say("220", "go ahead")
			if !startTLS() {
				return
			}
			tp = textproto.NewConn(c)
		case verb == "AUTH" && s.auth:
			say("235", "accepted")
		case verb == "MAIL": // MAIL FROM:<address>
			_, from, _ := strings.Cut(cmd, ":")
			m.From = strings.Trim(from, "<> ")
			say("250", "ok")
		case verb == "RCPT": // RCPT TO:<address>
			_, to, _ := strings.Cut(cmd, ":")
			m.To = strings.Trim(to, "<> ")
			if strings.HasPrefix(m.To, "unknown@") { // a mailbox that does not exist, refused as Postfix does, quoting it
				say("550", "5.1.1 <"+m.To+">: Recipient address rejected: User unknown")
				continue
			}
			say("250", "ok")
		case verb == "DATA":
			say("354", "end with .")
			lines, err := tp.ReadDotLines() // dot-unstuffed, without their line ends
			if err != nil {
				return
			}
			m.Data = strings.Join(lines, "\r\n") + "\r\n"
			s.mu.Lock()
			s.messages = append(s.messages, m)
			s.mu.Unlock()
			say("250", "queued")
			select {
			case s.got <- struct{}{}:
			default:
			}
		case verb == "QUIT":
			say("221", "bye")
			return
		default:
			say("502", "unknown")
		}
	}
}
