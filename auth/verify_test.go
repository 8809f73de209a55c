package auth

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/store"
	"oauth2-api/token"
)

var verifyLinkRE = regexp.MustCompile(`https://auth\.example\.com/email/verify\?token=([A-Za-z0-9_-]{43})\r?\n`)

// verifyToken returns the token of the verification link in m.
func (e *env) verifyToken(m smtptest.Message) string {
	e.t.Helper()
	match := verifyLinkRE.FindStringSubmatch(m.Data)
	if match == nil {
		e.t.Fatalf("no verification link in the mail:\n%s", m.Data)
	}
	return e.secret(match[1])
}

// emailVerified returns the email_verified of the caller's profile.
func (e *env) emailVerified(access string) bool {
	e.t.Helper()
	v, ok := e.request("GET", "/api/v1/profile", nil, bearer(access)...).want(http.StatusOK).JSON()["email_verified"].(bool)
	if !ok {
		e.t.Fatal("profile without a boolean email_verified")
	}
	return v
}

// Registration mails a link; the REST endpoint spends it once, not after it
// expires, and not when it was replaced; resend mails a new one to a user
// who is not verified yet, and nothing to one who is.
func TestVerifyEmail(t *testing.T) {
	sink, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		before := len(sink.Messages())
		r := e.register(map[string]string{"email": "Ann@Example.com", "username": "ann", "password": "Ann-Password-1"}).want(http.StatusCreated)
		if v, ok := r.JSON()["email_verified"].(bool); !ok || v {
			t.Fatalf("registered user: %s; want email_verified false", r.Body.String())
		}
		m := sink.Wait(t)
		if !m.TLS || m.To != "ann@example.com" || !strings.Contains(m.Data, "Subject: Verify your email address") {
			t.Fatalf("verification mail %+v", m)
		}
		// Anyone may sign up with another's address: the mail tells its owner
		// not to vouch for an account they did not make, and how to take it.
		if !strings.Contains(m.Data, "If it was not you, do not press it") || !strings.Contains(m.Data, "password reset for this address") {
			t.Fatalf("the verification mail does not warn the address's owner:\n%s", m.Data)
		}
		if strings.Contains(m.Data, "account ann") { // the registrant's text, shown by mail readers as a link when it reads as a host
			t.Fatalf("the verification mail names the username:\n%s", m.Data)
		}
		tok := e.verifyToken(m)
		at, _ := e.login("ann", "Ann-Password-1")
		if e.emailVerified(at) {
			t.Fatal("verified before the link was used")
		}

		verify := func(tok string) response {
			return e.request("POST", "/api/v1/auth/verify-email", map[string]string{"token": tok})
		}
		wantAPIError(verify(otherFirst(tok)), http.StatusBadRequest, "invalid_token")
		wantAPIError(verify("short"), http.StatusBadRequest, "invalid_token")
		verify(tok).want(http.StatusNoContent)
		if !e.emailVerified(at) {
			t.Fatal("not verified after the link was used")
		}
		wantAPIError(verify(tok), http.StatusBadRequest, "invalid_token") // single use

		// Already verified: 202, and nothing is sent.
		e.request("POST", "/api/v1/auth/verify-email/resend", nil, bearer(at)...).want(http.StatusAccepted)

		// An expired link verifies nothing; resend replaces it, and only the
		// newest works.
		e.createUser("bob@example.com", "bob", "Bob-Password-1", store.RoleUser)
		bt, _ := e.login("bob", "Bob-Password-1")
		e.request("POST", "/api/v1/auth/verify-email/resend", nil, bearer(bt)...).want(http.StatusAccepted)
		expired := e.verifyToken(sink.Wait(t))
		e.clock.Add(e.deps.EmailVerificationTTL)
		wantAPIError(verify(expired), http.StatusBadRequest, "invalid_token")
		at, _ = e.login("bob", "Bob-Password-1") // the clock passed the first token's life
		e.request("POST", "/api/v1/auth/verify-email/resend", nil, bearer(at)...).want(http.StatusAccepted)
		replaced := e.verifyToken(sink.Wait(t))
		e.request("POST", "/api/v1/auth/verify-email/resend", nil, bearer(at)...).want(http.StatusAccepted)
		newest := e.verifyToken(sink.Wait(t))
		wantAPIError(verify(replaced), http.StatusBadRequest, "invalid_token")
		verify(newest).want(http.StatusNoContent)
		if !e.emailVerified(at) {
			t.Fatal("bob not verified by the newest link")
		}
		// Nobody: no mail.
		e.request("POST", "/api/v1/auth/verify-email/resend", nil).want(http.StatusUnauthorized)

		closeQueue(e.deps.Mail) // every job done
		if n := len(sink.Messages()) - before; n != 4 {
			t.Fatalf("%d mails; want 4 (registration, three resends for bob; none for the verified ann)", n)
		}
		if strings.Contains(e.logs.String(), "ann@example.com") {
			t.Error("the address appears in the logs")
		}
	}, withMail(t, sink, clientTLS, SMTPStartTLS))
}

// A burst of resends mails at most verificationsPerHour links an hour.
func TestVerifyResendLimit(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	e := newEnv(t, store.SQLite, withMail(t, sink, nil, SMTPNoTLS))
	e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
	at, _ := e.login("ann", "Ann-Password-1")
	for i := 0; i < 6; i++ {
		e.request("POST", "/api/v1/auth/verify-email/resend", nil, bearer(at)...).want(http.StatusAccepted)
	}
	closeQueue(e.deps.Mail)
	if n := len(sink.Messages()); n != verificationsPerHour {
		t.Fatalf("%d mails for 6 resends; want %d", n, verificationsPerHour)
	}
}

// The page the link opens: GET shows a button and verifies nothing (a link
// scanner must not spend the token); the POST it sends verifies.
func TestVerifyEmailPage(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	eachEnv(t, func(t *testing.T, e *env) {
		e.register(map[string]string{"email": "ann@example.com", "username": "ann", "password": "Ann-Password-1"}).want(http.StatusCreated)
		tok := e.verifyToken(sink.Wait(t))
		u, _ := e.db.UserByUsername(t.Context(), "ann")
		isVerified := func() bool {
			u, err := e.db.UserByID(t.Context(), u.ID)
			if err != nil {
				t.Fatal(err)
			}
			return u.EmailVerified
		}
		b := e.browser()
		for i := 0; i < 2; i++ { // a scanner, then the person
			w := b.do("GET", "/email/verify?token="+tok, nil)
			if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `<input type="hidden" name="token" value="`+tok+`">`) ||
				!strings.Contains(w.Body.String(), `<button type="submit">`) ||
				!strings.Contains(w.Body.String(), "Press only if you signed up with it yourself.") {
				t.Fatalf("GET /email/verify: %d %s", w.Code, w.Body.String())
			}
			if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
				t.Fatalf("CSP %q", csp)
			}
		}
		b.do("HEAD", "/email/verify", url.Values{"token": {tok}}) // the GET route's too: never a form
		if isVerified() {
			t.Fatal("GET or HEAD verified the address")
		}
		if w := b.do("POST", "/email/verify", url.Values{"token": {tok}}); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "Email verified") {
			t.Fatalf("POST /email/verify: %d %s", w.Code, w.Body.String())
		}
		if !isVerified() {
			t.Fatal("POST did not verify the address")
		}
		if w := b.do("POST", "/email/verify", url.Values{"token": {tok}}); w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "invalid, used or expired") ||
			strings.Contains(w.Body.String(), "<button") {
			t.Fatalf("a used link: %d %s", w.Code, w.Body.String())
		}
		if w := b.do("GET", "/email/verify", nil); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), "<button") {
			t.Fatalf("GET without a token: %d %s", w.Code, w.Body.String())
		}
	}, withMail(t, sink, nil, SMTPNoTLS))
}

// email_verified in the profile, in userinfo and in the ID token (with the
// email scope), false until the user verifies, then true.
func TestEmailVerifiedClaims(t *testing.T) {
	eachEnv(t, func(t *testing.T, e *env) {
		u := e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		id, secret := e.newClient(ClientSpec{Name: "RP", RedirectURIs: []string{"https://app.example/cb"}, Scopes: []string{"openid", "email", "profile"}})
		b := e.browser()
		grant := func(scope string) (access string, c *token.Claims, payload string) {
			t.Helper()
			p := newPKCE()
			code := e.secret(b.signIn(authorizeURL(id, p, "scope", scope), "ann", "Ann-Password-1"))
			r := e.token(id, secret, codeForm(code, p)).want(http.StatusOK)
			e.secret(r.Str("refresh_token"))
			idt := r.Str("id_token")
			c, err := e.deps.Tokens.Verifier.Parse(idt, token.Expect{Type: token.TypeID, Issuer: testIssuer, Audience: id}, e.clock.Now())
			if err != nil {
				t.Fatalf("id_token: %v", err)
			}
			_, rest, _ := strings.Cut(idt, ".")
			body, _, _ := strings.Cut(rest, ".")
			return e.secret(r.Str("access_token")), c, string(b64Decode(t, body))
		}
		check := func(want bool) {
			t.Helper()
			at, c, payload := grant("openid email")
			if c.Email != "ann@example.com" || c.EmailVerified == nil || *c.EmailVerified != want {
				t.Fatalf("id_token %s; want email and email_verified %v", payload, want)
			}
			ui := e.request("GET", "/oauth2/userinfo", nil, bearer(at)...).want(http.StatusOK).JSON()
			if ui["email"] != "ann@example.com" || ui["email_verified"] != want {
				t.Fatalf("userinfo %v; want email_verified %v", ui, want)
			}
			rest, _ := e.login("ann", "Ann-Password-1")
			if got := e.emailVerified(rest); got != want {
				t.Fatalf("profile email_verified %v; want %v", got, want)
			}
		}
		check(false)
		// Without the email scope, neither claim.
		if _, c, payload := grant("openid profile"); c.Email != "" || c.EmailVerified != nil || strings.Contains(payload, "email") {
			t.Fatalf("id_token without the email scope: %s", payload)
		}
		tok := token.NewOpaque()
		if err := e.db.ReplaceVerificationToken(t.Context(), token.Hash(tok), u.ID, u.Email, 3, e.clock.Now().Add(time.Hour), e.clock.Now()); err != nil {
			t.Fatal(err)
		}
		e.request("POST", "/api/v1/auth/verify-email", map[string]string{"token": e.secret(tok)}).want(http.StatusNoContent)
		check(true)
	}, withSigningKey(t, ecKey(t), nil))
}

// REQUIRE_EMAIL_VERIFICATION: both logins answer 403 to the right password
// of an unverified address (and mail a new link, since the user cannot sign
// in to ask for one); a wrong password is the usual 401, which says
// nothing about the address. Once verified, both logins work.
func TestRequireEmailVerification(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "Ann-Password-1", store.RoleUser)
		wantAPIError(e.loginAttempt("ann", "Wrong-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		wantAPIError(e.loginAttempt("nobody", "Ann-Password-1"), http.StatusUnauthorized, "invalid_credentials")
		wantAPIError(e.loginAttempt("ann@example.com", "Ann-Password-1"), http.StatusForbidden, "email_not_verified")
		first := e.verifyToken(sink.Wait(t))
		// Audited (a regression test: only logged): whoever sent it knew
		// the password of an account whose address no one has confirmed.
		if trail := e.auditTrail(); trail[len(trail)-1].Action != actLoginFailure || trail[len(trail)-1].Detail["reason"] != "email_not_verified" {
			t.Errorf("the refused login's last event: %+v; want login.failure, reason email_not_verified", trail[len(trail)-1])
		}

		id, secret := e.webClient()
		b := e.browser()
		w := b.do("GET", authorizeURL(id, newPKCE()), nil)
		form := formOf(t, w.Body.String())
		form.Set("login", "ann")
		form.Set("password", "Wrong-Password-1")
		if w := b.do("POST", "/oauth2/authorize", form); w.Code != http.StatusUnauthorized || strings.Contains(w.Body.String(), "not verified") {
			t.Fatalf("login form, wrong password: %d %s", w.Code, w.Body.String())
		}
		form.Set("password", "Ann-Password-1")
		if w := b.do("POST", "/oauth2/authorize", form); w.Code != http.StatusForbidden || !strings.Contains(w.Body.String(), "not verified") {
			t.Fatalf("login form, unverified: %d %s", w.Code, w.Body.String())
		}
		if b.signedIn(id) {
			t.Fatal("the login form signed in an unverified user")
		}
		tok := e.verifyToken(sink.Wait(t)) // a new link: the first is void
		e.request("POST", "/api/v1/auth/verify-email", map[string]string{"token": first}).want(http.StatusBadRequest)
		e.request("POST", "/api/v1/auth/verify-email", map[string]string{"token": tok}).want(http.StatusNoContent)
		e.login("ann", "Ann-Password-1")
		e.codeGrant(b, id, secret, "ann", "Ann-Password-1")
	}, withMail(t, sink, nil, SMTPNoTLS), func(d *Deps) { d.RequireEmailVerification = true })
}
