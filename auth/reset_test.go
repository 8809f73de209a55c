package auth

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"oauth2-api/auth/smtptest"
	"oauth2-api/store"
	"oauth2-api/store/storetest"
)

// withMail configures mail (SMTP_HOST) through an SMTPMailer to srv in mode
// (SMTP_TLS). The queue is closed, and so drained, when the test ends.
func withMail(t testing.TB, srv *smtptest.Server, clientTLS *tls.Config, mode string) func(*Deps) {
	return func(d *Deps) {
		m := &SMTPMailer{Host: "127.0.0.1", Port: srv.Port(), TLSMode: mode, From: "auth@example.com", TLS: clientTLS, Timeout: 5 * time.Second}
		d.Mail = NewMailQueue(m, 10, d.Log, d.Metrics)
		t.Cleanup(func() { closeQueue(d.Mail) })
	}
}

// withReset configures mail as withMail does and turns on password reset.
func withReset(t testing.TB, srv *smtptest.Server, clientTLS *tls.Config, mode string) func(*Deps) {
	return func(d *Deps) {
		withMail(t, srv, clientTLS, mode)(d)
		d.Reset = &Reset{TTL: time.Hour, URL: "https://auth.example.com/password/reset?lang=en"}
	}
}

// closeQueue closes q within a generous bound: what is queued is sent.
func closeQueue(q *MailQueue) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q.Close(ctx)
}

var linkRE = regexp.MustCompile(`https://auth\.example\.com/password/reset\?\S+`)

func TestPasswordReset(t *testing.T) {
	sink, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		ann := e.createUser("ann@example.com", "ann", "correct horse", "user")
		at, rt := e.login("ann", "correct horse")
		before := len(sink.Messages())

		// Unknown address: the same 202, and no mail.
		unknown := e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "nobody@example.com"}).want(http.StatusAccepted)
		known := e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ANN@example.com"}).want(http.StatusAccepted)
		if unknown.Body.String() != known.Body.String() {
			t.Fatalf("forgot answers differ: %q vs %q", unknown.Body.String(), known.Body.String())
		}
		m := sink.Wait(t)
		if n := len(sink.Messages()); n != before+1 {
			t.Fatalf("%d mails; want exactly one", n-before)
		}
		if !m.TLS || m.From != "auth@example.com" || m.To != "ann@example.com" {
			t.Fatalf("envelope %+v (want STARTTLS used)", m)
		}
		msg, err := mail.ReadMessage(strings.NewReader(m.Data))
		if err != nil {
			t.Fatalf("mail does not parse: %v\n%s", err, m.Data)
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
		link := linkRE.FindString(m.Data)
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
		// Two requests (the unknown address's too, with no subject), one
		// reset, naming the user; the refused resets none.
		var requests, resets []store.Event
		for _, ev := range e.auditTrail() {
			switch ev.Action {
			case actResetRequest:
				requests = append(requests, ev)
			case actReset:
				resets = append(resets, ev)
			}
		}
		if len(requests) != 2 || len(resets) != 1 || resets[0].Subject != store.FormatID(ann.ID) || resets[0].Outcome != outSuccess || resets[0].IP != "192.0.2.1" {
			t.Errorf("reset events: requests %+v, resets %+v; want 2 and one success naming user %d", requests, resets, ann.ID)
		}

		// An expired token.
		e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
		u, _ = url.Parse(linkRE.FindString(sink.Wait(t).Data))
		tok2 := e.secret(u.Query().Get("token"))
		e.clock.Add(time.Hour)
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok2, "new_password": "new password 3"}).wantError(http.StatusBadRequest, "invalid_token")
	}, withReset(t, sink, clientTLS, SMTPStartTLS))
}

// A password change spends the reset links mailed before it: a link would
// otherwise replace the password just chosen, for as long as it lives (a
// regression test: the links outlived the change).
func TestPasswordChangeSpendsResetLinks(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		at, _ := e.login("ann", "correct horse")
		e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
		u, _ := url.Parse(linkRE.FindString(sink.Wait(t).Data))
		tok := e.secret(u.Query().Get("token"))
		e.request("POST", "/api/v1/profile/password", map[string]string{"current_password": "correct horse",
			"new_password": e.secret("new password 1")}, bearer(at)...).want(http.StatusNoContent)
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "new password 2"}).wantError(http.StatusBadRequest, "invalid_token")
		e.login("ann", "new password 1")
	}, withReset(t, sink, nil, SMTPNoTLS))
}

// The page the link opens: a form without script that resets the password.
func TestPasswordResetPage(t *testing.T) {
	sink, _ := smtptest.Start(t, smtptest.Plain, false) // SMTP_TLS=none to loopback: mail in clear
	e := newEnv(t, "sqlite", withReset(t, sink, nil, SMTPNoTLS))
	e.createUser("ann@example.com", "ann", "correct horse", "user")
	e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}).want(http.StatusAccepted)
	m := sink.Wait(t)
	if m.TLS {
		t.Fatal("TLS without STARTTLS on offer?")
	}
	if strings.Contains(m.Data, "account ann") { // as the verification mail: no registrant's text
		t.Fatalf("the reset mail names the username:\n%s", m.Data)
	}
	u, _ := url.Parse(linkRE.FindString(m.Data))
	tok := e.secret(u.Query().Get("token"))
	b := e.browser()
	w := b.do("GET", "/password/reset?token="+url.QueryEscape(tok), nil)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), `name="new_password"`) || strings.Contains(w.Header().Get("Content-Security-Policy"), "script-src") {
		t.Fatalf("reset page: %d %s", w.Code, w.Body.String())
	}
	// A token not of the form mailed is refused, not put into the form.
	for _, bad := range []string{"", tok + "x", strings.Repeat("<x>", 10000)} {
		if w := b.do("GET", "/password/reset?token="+url.QueryEscape(bad), nil); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), `name="new_password"`) {
			t.Fatalf("reset page for token %.20q: %d; want 400 without the form", bad, w.Code)
		}
	}
	// Nor from a POST the form did not send (a regression test: the
	// mismatch page put any posted token into its form).
	long := strings.Repeat("x", 14000)
	if w := b.do("POST", "/password/reset", url.Values{"token": {long}, "new_password": {"a"}, "confirm_password": {"b"}}); w.Code != http.StatusBadRequest || strings.Contains(w.Body.String(), long) {
		t.Fatalf("reset form posted with a token not of the form mailed: %d; want 400 without it", w.Code)
	}
	form := url.Values{"token": {tok}, "new_password": {"new password 1"}, "confirm_password": {"different 1"}}
	if w := b.do("POST", "/password/reset", form); w.Code != http.StatusUnprocessableEntity {
		t.Fatalf("mismatched passwords: %d", w.Code)
	}
	form.Set("confirm_password", "new password 1")
	// HEAD, which the GET route takes (on the pages' budget), is never a
	// form: it spent the token, and the POST below found it spent.
	b.do("HEAD", "/password/reset", form)
	if w := b.do("POST", "/password/reset", form); w.Code != http.StatusOK || !strings.Contains(w.Body.String(), "changed") {
		t.Fatalf("reset form: %d %s", w.Code, w.Body.String())
	}
	// The access log line refers to the audit event, as the REST reset's does.
	if !strings.Contains(e.logs.String(), `"action":"password.reset"`) {
		t.Error("the page's reset left no audit reference in the log")
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

// An account whose address an older rule took (an internationalized
// domain in its U-label, refused at registration now) still gets its
// reset link: the request is not held to the registration rule.
func TestForgotForAnAddressOfAnOlderRule(t *testing.T) {
	srv, _ := smtptest.Start(t, smtptest.Plain, false)
	e := newEnv(t, store.SQLite, withReset(t, srv, nil, SMTPNoTLS))
	const addr = "bob@bücher.example"
	if err := e.db.CreateUser(t.Context(), &store.User{Email: addr, Username: "bob", PasswordHash: "x", IsActive: true}, e.clock.Now()); err != nil {
		t.Fatal(err)
	}
	before := len(srv.Messages())
	e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": addr}).want(http.StatusAccepted)
	closeQueue(e.deps.Mail)
	if mails := srv.Messages()[before:]; len(mails) != 1 || mails[0].To != addr {
		t.Fatalf("mails %+v; want one to %s", mails, addr)
	}
}

// A burst of forgot-password requests for one account mails at most
// resetsPerHour links, and only the last one mailed works; an address
// without an account is mailed nothing.
func TestForgotPerAccountLimits(t *testing.T) {
	srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
	eachEnv(t, func(t *testing.T, e *env) {
		e.createUser("ann@example.com", "ann", "correct horse", "user")
		before := len(srv.Messages())
		for i := 0; i < 9; i++ { // within the queue's 10: none dropped
			addr := "ann@example.com"
			if i%3 == 2 {
				addr = "nobody@example.com"
			}
			e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": addr}).want(http.StatusAccepted)
		}
		closeQueue(e.deps.Mail) // every job done
		mails := srv.Messages()[before:]
		if len(mails) != resetsPerHour {
			t.Fatalf("%d mails for 6 requests; want %d (the hourly limit)", len(mails), resetsPerHour)
		}
		var tokens []string
		for _, m := range mails {
			if m.To != "ann@example.com" {
				t.Fatalf("mail to %q", m.To)
			}
			u, _ := url.Parse(linkRE.FindString(m.Data))
			tokens = append(tokens, e.secret(u.Query().Get("token")))
		}
		for _, tok := range tokens[:len(tokens)-1] {
			e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tok, "new_password": "new password 1"}).wantError(http.StatusBadRequest, "invalid_token")
		}
		e.secret("new password 1")
		e.request("POST", "/api/v1/auth/password/reset", map[string]string{"token": tokens[len(tokens)-1], "new_password": "new password 1"}).want(http.StatusNoContent)
	}, withReset(t, srv, clientTLS, SMTPStartTLS))
}

// The forgot-password answer looks nothing up: its one database write is
// its audit record, the same for an address with an account and one
// without (whose it was is looked up later, off the request path). With
// the database away both answer the same 503 (a request whose record
// cannot be written fails, API.md); with it back, the same 202, and the
// records do not tell the two apart.
func TestForgotAnswersBeforeAnyLookup(t *testing.T) {
	for _, dialect := range storetest.Servers() {
		t.Run(dialect, func(t *testing.T) {
			srv, clientTLS := smtptest.Start(t, smtptest.StartTLS, false)
			db, p := storetest.OpenViaProxy(t, dialect)
			e := newEnvOn(t, db, withReset(t, srv, clientTLS, SMTPStartTLS))
			e.createUser("ann@example.com", "ann", "correct horse", "user")
			forgot := func() (response, response) {
				return e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "ann@example.com"}),
					e.request("POST", "/api/v1/auth/password/forgot", map[string]string{"email": "nobody@example.com"})
			}
			p.Cut()
			known, unknown := forgot()
			if known.Code != http.StatusServiceUnavailable || unknown.Code != known.Code || unknown.Body.String() != known.Body.String() {
				t.Fatalf("with the database away: known %d %s, unknown %d %s; want the same 503", known.Code, known.Body.String(), unknown.Code, unknown.Body.String())
			}
			p.Restore()
			known, unknown = forgot()
			if known.Code != http.StatusAccepted || unknown.Code != known.Code || unknown.Body.String() != known.Body.String() {
				t.Fatalf("with the database back: known %d %s, unknown %d %s; want the same 202", known.Code, known.Body.String(), unknown.Code, unknown.Body.String())
			}
			events, err := db.ListAudit(t.Context(), store.AuditFilter{Action: actResetRequest, Limit: 10})
			if err != nil || len(events) != 2 || events[0].Subject != "" || events[1].Subject != "" || len(events[0].Detail) != 0 || len(events[1].Detail) != 0 {
				t.Fatalf("reset request records %+v, %v; want two alike", events, err)
			}
		})
	}
}
