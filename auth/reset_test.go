package auth

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// smtpSink is a small SMTP server on loopback that speaks enough of RFC 5321
// (EHLO, STARTTLS, MAIL, RCPT, DATA, QUIT) to receive what SMTPMailer sends.
type smtpSink struct {
	t        testing.TB
	ln       net.Listener
	tls      *tls.Config
	mu       sync.Mutex
	messages []sunkMail
	got      chan struct{}
}

type sunkMail struct {
	from, to string
	data     string
	overTLS  bool
}

func newSMTPSink(t testing.TB, offerTLS bool) (*smtpSink, *tls.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{t: t, ln: ln, got: make(chan struct{}, 10)}
	var client *tls.Config
	if offerTLS {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"127.0.0.1"}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		cert, _ := x509.ParseCertificate(der)
		s.tls = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
		pool := x509.NewCertPool()
		pool.AddCert(cert)
		client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
	}
	go s.serve()
	t.Cleanup(func() { ln.Close() })
	return s, client
}

func (s *smtpSink) port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *smtpSink) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *smtpSink) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r, w := bufio.NewReader(c), bufio.NewWriter(c)
	say := func(line string) { w.WriteString(line + "\r\n"); w.Flush() }
	var m sunkMail
	say("220 sink ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(cmd, " ", 2)[0])
		switch {
		case verb == "EHLO":
			if s.tls != nil && !m.overTLS {
				say("250-sink")
				say("250 STARTTLS")
			} else {
				say("250 sink")
			}
		case verb == "STARTTLS" && s.tls != nil:
			say("220 go ahead")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
			r, w = bufio.NewReader(tc), bufio.NewWriter(tc)
			m.overTLS = true
		case strings.HasPrefix(strings.ToUpper(cmd), "MAIL FROM:"):
			m.from = strings.Trim(cmd[len("MAIL FROM:"):], "<> ")
			say("250 ok")
		case strings.HasPrefix(strings.ToUpper(cmd), "RCPT TO:"):
			m.to = strings.Trim(cmd[len("RCPT TO:"):], "<> ")
			say("250 ok")
		case verb == "DATA":
			say("354 end with .")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(strings.TrimPrefix(l, "."))
			}
			m.data = b.String()
			s.mu.Lock()
			s.messages = append(s.messages, m)
			s.mu.Unlock()
			say("250 queued")
			s.got <- struct{}{}
		case verb == "QUIT":
			say("221 bye")
			return
		default:
			say("502 unknown")
		}
	}
}

func (s *smtpSink) wait(t testing.TB) sunkMail {
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

func (s *smtpSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.messages)
}

func withReset(t testing.TB, sink *smtpSink, clientTLS *tls.Config) func(*Deps) {
	return func(d *Deps) {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		m := &SMTPMailer{Host: "127.0.0.1", Port: sink.port(), From: "auth@example.com", TLS: clientTLS, Timeout: 5 * time.Second}
		d.Reset = &Reset{TTL: time.Hour, URL: "https://auth.example.com/password/reset?lang=en", Mail: NewMailQueue(ctx, m, 10, d.Log)}
	}
}

var linkRE = regexp.MustCompile(`https://auth\.example\.com/password/reset\?\S+`)

func TestPasswordReset(t *testing.T) {
	sink, clientTLS := newSMTPSink(t, true)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		at, rt := e.login("ann", "correct horse")
		before := sink.count()

		// Unknown address: the same 202, and no mail.
		unknown := e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "nobody@example.com"}).want(http.StatusAccepted)
		known := e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ANN@example.com"}).want(http.StatusAccepted)
		if unknown.Body.String() != known.Body.String() {
			t.Fatalf("forgot answers differ: %q vs %q", unknown.Body.String(), known.Body.String())
		}
		m := sink.wait(t)
		if sink.count() != before+1 {
			t.Fatalf("%d mails; want exactly one", sink.count()-before)
		}
		if !m.overTLS || m.from != "auth@example.com" || m.to != "ann@example.com" {
			t.Fatalf("envelope %+v (want STARTTLS used)", m)
		}
		msg, err := mail.ReadMessage(strings.NewReader(m.data))
		if err != nil {
			t.Fatalf("mail does not parse: %v\n%s", err, m.data)
		}
		for h, want := range map[string]string{"From": "auth@example.com", "To": "ann@example.com", "Subject": "Reset your password",
			"Content-Type": "text/plain; charset=utf-8", "Mime-Version": "1.0"} {
			if got := msg.Header.Get(h); got != want {
				t.Errorf("header %s = %q; want %q", h, got, want)
			}
		}
		if _, err := msg.Header.Date(); err != nil || msg.Header.Get("Message-Id") == "" {
			t.Errorf("Date or Message-ID missing: %v", msg.Header)
		}
		link := linkRE.FindString(m.data)
		u, err := url.Parse(link)
		if err != nil || u.Query().Get("lang") != "en" || len(u.Query().Get("token")) != 43 {
			t.Fatalf("link %q: want the configured URL with its own query kept and a token added", link)
		}
		tok := e.secret(u.Query().Get("token"))
		if strings.Contains(e.logs.String(), "ann@example.com") {
			t.Error("the address appears in the logs")
		}

		// A bad token and a too-short password change nothing.
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": otherFirst(tok), "new_password": "new password 1"}).wantError(http.StatusBadRequest, "invalid_token")
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "short"}).wantError(http.StatusUnprocessableEntity, "validation_failed")
		// The reset: 204, old tokens revoked, new password works, token single use.
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "new password 1"}).want(http.StatusNoContent)
		e.secret("new password 1")
		e.request("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": rt}).wantError(http.StatusUnauthorized, "invalid_token")
		e.request("GET", "/api/v1/profile", nil, bearer(at)...).want(http.StatusUnauthorized)
		e.request("POST", "/api/v1/auth/login", map[string]string{"login": "ann", "password": "correct horse"}).want(http.StatusUnauthorized)
		e.clock.Add(time.Millisecond)
		newAT, _ := e.login("ann", "new password 1") // same second as the reset
		e.request("GET", "/api/v1/profile", nil, bearer(newAT)...).want(http.StatusOK)
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "new password 2"}).wantError(http.StatusBadRequest, "invalid_token")

		// An expired token.
		e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
		u, _ = url.Parse(linkRE.FindString(sink.wait(t).data))
		tok2 := e.secret(u.Query().Get("token"))
		e.clock.Add(time.Hour)
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok2, "new_password": "new password 3"}).wantError(http.StatusBadRequest, "invalid_token")
	}, withReset(t, sink, clientTLS))
}

// The page the link opens: a form without script that resets the password.
func TestPasswordResetPage(t *testing.T) {
	sink, _ := newSMTPSink(t, false) // a server without STARTTLS: mail in clear
	e := newEnv(t, "sqlite", withReset(t, sink, nil))
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
	m := sink.wait(t)
	if m.overTLS {
		t.Fatal("TLS without STARTTLS on offer?")
	}
	u, _ := url.Parse(linkRE.FindString(m.data))
	tok := e.secret(u.Query().Get("token"))
	b := e.browser()
	w := b.do("GET", "/password/reset?token="+url.QueryEscape(tok), nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="new_password"`) || strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src") {
		t.Fatalf("reset page: %d %s", w.Code, w.Body.String())
	}
	form := url.Values{"token": {tok}, "new_password": {"new password 1"}, "confirm_password": {"different 1"}}
	if w := b.do("POST", "/password/reset", form); w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("mismatched passwords: %d", w.Code)
	}
	form.Set("confirm_password", "new password 1")
	if w := b.do("POST", "/password/reset", form); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "changed") {
		t.Fatalf("reset form: %d %s", w.Code, w.Body.String())
	}
	e.login("ann", "new password 1")
}

// With ENABLE_PASSWORD_RESET off the routes do not exist.
func TestPasswordResetDisabled(t *testing.T) {
	e := newEnv(t, "sqlite")
	e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "a@b.co"}).want(http.StatusNotFound)
	e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": "x"}).want(http.StatusNotFound)
	e.request("GET", "/password/reset", nil).want(http.StatusNotFound)
}
