package interop

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"
)

// The server's own SMTP test server (auth/smtptest) lives in the root
// module, which this module does not depend on (that would pull the
// server's dependencies in here), so the email test runs the few lines of
// SMTP below: a sink on 127.0.0.1 that the server reaches in clear text
// (SMTP_TLS=none, which the server allows only for a loopback host).

// mail is one message the sink received.
type mail struct {
	from string
	to   []string
	data string // headers and body, CRLF line ends, dot-stuffing undone
	err  error  // a command the sink did not expect
}

// startMailSink runs a minimal SMTP server (RFC 5321: EHLO or HELO, MAIL,
// RCPT, DATA, RSET, NOOP, QUIT; no STARTTLS, no AUTH) on a free loopback
// port, reports each message on the channel, and stops when the test ends.
func startMailSink(t testing.TB) (int, <-chan mail) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan mail, 16)
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveSMTP(c, got) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).Port, got
}

func serveSMTP(c net.Conn, got chan<- mail) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	reply := func(lines ...string) { fmt.Fprint(c, strings.Join(lines, "\r\n")+"\r\n") }
	reply("220 interop-sink ESMTP")
	var m mail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		switch strings.ToUpper(verb) {
		case "EHLO":
			reply("250-interop-sink", "250 8BITMIME")
		case "HELO":
			reply("250 interop-sink")
		case "MAIL":
			m = mail{from: arg}
			reply("250 OK")
		case "RCPT":
			_, addr, _ := strings.Cut(arg, ":") // TO:<address>
			m.to = append(m.to, strings.Trim(addr, "<> "))
			reply("250 OK")
		case "DATA":
			reply("354 end with <CRLF>.<CRLF>")
			var data strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				data.WriteString(strings.TrimPrefix(l, ".")) // RFC 5321 §4.5.2
			}
			m.data = data.String()
			got <- m
			m = mail{}
			reply("250 OK")
		case "RSET":
			m = mail{}
			reply("250 OK")
		case "NOOP":
			reply("250 OK")
		case "QUIT":
			reply("221 bye")
			return
		default:
			got <- mail{err: fmt.Errorf("SMTP command %q; the sink offers no STARTTLS or AUTH", verb)}
			reply("502 not implemented")
		}
	}
}

// nextMail waits for the next message the server sent.
func nextMail(t testing.TB, got <-chan mail, after string) mail {
	t.Helper()
	select {
	case m := <-got:
		if m.err != nil {
			t.Fatalf("after %s: %v", after, m.err)
		}
		return m
	case <-time.After(15 * time.Second):
		t.Fatalf("after %s, no mail arrived within 15s", after)
		return mail{}
	}
}

var verifyLinkRe = regexp.MustCompile(`(?m)^(\S+/email/verify\?token=([A-Za-z0-9_-]+))\r$`)

// verificationLink checks that m is the verification mail for email and
// returns the link in it and the token in the link.
func verificationLink(t testing.TB, s *server, m mail, email string) (link, tok string) {
	t.Helper()
	if !slices.Equal(m.to, []string{email}) || !strings.Contains(m.data, "\r\nTo: "+email+"\r\n") ||
		!strings.Contains(m.data, "\r\nSubject: Verify your email address\r\n") {
		t.Fatalf("mail to %q:\n%s\nwant the verification mail to %s", m.to, m.data, email)
	}
	found := verifyLinkRe.FindStringSubmatch(m.data)
	if found == nil {
		t.Fatalf("no verification link on a line of its own in:\n%s", m.data)
	}
	link, tok = found[1], found[2]
	if link != s.URL+"/email/verify?token="+tok {
		t.Fatalf("verification link %q; want %s/email/verify?token=… (the ISSUER)", link, s.URL)
	}
	s.noLog(tok)
	return link, tok
}

// TestEmailVerification is email verification with
// REQUIRE_EMAIL_VERIFICATION=true, on SQLite and PostgreSQL, with the mail
// going over real SMTP to a loopback sink: a user registers through the
// REST API; the mailed link points at the server itself; login answers
// 403 email_not_verified (and mails a new link, which voids the first);
// Chromium opens the newest link and presses the page's button, which
// POSTs the token; then login works, the link is spent, and both
// the ID token and UserInfo (scope email, read through zitadel/oidc) say
// email_verified true.
func TestEmailVerification(t *testing.T) {
	t.Parallel()
	chromium(t)
	databases(t, func(t *testing.T, databaseURL string) {
		t.Parallel()
		port, mails := startMailSink(t)
		key := generateKey(t, "RS256")
		s := startServer(t, map[string]string{
			"DATABASE_URL": databaseURL, "SIGNING_KEY": key.Path,
			"SMTP_HOST": "127.0.0.1", "SMTP_PORT": strconv.Itoa(port), "SMTP_TLS": "none", "SMTP_FROM": "accounts@interop.example",
			"REQUIRE_EMAIL_VERIFICATION": "true",
		})
		const redirectURI = "http://127.0.0.1/mail/callback"
		app := s.createClient(t, "--name", "Interop Mail RP", "--redirect-uri", redirectURI, "--scope", "openid email profile")
		const email, username = "marie.mail@example.com", "marie_mail"
		s.noLog(password)

		code, body := s.restJSON(t, http.MethodPost, "/api/v1/auth/register", "", map[string]string{"email": email, "username": username, "password": password})
		if code != http.StatusCreated || body["email"] != email || body["email_verified"] != false {
			t.Fatalf("register: %d %v; want 201 with email %s, email_verified false", code, body, email)
		}
		m := nextMail(t, mails, "registration")
		if !strings.Contains(m.from, "accounts@interop.example") {
			t.Errorf("MAIL FROM %q; want SMTP_FROM", m.from)
		}
		_, first := verificationLink(t, s, m, email)

		// Unverified: the right password gets 403 email_not_verified, and a new link.
		code, body = s.restJSON(t, http.MethodPost, "/api/v1/auth/login", "", map[string]string{"login": username, "password": password})
		if code != http.StatusForbidden || body["error"] != "email_not_verified" || body["access_token"] != nil {
			t.Fatalf("login before verification: %d %v; want 403 email_not_verified", code, body)
		}
		link, tok := verificationLink(t, s, nextMail(t, mails, "the refused login"), email)
		if tok == first {
			t.Fatalf("the login mailed the same token again; want a new one")
		}
		// The first link was voided by the second.
		if code, body := s.restJSON(t, http.MethodPost, "/api/v1/auth/verify-email", "", map[string]string{"token": first}); code != http.StatusBadRequest || body["error"] != "invalid_token" {
			t.Errorf("the first, replaced link: %d %v; want 400 invalid_token", code, body)
		}

		// A person opens the link in Chromium and presses the button.
		ctx := startBrowser(t)
		err := chromedp.Do(ctx, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS(`form button[type=submit]`)))
		if err != nil {
			t.Fatalf("the verification page: %v", err)
		}
		text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		if err != nil || !strings.Contains(text, "Confirm that this email address is yours.") {
			t.Errorf("verification page text %q (%v); want it to ask for confirmation", text, err)
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot of the verification page: %v", err)
		}
		savePNG(t, screenshotDir(t), "browser-verify-email-"+variant(t)+".png", shot)
		err = chromedp.Do(ctx,
			chromedp.Click(chromedp.CSS(`form button[type=submit]`)),
			chromedp.WaitNotPresent(chromedp.CSS(`form`)),
		)
		if err != nil {
			t.Fatalf("press the verify button: %v", err)
		}
		text, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`main`)))
		if err != nil || !strings.Contains(text, "Your email address is verified.") {
			t.Fatalf("after pressing the button the page says %q (%v); want \"Your email address is verified.\"", text, err)
		}
		if code, body := s.restJSON(t, http.MethodPost, "/api/v1/auth/verify-email", "", map[string]string{"token": tok}); code != http.StatusBadRequest || body["error"] != "invalid_token" {
			t.Errorf("the spent link again: %d %v; want 400 invalid_token (single use)", code, body)
		}

		// Verified: login works and the profile says so.
		access, _ := s.restLogin(t, username, password)
		if code, body := s.restJSON(t, http.MethodGet, "/api/v1/profile", access, nil); code != http.StatusOK || body["email_verified"] != true {
			t.Errorf("profile after verification: %d %v; want email_verified true", code, body)
		}

		// OpenID Connect with the email scope, through zitadel/oidc.
		octx := oauthContext(t)
		nonce := randomHex(16)
		relying, err := rp.NewRelyingPartyOIDC(octx, s.URL, app.ID, app.Secret, redirectURI, []string{oidc.ScopeOpenID, oidc.ScopeEmail},
			rp.WithHTTPClient(testClient(t)), rp.WithVerifierOpts(rp.WithNonce(func(context.Context) string { return nonce })))
		if err != nil {
			t.Fatalf("zitadel rp.NewRelyingPartyOIDC: %v", err)
		}
		verifier, state := oauth2.GenerateVerifier(), randomHex(16)
		res := newUserAgent(t, s).authorize(rp.AuthURL(state, relying, rp.WithCodeChallenge(oidc.NewSHACodeChallenge(verifier)),
			rp.AuthURLOpt(rp.WithURLParam("nonce", nonce))), username, password, "allow")
		if res.Query.Get("code") == "" || res.Query.Get("state") != state {
			t.Fatalf("authorization after verification: pages %q, query %v; want a code", res.Pages, res.Query)
		}
		s.noLog(res.Query.Get("code"), verifier)
		tokens, err := rp.CodeExchange[*oidc.IDTokenClaims](octx, res.Query.Get("code"), relying, rp.WithCodeVerifier(verifier))
		if err != nil {
			t.Fatalf("zitadel rp.CodeExchange: %v", err)
		}
		s.noLog(tokens.AccessToken, tokens.RefreshToken, tokens.IDToken)
		if id := tokens.IDTokenClaims; id.Email != email || !bool(id.EmailVerified) {
			t.Errorf("ID token email %q, email_verified %v; want %s, true", id.Email, id.EmailVerified, email)
		}
		info, err := rp.Userinfo[*oidc.UserInfo](octx, tokens.AccessToken, tokens.TokenType, tokens.IDTokenClaims.Subject, relying)
		if err != nil {
			t.Fatalf("zitadel rp.Userinfo: %v", err)
		}
		if info.Email != email || !bool(info.EmailVerified) {
			t.Errorf("UserInfo email %q, email_verified %v; want %s, true", info.Email, info.EmailVerified, email)
		}

		select {
		case m := <-mails:
			t.Errorf("an unexpected mail (err %v) once the address was verified:\n%s", m.err, m.data)
		default:
		}
	})
}
